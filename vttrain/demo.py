"""`vt demo`: the whole pipeline, offline on CPU, on the embedded synthetic data with a tiny model.

build-data -> init-model tiny -> score-judge -> curate -> train -> eval (full, low, think) -> report

Every stage is the real `vt` command, invoked in this process through the CLI itself (one code
path with what a user types; torch is imported once). A stage that finished writes a marker
`OUT/.demo/<stage>.json` with its arguments and summary; a second `vt demo` reuses a stage whose
marker matches and whose outputs exist, so it only redoes what is missing (the commands themselves
are resumable too, so an interrupted stage continues where it stopped).
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import typer

from vtdata.console import VtError, console, info

REPO = Path(__file__).resolve().parent.parent


@dataclass
class DemoConfig:
    """Options of `vt demo`."""

    out: str = "demo-out"
    """Directory for everything the demo writes (data, model, database, runs, evals, report)."""
    manifest: str = str(REPO / "manifests" / "demo.yaml")
    """Data manifest (the embedded synthetic default)."""
    train_config: str = str(REPO / "manifests" / "train-demo.yaml")
    """Training config (tiny model, CPU, a few steps)."""
    rollouts: int = 2
    """Scoring rollouts per view and sample (the paper uses 8)."""
    per_class: int = 8
    """Curated samples per class (low_ok, needs_high); short classes are allowed in the demo."""
    eval_limit: int = 16
    """Validation samples per eval mode."""
    max_new_tokens: int = 48
    """Generation budget per turn in scoring and eval (the tiny model writes noise; keep it short)."""
    force: bool = False
    """Redo every stage even when its outputs are complete."""


@dataclass
class Stage:
    name: str
    args: list[str]
    outputs: list[Path]
    summary: Callable[[], str]


def vt(args: list[str]) -> None:
    """Run one `vt` command in this process, exactly as the CLI would (VtError propagates)."""
    import click
    import typer.main

    import cli
    cmd = typer.main.get_command(cli.app)
    try:
        cmd.main(args=list(args), prog_name="vt", standalone_mode=False)
    except click.exceptions.Exit as e:
        if e.exit_code:
            raise VtError(f"`vt {shlex.join(args)}` exited with status {e.exit_code}") from None
    except click.ClickException as e:
        raise VtError(f"`vt {shlex.join(args)}`: {e.format_message()}") from None


class Demo:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.out = Path(cfg.out).resolve()
        self.data = self.out / "data"
        self.model = self.out / "models" / "tiny"
        self.db = self.out / "vt.duckdb"
        self.curated = self.out / "curated"
        self.run_dir = self.out / "runs" / "train"
        self.evals = self.out / "evals"
        self.report = self.out / "report"
        self.marks = self.out / ".demo"

    # ---------------------------------------------------------------------------- queries for summaries
    def _sql(self, query: str, params=None) -> list[tuple]:
        from vtdata.db import connect
        con = connect(self.db, read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()

    def trained_model(self) -> Path:
        final = self.run_dir / "final"
        return final if final.is_dir() else self.run_dir

    def stages(self) -> list[Stage]:
        c = self.cfg
        db = ["--db", str(self.db)]
        stages = [
            Stage("build-data", ["build-data", c.manifest, "--out", str(self.data)] + db,
                  [self.data / "build.json"], self._sum_build),
            Stage("init-model", ["init-model", "tiny", str(self.model)], [self.model / "config.json"],
                  lambda: f"tiny Qwen2.5-VL at {self.model}"),
            Stage("score-judge", ["score-judge", "--data", str(self.data), "--policy", f"local:{self.model}",
                                  "--judge", "auto", "--rollouts", str(c.rollouts),
                                  "--max-new-tokens", str(c.max_new_tokens)] + db,
                  [self.db], self._sum_score),
            Stage("curate", ["curate", "--name", "demo", "--per-class", str(c.per_class), "--allow-short",
                             "--out", str(self.curated)] + db,
                  [self.curated], self._sum_curate),
            Stage("train", ["train", c.train_config, "--model_name_or_path", str(self.model),
                            "--data", str(self.curated), "--output_dir", str(self.run_dir),
                            "--db", str(self.db)],
                  [self.run_dir / "metrics.jsonl"], self._sum_train),
        ]
        for mode in ("full", "low", "think"):
            stages.append(Stage(f"eval-{mode}", ["eval", "--model", str(self.trained_model()), "--data",
                                                 str(self.data), "--mode", mode, "--limit", str(c.eval_limit),
                                                 "--name", f"demo-{mode}", "--max-new-tokens",
                                                 str(c.max_new_tokens), "--out", str(self.evals)] + db,
                                [self.evals / f"demo-{mode}.jsonl"], lambda m=mode: self._sum_eval(m)))
        stages.append(Stage("report", ["report", "--out", str(self.report), "--runs", str(self.run_dir)] + db,
                            [self.report / "index.html"], lambda: f"{self.report / 'index.html'}"))
        return stages

    def _sum_build(self) -> str:
        meta = json.loads((self.data / "build.json").read_text())
        counts = meta.get("counts", {})
        split = counts.get("split") or counts.get("splits") or {}
        return f"{meta.get('rows', sum(split.values()) if split else '?')} samples " + \
               ", ".join(f"{k} {v}" for k, v in split.items())

    def _sum_score(self) -> str:
        rows = self._sql("SELECT label, count(*) FROM sufficiency GROUP BY 1 ORDER BY 1")
        return "labels: " + ", ".join(f"{k}={v}" for k, v in rows)

    def _sum_curate(self) -> str:
        rows = self._sql("SELECT use_tool, count(*) FROM curated GROUP BY 1 ORDER BY 1")
        d = {bool(k): v for k, v in rows}
        return f"curated low_ok={d.get(False, 0)} needs_high={d.get(True, 0)}"

    def _sum_train(self) -> str:
        from vttrain.report import read_metrics
        rows = read_metrics(self.run_dir)
        last = rows[-1] if rows else {}
        rew = next((last[k] for k in ("reward", "rewards/mean") if k in last), None)
        return f"{len(rows)} logged steps, last reward {rew}, model at {self.trained_model()}"

    def _sum_eval(self, mode: str) -> str:
        r = self._sql("""SELECT count(*), avg(score) FILTER (WHERE status = 'ok'),
                                sum(visual_tokens)::DOUBLE / sum(full_visual_tokens),
                                avg(CASE WHEN resized THEN 1.0 ELSE 0.0 END)
                         FROM eval_predictions WHERE run = ?""", [f"demo-{mode}"])[0]
        return (f"{r[0]} samples, accuracy {100 * (r[1] or 0):.1f} %, visual tokens {100 * (r[2] or 0):.1f} % "
                f"of full, resized {100 * (r[3] or 0):.1f} %")

    # ---------------------------------------------------------------------------------------- running
    def _marker(self, stage: Stage) -> Path:
        return self.marks / f"{stage.name}.json"

    def _complete(self, stage: Stage) -> Optional[dict]:
        m = self._marker(stage)
        if self.cfg.force or not m.is_file():
            return None
        try:
            rec = json.loads(m.read_text())
        except ValueError:
            return None
        if rec.get("args") != stage.args or not all(p.exists() for p in stage.outputs):
            return None
        return rec

    def run(self) -> list[dict]:
        self.marks.mkdir(parents=True, exist_ok=True)
        done = []
        t_all = time.time()
        stages = self.stages()
        for k, stage in enumerate(stages, 1):
            if stage.name.startswith("eval-"):  # the trained model's path is known only after training
                stage = next(s for s in self.stages() if s.name == stage.name)
            rec = self._complete(stage)
            if rec is not None:
                info(f"[{k}/{len(stages)}] {stage.name:<11} reused   {rec['summary']}")
                done.append({**rec, "reused": True})
                continue
            t0 = time.time()
            info(f"[{k}/{len(stages)}] {stage.name:<11} running  vt {shlex.join(stage.args)}")
            vt(stage.args)
            rec = {"stage": stage.name, "args": stage.args, "seconds": round(time.time() - t0, 1),
                   "summary": stage.summary()}
            self._marker(stage).write_text(json.dumps(rec, indent=1))
            info(f"[{k}/{len(stages)}] {stage.name:<11} done     {rec['seconds']:.1f} s  {rec['summary']}")
            done.append({**rec, "reused": False})
        info(f"demo finished in {time.time() - t_all:.1f} s")
        return done

    def epilogue(self) -> str:
        db = shlex.quote(str(self.db))
        lines = ["", "Artefacts:",
                 f"  data (parquet + build.json)   {self.data}",
                 f"  tiny model                    {self.model}",
                 f"  database (all tables)         {self.db}",
                 f"  curated training set          {self.curated}",
                 f"  training run (metrics.jsonl)  {self.run_dir}",
                 f"  trained model                 {self.trained_model()}",
                 f"  eval predictions (JSONL)      {self.evals}",
                 f"  report                        {self.report / 'index.html'}",
                 "", "Try:"]
        lines += [f"  vt sql {shlex.quote(q)} --db {db}" for q in EXAMPLE_QUERIES]
        lines += [f"  vt eval --compare demo-full demo-low demo-think --db {db}"]
        return "\n".join(lines)


EXAMPLE_QUERIES = [
    "SELECT label, count(*) AS n FROM sufficiency GROUP BY label ORDER BY n DESC",
    "SELECT view, round(avg(score), 3) AS accuracy, round(avg(visual_tokens)) AS visual_tokens "
    "FROM rollouts GROUP BY view",
    "SELECT run, mode, round(avg(score), 3) AS accuracy, "
    "round(sum(visual_tokens) / sum(full_visual_tokens), 3) AS token_share "
    "FROM eval_predictions GROUP BY run, mode ORDER BY run",
]


def demo_command(
    out: str = typer.Option("demo-out", help="Directory for everything the demo writes."),
    force: bool = typer.Option(False, help="Redo every stage even when its outputs are complete."),
    eval_limit: int = typer.Option(16, help="Validation samples per eval mode."),
) -> None:
    """Run the whole pipeline offline on CPU: build -> tiny model -> score -> curate -> train -> eval -> report.

    A second run reuses every finished stage. Example: `vt demo --out demo-out`."""
    demo = Demo(DemoConfig(out=out, force=force, eval_limit=eval_limit))
    demo.run()
    console.print(demo.epilogue(), highlight=False)
