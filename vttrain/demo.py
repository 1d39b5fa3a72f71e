"""`vt demo`: the whole pipeline, offline on CPU, on the embedded synthetic data with a tiny model.

build-data -> init-model tiny -> score-judge -> curate -> train -> eval (full, low, think) -> report

Every stage is the real `vt` command, invoked in this process through the CLI itself (one code path
with what a user types; torch is imported once). What a stage prints to stdout (its result tables,
the trainer's logs) goes to `OUT/.demo/<stage>.log`; the demo prints one summary line per stage.
A stage that finished writes a marker `OUT/.demo/<stage>.json` with its arguments and summary; a
second `vt demo` reuses every stage whose marker matches and whose outputs exist, and redoes the rest
(the commands are resumable themselves, so an interrupted stage continues where it stopped). When a
stage reruns, the stages after it rerun too: training starts afresh when its inputs changed (and
resumes when it was only interrupted), and the eval runs of a retrained model start afresh.
"""
from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import typer

from vtdata.console import VtError, console, info

from vt import shipped

MODES = ("full", "low", "think")


@dataclass
class DemoConfig:
    """Options of `vt demo` (the defaults run in a few minutes on 2 CPU cores)."""

    out: str = "demo-out"
    """Directory for everything the demo writes (data, model, database, runs, evals, report)."""
    manifest: str = str(shipped("demo.yaml"))
    """Data manifest (the embedded synthetic default)."""
    train_config: str = str(shipped("train-demo.yaml"))
    """Training config (tiny model, CPU, a few steps)."""
    rollouts: int = 2
    """Scoring rollouts per view and sample (the paper uses 8)."""
    score_limit: int = 32
    """Training samples to score."""
    per_class: int = 8
    """Curated samples per class; with an untrained model every sample is ambiguous, so the classes are
    topped up with the closest ambiguous samples (`vt curate --fill-short`)."""
    train_steps: int | None = None
    """Optimiser steps (default: the training config's max_steps)."""
    eval_limit: int = 16
    """Validation samples per eval mode."""
    max_new_tokens: int = 32
    """Generation budget per turn when scoring and evaluating (a random model writes noise)."""
    force: bool = False
    """Start from scratch: delete OUT (only if it is a demo directory) and run every stage."""


@dataclass
class Stage:
    name: str
    args: list[str]                      # the command line, which the marker must match
    outputs: list[Path]
    summary: Callable[[], str]
    extra: Callable[[], list[str]] = field(default=lambda: [])  # run-time flags not part of the identity
    inputs: list[Path] = field(default_factory=list)  # files whose content is part of the identity

    def identity(self) -> dict:
        import hashlib
        return {"args": self.args, "inputs": {str(p): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                                              for p in self.inputs if p.is_file()}}


def vt(args: list[str]) -> None:
    """Run one `vt` command in this process exactly as the CLI would (its VtError propagates)."""
    import click
    import typer.main

    from vt import cli
    cmd = typer.main.get_command(cli.app)
    try:
        cmd.main(args=[str(a) for a in args], prog_name="vt", standalone_mode=False)
    except click.exceptions.Exit as e:
        if e.exit_code:
            raise VtError(f"`vt {shlex.join(map(str, args))}` exited with status {e.exit_code}") from None
    except click.ClickException as e:
        raise VtError(f"`vt {shlex.join(map(str, args))}`: {e.format_message()}") from None


class Demo:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.out = Path(cfg.out).resolve()
        self.data = self.out / "data"
        self.model = self.out / "model"
        self.db = self.out / "vt.duckdb"
        self.curated = self.out / "curated"
        self.run_dir = self.out / "train"
        self.final = self.run_dir / "final"
        self.evals = self.out / "evals"
        self.report = self.out / "report"
        self.marks = self.out / ".demo"

    def _sql(self, query: str, params=None) -> list[tuple]:
        from vtdata.db import connect
        con = connect(self.db, read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()

    def stages(self) -> list[Stage]:
        c, db = self.cfg, ["--db", str(self.db)]
        steps = ["--max_steps", str(c.train_steps)] if c.train_steps else []
        stages = [
            Stage("build-data", ["build-data", c.manifest, "--out", str(self.data)] + db,
                  [self.data / "build.json"], self._sum_build, inputs=[Path(c.manifest)]),
            Stage("init-model", ["init-model", "tiny", str(self.model)], [self.model / "config.json"],
                  lambda: f"tiny random Qwen2.5-VL in {self.model}"),
            Stage("score-judge", ["score-judge", "--data", str(self.data), "--policy", f"local:{self.model}",
                                  "--judge", "auto", "--rollouts", str(c.rollouts), "--limit", str(c.score_limit),
                                  "--max-new-tokens", str(c.max_new_tokens)] + db,
                  [self.db], self._sum_score),
            Stage("curate", ["curate", "--name", "demo", "--per-class", str(c.per_class), "--allow-short",
                             "--fill-short", "--out", str(self.curated)] + db,
                  [self.curated / "build.json"], self._sum_curate),
            Stage("train", ["train", c.train_config, "--model", str(self.model), "--data_dir", str(self.curated),
                            "--output_dir", str(self.run_dir)] + steps,
                  [self.final, self.run_dir / "metrics.jsonl"], self._sum_train, extra=self._resume_flag,
                  inputs=[Path(c.train_config)]),
        ]
        for mode in MODES:
            stages.append(Stage(f"eval-{mode}", ["eval", "--model", str(self.final), "--data", str(self.data),
                                                 "--mode", mode, "--limit", str(c.eval_limit), "--name",
                                                 f"demo-{mode}", "--max-new-tokens", str(c.max_new_tokens),
                                                 "--out", str(self.evals)] + db,
                                [self.evals / f"demo-{mode}.jsonl"], lambda m=mode: self._sum_eval(m)))
        stages.append(Stage("report", ["report", "--out", str(self.report), "--runs", str(self.run_dir)] + db,
                            [self.report / "index.html"], lambda: str(self.report / "index.html")))
        return stages

    # ---------------------------------------------------------------------------------- summaries
    def _sum_build(self) -> str:
        c = json.loads((self.data / "build.json").read_text())["counts"]
        return f"{c['kept']} samples (train {c['by_split']['train']}, val {c['by_split']['val']}), " \
               f"{c['rejected']} rejected"

    def _sum_score(self) -> str:
        rows = self._sql("SELECT label, count(*) FROM sufficiency GROUP BY 1 ORDER BY 1")
        acc = self._sql("SELECT avg(score) FILTER (WHERE view = 'low'), avg(score) FILTER (WHERE view = 'high') "
                        "FROM rollouts")[0]
        return (f"{sum(n for _, n in rows)} samples: " + ", ".join(f"{k} {v}" for k, v in rows)
                + f"; rollout accuracy low {100 * (acc[0] or 0):.0f} %, high {100 * (acc[1] or 0):.0f} %")

    def _sum_curate(self) -> str:
        rows = dict(self._sql("SELECT CASE WHEN use_tool THEN 'needs_high' ELSE 'low_ok' END, count(*) "
                              "FROM curated WHERE name = 'demo' GROUP BY 1"))
        filled = self._sql("SELECT count(*) FILTER (WHERE filled) FROM curated WHERE name = 'demo'")[0][0]
        return f"low_ok {rows.get('low_ok', 0)}, needs_high {rows.get('needs_high', 0)} ({filled} filled from ambiguous)"

    def _sum_train(self) -> str:
        from vttrain.report import read_metrics
        rows = [r for r in read_metrics(self.run_dir) if "reward" in r]
        last = rows[-1] if rows else {}
        return (f"{len(rows)} steps, last reward {last.get('reward')}, resize ratio {last.get('resize_ratio')}; "
                f"model in {self.final}")

    def _sum_eval(self, mode: str) -> str:
        from vtdata.db import connect
        from vttrain.eval import pct, summarize
        con = connect(self.db, read_only=True)
        try:
            total = summarize(con, f"demo-{mode}")[-1]
        finally:
            con.close()
        return (f"{total['samples']} samples, accuracy {pct(total['accuracy'])} %, visual tokens "
                f"{pct(total['visual_tokens_rel'])} % of full, resized {pct(total['resize_ratio'])} %")

    def _resume_flag(self) -> list[str]:
        """An interrupted training run continues from its latest checkpoint."""
        from vttrain.train import latest_checkpoint
        return ["--resume"] if self.run_dir.is_dir() and latest_checkpoint(self.run_dir) else []

    # ---------------------------------------------------------------------------------------- running
    def _reusable(self, stage: Stage) -> dict | None:
        m = self.marks / f"{stage.name}.json"
        try:
            rec = json.loads(m.read_text())
        except (OSError, ValueError):
            return None
        if rec.get("identity") != stage.identity() or not all(p.exists() for p in stage.outputs):
            return None
        return rec

    def _forget_evals(self) -> None:
        """A retrained model invalidates the demo's eval runs (same names, same model path)."""
        if not self.db.exists():
            return
        from vtdata.db import writer
        from vttrain.eval import drop_runs
        with writer(self.db, "vt demo") as con:
            drop_runs(con, [f"demo-{m}" for m in MODES])

    def run(self) -> list[dict]:
        if self.cfg.force and self.out.exists():
            if not self.marks.is_dir():
                raise VtError(f"--force would delete {self.out}, which is not a vt demo directory; "
                              f"pick another --out")
            shutil.rmtree(self.out)
        from vttrain.models import make_out_dir
        make_out_dir(make_out_dir(self.out) / ".demo")
        stages, done, rerun = self.stages(), [], False
        t_all = time.time()
        for k, stage in enumerate(stages, 1):
            tag = f"[{k}/{len(stages)}] {stage.name:<11}"
            rec = None if rerun else self._reusable(stage)
            if rec is not None:
                info(f"{tag} reused  {rec['summary']}")
                done.append({**rec, "reused": True})
                continue
            upstream_changed, rerun = rerun, True
            if stage.name == "train":
                self._forget_evals()
                if upstream_changed and self.run_dir.exists():
                    shutil.rmtree(self.run_dir)  # new data or model: train afresh instead of resuming
            args = stage.args + stage.extra()
            log = self.marks / f"{stage.name}.log"
            info(f"{tag} running vt {shlex.join(args)}  (its output: {log})")
            t0 = time.time()
            with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
                vt(args)  # results (tables, trainer logs) to the stage's log; progress bars stay on stderr
            rec = {"stage": stage.name, "identity": stage.identity(), "seconds": round(time.time() - t0, 1),
                   "summary": stage.summary()}
            (self.marks / f"{stage.name}.json").write_text(json.dumps(rec, indent=1))
            info(f"{tag} done in {rec['seconds']:.1f} s: {rec['summary']}")
            done.append({**rec, "reused": False})
        info(f"demo: {len(stages)} stages in {time.time() - t_all:.1f} s "
             f"({sum(1 for d in done if d['reused'])} reused)")
        return done

    def epilogue(self) -> str:
        db = shlex.quote(str(self.db))
        lines = ["", "Artefacts:",
                 f"  data (parquet shards, build.json)  {self.data}",
                 f"  tiny base model                    {self.model}",
                 f"  database (every table)             {self.db}",
                 f"  curated training set               {self.curated}",
                 f"  training run (metrics.jsonl)       {self.run_dir}",
                 f"  trained model                      {self.final}",
                 f"  eval predictions (JSONL)           {self.evals}",
                 f"  report                             {self.report / 'index.html'}",
                 "", "Query the database:"]
        lines += [f"  vt sql {shlex.quote(q)} --db {db}" for q in EXAMPLE_QUERIES]
        lines += ["", f"Compare the eval runs again: vt eval --compare demo-full demo-low demo-think --db {db}"]
        return "\n".join(lines)


EXAMPLE_QUERIES = [
    "SELECT * FROM label_counts",
    "SELECT source, round(low_accuracy, 3) AS low, round(high_accuracy, 3) AS high FROM low_vs_high_accuracy",
    "SELECT run, mode, round(avg(score), 3) AS accuracy, "
    "round(sum(visual_tokens) / sum(full_visual_tokens), 3) AS token_share, "
    "round(avg(resized::INT), 3) AS resize_ratio FROM eval_predictions GROUP BY ALL ORDER BY run",
]


def demo_command(
    out: str = typer.Option("demo-out", help="Directory for everything the demo writes."),
    force: bool = typer.Option(False, "--force", help="Start from scratch (deletes OUT if it is a demo directory)."),
    manifest: str = typer.Option(DemoConfig.manifest, help="Data manifest (default: the embedded synthetic demo)."),
    train_config: str = typer.Option(DemoConfig.train_config, help="Training config YAML."),
    rollouts: int = typer.Option(2, help="Scoring rollouts per view and sample (the paper: 8)."),
    score_limit: int = typer.Option(32, help="Training samples to score."),
    per_class: int = typer.Option(8, help="Curated samples per class (short classes topped up from ambiguous)."),
    train_steps: int = typer.Option(None, help="Optimiser steps (default: the training config's)."),
    eval_limit: int = typer.Option(16, help="Validation samples per eval mode."),
    max_new_tokens: int = typer.Option(32, help="Generation budget per turn when scoring and evaluating."),
) -> None:
    """Run the whole pipeline offline on CPU: build -> tiny model -> score -> curate -> train -> eval -> report.

    A second run reuses every finished stage. Example: `vt demo --out demo-out`."""
    import os
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the demo needs is made locally
    for name, v in (("--rollouts", rollouts), ("--score-limit", score_limit), ("--per-class", per_class),
                    ("--eval-limit", eval_limit), ("--max-new-tokens", max_new_tokens),
                    ("--train-steps", train_steps if train_steps is not None else 1)):
        if v < 1:
            raise VtError(f"{name} must be at least 1")
    for name, path in (("--manifest", manifest), ("--train-config", train_config)):
        if not Path(path).is_file():
            raise VtError(f"{name} {path}: no such file")
    cfg = DemoConfig(out=out, force=force, manifest=str(Path(manifest).resolve()),
                     train_config=str(Path(train_config).resolve()), rollouts=rollouts, score_limit=score_limit,
                     per_class=per_class, train_steps=train_steps, eval_limit=eval_limit,
                     max_new_tokens=max_new_tokens)
    demo = Demo(cfg)
    demo.run()
    vt(["eval", "--compare", "demo-full", "demo-low", "demo-think", "--db", str(demo.db)])
    console.print(demo.epilogue(), highlight=False, soft_wrap=True)
