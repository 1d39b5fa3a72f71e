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


PENALTY_MODES = ("paper", "none", "always")  # the science run's GRPO runs (paper Fig. 3a)


@dataclass
class DemoConfig:
    """Options of `vt demo` (the defaults run in a few minutes on 2 CPU cores)."""

    out: str = "demo-out"
    """Directory for everything the demo writes (data, model, database, runs, evals, report)."""
    manifest: str = str(shipped("miniature.yaml"))
    """Data manifest (the embedded miniature task: colour questions vs box-pattern detail questions)."""
    train_config: str = str(shipped("train-mini.yaml"))
    """Training config (the warm-started mini model, CPU GRPO)."""
    science: bool = False
    """The miniature experiment (`make science`): more scoring, a longer GRPO run per penalty mode
    (paper, none, always: Fig. 3a), every eval on the whole val split."""
    warm_steps: int | None = None
    """SFT steps of the warm start (`vt init-model mini --steps`; default its own)."""
    rollouts: int = 4
    """Scoring rollouts per view and sample (the paper uses 8)."""
    score_limit: int = 64
    """Training samples to score."""
    per_class: int = 24
    """Curated samples per class (a class the scoring labels short is topped up with the closest
    ambiguous samples, `vt curate --fill-short`)."""
    train_steps: int | None = None
    """Optimiser steps per GRPO run (default: the training config's max_steps, 200: the two classes
    separated between steps 90 and 140 in our runs, after both first fell towards answering directly)."""
    eval_limit: int = 64
    """Validation samples per eval run."""
    max_new_tokens: int = 16
    """Generation budget per turn when scoring and evaluating (the mini model's turns are ~7 tokens)."""
    seed: int = 0
    """Seed of scoring, curation and GRPO (the warm start keeps its own seed, so it stays cached)."""
    force: bool = False
    """Start from scratch: delete OUT (only if it is a demo directory) and run every stage."""

    @classmethod
    def for_science(cls, **kw) -> "DemoConfig":
        """The `make science` preset; keyword arguments override it."""
        return cls(**{"out": "science-out", "science": True, "rollouts": 8, "score_limit": 480, "per_class": 96,
                      "eval_limit": 180, **kw})

    def train_runs(self) -> tuple[str, ...]:
        return PENALTY_MODES if self.science else ("paper",)


@dataclass
class Stage:
    name: str
    args: list[str]                      # the command line, which the marker must match
    outputs: list[Path]
    summary: Callable[[], str]
    extra: Callable[[], list[str]] = field(default=lambda: [])  # run-time flags not part of the identity
    inputs: list[Path] = field(default_factory=list)  # files whose content is part of the identity
    run_dir: Path | None = None  # a training stage's run directory (trained afresh when upstream changed)

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
        self.evals = self.out / "evals"
        self.report = self.out / "report"
        self.marks = self.out / ".demo"
        self.prefix = "science" if cfg.science else "demo"  # eval run names and the curated set's name

    def run_dir(self, mode: str) -> Path:
        """The GRPO run of one penalty mode (the demo has one run, `train/`)."""
        return self.out / (f"train-{mode}" if self.cfg.science else "train")

    def eval_runs(self) -> list[tuple[str, str, Path]]:
        """(run name, eval mode, model): full and low of the warm start (the base model of Table 2),
        think of each GRPO run."""
        runs = [(f"{self.prefix}-{m}", m, self.model) for m in ("full", "low")]
        for mode in self.cfg.train_runs():
            name = f"{self.prefix}-think-{mode}" if self.cfg.science else f"{self.prefix}-think"
            runs.append((name, "think", self.run_dir(mode) / "final"))
        return runs

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
        warm = ["--steps", str(c.warm_steps)] if c.warm_steps else []
        stages = [
            Stage("build-data", ["build-data", c.manifest, "--out", str(self.data)] + db,
                  [self.data / "build.json"], self._sum_build, inputs=[Path(c.manifest)]),
            Stage("init-model", ["init-model", "mini", str(self.model)] + warm, [self.model / "config.json"],
                  self._sum_model),
            Stage("score-judge", ["score-judge", "--data", str(self.data), "--policy", f"local:{self.model}",
                                  "--judge", "auto", "--rollouts", str(c.rollouts), "--limit", str(c.score_limit),
                                  "--max-new-tokens", str(c.max_new_tokens), "--seed", str(c.seed)] + db,
                  [self.db], self._sum_score),
            Stage("curate", ["curate", "--name", self.prefix, "--per-class", str(c.per_class), "--allow-short",
                             "--fill-short", "--seed", str(c.seed), "--out", str(self.curated)] + db,
                  [self.curated / "build.json"], self._sum_curate),
        ]
        for mode in c.train_runs():
            run = self.run_dir(mode)
            stages.append(Stage(run.name, ["train", c.train_config, "--model", str(self.model), "--data_dir",
                                           str(self.curated), "--output_dir", str(run), "--penalty_mode", mode,
                                           "--seed", str(c.seed)] + steps,
                                [run / "final", run / "metrics.jsonl"], lambda r=run: self._sum_train(r),
                                extra=lambda r=run: self._resume_flag(r), inputs=[Path(c.train_config)], run_dir=run))
        for name, mode, model in self.eval_runs():
            stages.append(Stage(f"eval-{name.removeprefix(self.prefix + '-')}",
                                ["eval", "--model", str(model), "--data", str(self.data), "--mode", mode, "--limit",
                                 str(c.eval_limit), "--name", name, "--max-new-tokens", str(c.max_new_tokens),
                                 "--out", str(self.evals)] + db,
                                [self.evals / f"{name}.jsonl"], lambda n=name: self._sum_eval(n)))
        runs = [a for m in c.train_runs() for a in ("--runs", str(self.run_dir(m)))]
        stages.append(Stage("report", ["report", "--out", str(self.report), *runs] + db,
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
                              "FROM curated WHERE name = ? GROUP BY 1", [self.prefix]))
        filled = self._sql("SELECT count(*) FILTER (WHERE filled) FROM curated WHERE name = ?", [self.prefix])[0][0]
        return f"low_ok {rows.get('low_ok', 0)}, needs_high {rows.get('needs_high', 0)} ({filled} filled from ambiguous)"

    def _sum_model(self) -> str:
        meta = json.loads((self.model / "vt_init.json").read_text())
        last = (meta.get("checks") or [{}])[-1]
        return (f"warm-started mini Qwen2.5-VL in {self.model} ({meta.get('steps_trained')} SFT steps; held-out "
                f"accuracy general {last.get('general')}, detail {last.get('ocr')})")

    def _sum_train(self, run: Path) -> str:
        from vttrain.report import read_metrics
        rows = [r for r in read_metrics(run) if "reward" in r]
        tail = rows[-max(1, len(rows) // 5):]  # the last fifth of the steps

        def mean(key):
            v = [r[key] for r in tail if isinstance(r.get(key), (int, float))]
            return f"{sum(v) / len(v):.2f}" if v else "n/a"
        return (f"{len(rows)} steps; last fifth: reward {mean('reward')}, resize ratio needs_high "
                f"{mean('resize_ratio_needs_high')}, low_ok {mean('resize_ratio_low_ok')}; model in {run / 'final'}")

    def _sum_eval(self, run: str) -> str:
        from vtdata.db import connect
        from vttrain.eval import pct, summarize
        con = connect(self.db, read_only=True)
        try:
            rows = summarize(con, run)
        finally:
            con.close()
        total = rows[-1]
        per = ", ".join(f"{r['source']} {pct(r['accuracy'])} % (resized {pct(r['resize_ratio'])} %)" for r in rows[:-1])
        return (f"{total['samples']} samples, accuracy {pct(total['accuracy'])} %, visual tokens "
                f"{pct(total['visual_tokens_rel'])} % of full, resized {pct(total['resize_ratio'])} %; {per}")

    def _resume_flag(self, run: Path) -> list[str]:
        """An interrupted training run continues from its latest checkpoint."""
        from vttrain.train import latest_checkpoint
        return ["--resume"] if run.is_dir() and latest_checkpoint(run) else []

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
            drop_runs(con, [name for name, _, _ in self.eval_runs()])

    def run(self) -> list[dict]:
        if self.cfg.force and self.out.exists():
            if not self.marks.is_dir():
                raise VtError(f"--force would delete {self.out}, which is not a vt demo directory; "
                              f"pick another --out")
            shutil.rmtree(self.out)
        from vtdata.outdir import make_out_dir
        make_out_dir(make_out_dir(self.out) / ".demo")
        stages, done, rerun = self.stages(), [], False
        t_all = time.time()
        for k, stage in enumerate(stages, 1):
            tag = f"[{k}/{len(stages)}] {stage.name:<{max(len(x.name) for x in stages)}}"
            rec = None if rerun else self._reusable(stage)
            if rec is not None:
                info(f"{tag} reused  {rec['summary']}")
                done.append({**rec, "reused": True})
                continue
            upstream_changed, rerun = rerun, True
            if stage.run_dir is not None:
                self._forget_evals()
                if upstream_changed and stage.run_dir.exists():
                    shutil.rmtree(stage.run_dir)  # new data or model: train afresh instead of resuming
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
                 f"  warm-started base model            {self.model}",
                 f"  database (every table)             {self.db}",
                 f"  curated training set               {self.curated}"]
        for mode in self.cfg.train_runs():
            lines += [f"  training run (metrics.jsonl)       {self.run_dir(mode)}",
                      f"  trained model                      {self.run_dir(mode) / 'final'}"]
        lines += [f"  eval predictions (JSONL)           {self.evals}",
                 f"  report                             {self.report / 'index.html'}",
                 "", "Query the database:"]
        lines += [f"  vt sql {shlex.quote(q)} --db {db}" for q in EXAMPLE_QUERIES]
        names = " ".join(name for name, _, _ in self.eval_runs())
        lines += ["", f"Compare the eval runs again: vt eval --compare {names} --db {db}"]
        return "\n".join(lines)


EXAMPLE_QUERIES = [
    "SELECT * FROM label_counts",
    "SELECT source, round(low_accuracy, 3) AS low, round(high_accuracy, 3) AS high FROM low_vs_high_accuracy",
    "SELECT run, mode, round(avg(score), 3) AS accuracy, "
    "round(sum(visual_tokens) / sum(full_visual_tokens), 3) AS token_share, "
    "round(avg(resized::INT), 3) AS resize_ratio FROM eval_predictions GROUP BY ALL ORDER BY run",
]


def demo_command(
    out: str = typer.Option(None, help="Directory for everything the demo writes (default demo-out, "
                                       "science-out with --science)."),
    science: bool = typer.Option(False, "--science", help="The miniature experiment (`make science`): GRPO "
                                 "with penalty modes paper, none and always, larger scoring and evals."),
    force: bool = typer.Option(False, "--force", help="Start from scratch (deletes OUT if it is a demo directory)."),
    manifest: str = typer.Option(DemoConfig.manifest, help="Data manifest (default: the embedded miniature task)."),
    train_config: str = typer.Option(DemoConfig.train_config, help="Training config YAML."),
    warm_steps: int = typer.Option(None, help="SFT steps of the warm start (default: vt init-model mini's)."),
    rollouts: int = typer.Option(None, help="Scoring rollouts per view and sample (default 4; science 8, the paper's)."),
    score_limit: int = typer.Option(None, help="Training samples to score (default 64; science 480)."),
    per_class: int = typer.Option(None, help="Curated samples per class (default 24; science 96)."),
    train_steps: int = typer.Option(None, help="Optimiser steps per GRPO run (default: the training config's, 200)."),
    eval_limit: int = typer.Option(None, help="Validation samples per eval run (default 64; science 180, the whole val split)."),
    max_new_tokens: int = typer.Option(None, help="Generation budget per turn when scoring and evaluating (16)."),
    seed: int = typer.Option(0, help="Seed of scoring, curation and GRPO (the warm start stays cached)."),
) -> None:
    """Run the whole pipeline offline on CPU: build -> warm-started mini model -> score -> curate -> GRPO ->
    eval -> report.

    A second run reuses every finished stage. Examples: `vt demo --out demo-out`; `vt demo --science`."""
    import os
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the demo needs is made locally
    given = {"out": out, "rollouts": rollouts, "score_limit": score_limit, "per_class": per_class,
             "eval_limit": eval_limit, "max_new_tokens": max_new_tokens, "train_steps": train_steps,
             "warm_steps": warm_steps}
    for name, v in given.items():
        if name != "out" and v is not None and v < 1:
            raise VtError(f"--{name.replace('_', '-')} must be at least 1")
    for name, path in (("--manifest", manifest), ("--train-config", train_config)):
        if not Path(path).is_file():
            raise VtError(f"{name} {path}: no such file")
    kw = {k: v for k, v in given.items() if v is not None}
    kw.update(force=force, seed=seed, manifest=str(Path(manifest).resolve()),
              train_config=str(Path(train_config).resolve()))
    cfg = DemoConfig.for_science(**kw) if science else DemoConfig(**kw)
    demo = Demo(cfg)
    demo.run()
    vt(["eval", "--compare", *[name for name, _, _ in demo.eval_runs()], "--db", str(demo.db)])
    console.print(demo.epilogue(), highlight=False, soft_wrap=True)
