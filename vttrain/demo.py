"""`vt demo`: the whole pipeline, offline on CPU, on the embedded synthetic data with a tiny model.

build-data -> init-model tiny -> score-judge -> curate -> train -> eval (full, low, think) -> report

Every stage is the real `vt` command, invoked in this process through the CLI itself (one code path
with what a user types; torch is imported once). What a stage prints to stdout (its result tables,
the trainer's logs) goes to `OUT/.demo/<stage>.log`; the demo prints one summary line per stage.
The stages run through `vtdata.stages`: a stage that finished writes a marker `OUT/.demo/<stage>.json`
with its arguments and summary; a second `vt demo` reuses every stage whose marker matches and whose
outputs exist, and redoes the rest (the commands are resumable themselves, so an interrupted stage
continues where it stopped). When a stage reruns, the stages after it rerun too: training starts
afresh when its inputs changed (and resumes when it was only interrupted), and the eval runs of a
retrained model start afresh.
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

from vtdata.config import command
from vtdata.console import VtError, console, info
from vtdata.stages import Stage, run_stages
from vttrain.report.summary import pct, summarize

from vtdata.shipped import shipped

MODES = ("full", "low", "think")


PENALTY_MODES = ("paper", "none", "always")  # the science run's GRPO runs (paper Fig. 3a)


@dataclass
class DemoConfig:
    """Run the whole pipeline offline on CPU: build -> warm-started mini model -> score -> curate -> GRPO ->
    eval -> report.

    A second run reuses every finished stage. Examples: `vt demo --out demo-out`; `vt demo --science`.
    The defaults run in a few minutes on 2 CPU cores; `--science` changes the defaults marked (science: ...)."""

    out: str | None = field(default=None, metadata={"flags": ["-o"]})
    """Directory for everything the demo writes: data, model, database, runs, evals, report (default demo-out;
    science: science-out)."""
    manifest: str = str(shipped("sufficiency.yaml"))
    """Data manifest (the embedded image-decision task: one box-pattern question on `fine` images, which only
    the high view answers, and `coarse` ones, which the low view answers; plus `general` colour questions)."""
    train_config: str = str(shipped("train-mini.yaml"))
    """Training config (the warm-started mini model, CPU GRPO)."""
    science: bool = False
    """The miniature experiment (`make science`): more scoring, a longer GRPO run per penalty mode
    (paper, none, always: Fig. 3a), every eval on the whole val split."""
    warm_steps: int | None = None
    """SFT steps of the warm start (`vt init-model mini --steps`; default its own)."""
    warm_seed: int = 0
    """Seed of the warm start (`vt init-model mini --seed`: its tokenizer, weights and SFT rows; each seed is
    built once, then cached)."""
    rollouts: int | None = None
    """Scoring rollouts per view and sample (default 4; science: 8, the paper's)."""
    score_limit: int | None = None
    """Training samples to score (default 144; science: 480)."""
    per_class: int | None = None
    """Curated samples per class (default 32; science: 96), spread over the gold answers (`vt curate --stratify
    answer`: a colour the set lacks was forgotten by GRPO, every blue image answered purple, issue 28); a class the
    scoring labels short is topped up with the closest ambiguous samples of its own sources (`--fill-short`). The
    default leaves the needs_high class fine samples to spare (144 scored: ~48 fine)."""
    train_steps: int | None = None
    """Optimiser steps per GRPO run (default 240; science: the training config's max_steps, 300). The constant learning
    rate makes a run's step-N checkpoint the N-step run: the 8 demo-setting runs of `bench/science.py --matrix`
    (4 warm-start builds x 2 seeds) each resized fine and no other source, at 100 % accuracy, from step 200 on."""
    eval_limit: int | None = None
    """Validation samples per eval run (default 64; science: 180, the whole val split)."""
    max_new_tokens: int = 16
    """Generation budget per turn when scoring and evaluating (the mini model's turns are ~7 tokens)."""
    penalty_modes: str | None = None
    """Comma-separated GRPO runs, one per penalty mode (default paper; science: paper,none,always, Fig. 3a)."""
    seed: int = 0
    """Seed of scoring, curation and GRPO (the warm start keeps its own seed, so it stays cached)."""
    force: bool = False
    """Start from scratch: delete OUT (only if it is a demo directory) and run every stage."""

    def __post_init__(self):
        preset = SCIENCE if self.science else DEFAULTS
        for name, value in preset.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in ("warm_steps", "rollouts", "score_limit", "per_class", "train_steps", "eval_limit", "max_new_tokens"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise VtError(f"--{name.replace('_', '-')} must be at least 1")
        if self.penalty_modes is not None:
            from vttrain.grpo.reward import MODES
            modes = self.train_runs()
            if any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
                raise VtError(f"--penalty-modes takes distinct modes among {', '.join(MODES)}; got {self.penalty_modes!r}")
        for name in ("manifest", "train_config"):
            path = Path(getattr(self, name))
            if not path.is_file():
                raise VtError(f"--{name.replace('_', '-')} {path}: no such file")
            setattr(self, name, str(path.resolve()))

    def train_runs(self) -> tuple[str, ...]:
        if self.penalty_modes is not None:
            return tuple(m.strip() for m in self.penalty_modes.split(","))
        return PENALTY_MODES if self.science else ("paper",)


DEFAULTS = {"out": "demo-out", "rollouts": 4, "score_limit": 144, "per_class": 32, "train_steps": 240, "eval_limit": 64}
SCIENCE = {"out": "science-out", "rollouts": 8, "score_limit": 480, "per_class": 96, "eval_limit": 180}


@dataclass
class DemoStage(Stage):
    """A `vt` command as a stage: its one-line summary, run-time flags and training run directory."""
    summary: Callable[[], str] = field(default=lambda: "")
    extra: Callable[[], list[str]] = field(default=lambda: [])  # run-time flags not part of the identity
    run_dir: Path | None = None  # a training stage's run directory (trained afresh when upstream changed)


def own_output() -> list[str]:
    """The demo owns OUT (OUT/.demo marks it): a stage that runs again replaces its own directory (and
    curated set) with --force, also one an older vt wrote (no .vt-output). A run-time flag, not part of
    the stage's identity, so a demo directory from before the flag is reused as it is."""
    return ["--force"]


def vt(args: list[str]) -> None:
    """Run one `vt` command in this process exactly as the CLI would (its VtError propagates; a usage
    error or a non-zero exit becomes a VtError): the command's function (vttrain.commands) in a typer app of
    its own. Typer bundles its own click: its exceptions derive from `typer.TyperException`, and
    `standalone_mode=False` returns an exit status instead of raising it."""
    import typer.main

    from vttrain import commands
    name = str(args[0])
    if name not in commands.COMMANDS:
        raise VtError(f"`vt {name}`: not a pipeline command ({', '.join(commands.COMMANDS)})")
    fn = commands.load(name)
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)  # a group, so the command is named as on the command line
    app.command(name, context_settings=getattr(fn, "context_settings", None))(fn)
    cmd = typer.main.get_command(app)
    try:
        status = cmd.main(args=[str(a) for a in args], prog_name="vt", standalone_mode=False)
    except typer.Exit as e:
        status = e.exit_code
    except typer.TyperException as e:
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        raise VtError(f"`vt {shlex.join(map(str, args))}`: {message}") from None
    if type(status) is int and status:  # no command's run() returns an int
        raise VtError(f"`vt {shlex.join(map(str, args))}` exited with status {status}")


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
        self.per_mode = cfg.science or cfg.train_runs() != ("paper",)  # run dirs and eval names name the mode

    def run_dir(self, mode: str) -> Path:
        """The GRPO run of one penalty mode (the demo has one run, `train/`)."""
        return self.out / (f"train-{mode}" if self.per_mode else "train")

    def eval_runs(self) -> list[tuple[str, str, Path]]:
        """(run name, eval mode, model): full and low of the warm start (the base model of Table 2),
        think of each GRPO run."""
        runs = [(f"{self.prefix}-{m}", m, self.model) for m in ("full", "low")]
        for mode in self.cfg.train_runs():
            name = f"{self.prefix}-think-{mode}" if self.per_mode else f"{self.prefix}-think"
            runs.append((name, "think", self.run_dir(mode) / "final"))
        return runs

    def _sql(self, query: str, params=None) -> list[tuple]:
        from vtdata.db import connect
        con = connect(self.db, read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()

    def stages(self) -> list[DemoStage]:
        c, db = self.cfg, ["--db", str(self.db)]
        steps = ["--max_steps", str(c.train_steps)] if c.train_steps else []
        warm = (["--steps", str(c.warm_steps)] if c.warm_steps else []) + (["--seed", str(c.warm_seed)] if c.warm_seed else [])
        stages = [
            DemoStage("build-data", ["build-data", c.manifest, "--out", str(self.data)] + db,
                      [self.data / "build.json"], inputs=[Path(c.manifest)], summary=self._sum_build, extra=own_output),
            DemoStage("init-model", ["init-model", "mini", str(self.model)] + warm, [self.model / "config.json"],
                      summary=self._sum_model, extra=own_output),
            DemoStage("score-judge", ["score-judge", "--data", str(self.data), "--policy", f"local:{self.model}",
                                      "--judge", "auto", "--rollouts", str(c.rollouts), "--limit", str(c.score_limit),
                                      "--max-new-tokens", str(c.max_new_tokens), "--seed", str(c.seed)] + db,
                      [self.db], summary=self._sum_score),
            DemoStage("curate", ["curate", "--name", self.prefix, "--per-class", str(c.per_class), "--allow-short",
                                 "--fill-short", "--stratify", "answer", "--seed", str(c.seed), "--out",
                                 str(self.curated), "--data", str(self.data)] + db,
                      [self.curated / "build.json"], summary=self._sum_curate, extra=own_output),
        ]
        for mode in c.train_runs():
            run = self.run_dir(mode)
            stages.append(DemoStage(run.name, ["train", c.train_config, "--model", str(self.model), "--data_dir",
                                               str(self.curated), "--output_dir", str(run), "--penalty_mode", mode,
                                               "--seed", str(c.seed)] + steps,
                                    [run / "final", run / "metrics.jsonl"], inputs=[Path(c.train_config)],
                                    summary=lambda r=run: self._sum_train(r),
                                    extra=lambda r=run: self._resume_flag(r), run_dir=run))
        for name, mode, model in self.eval_runs():
            stages.append(DemoStage(f"eval-{name.removeprefix(self.prefix + '-')}",
                                    ["eval", "--model", str(model), "--data", str(self.data), "--mode", mode, "--limit",
                                     str(c.eval_limit), "--name", name, "--max-new-tokens", str(c.max_new_tokens),
                                     "--out", str(self.evals)] + db,
                                    [self.evals / f"{name}.jsonl"], summary=lambda n=name: self._sum_eval(n)))
        runs = [a for m in c.train_runs() for a in ("--runs", str(self.run_dir(m)))]
        stages.append(DemoStage("report", ["report", "--out", str(self.report), *runs] + db,
                                [self.report / "index.html"], summary=lambda: str(self.report / "index.html"),
                                extra=own_output))
        return stages

    # ---------------------------------------------------------------------------------- summaries
    def _sum_build(self) -> str:
        c = json.loads((self.data / "build.json").read_text())["counts"]
        return f"{c['kept']} samples (train {c['by_split']['train']}, val {c['by_split']['val']}), " \
               f"{c['rejected']} rejected"

    def _sum_score(self) -> str:
        rows = self._sql("SELECT label, count(*) FROM sufficiency WHERE dataset = ? GROUP BY 1 ORDER BY 1",
                         [str(self.data.resolve())])
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
        calls = meta.get("call_probability") or {}
        return (f"warm-started mini Qwen2.5-VL in {self.model} ({meta.get('steps_trained')} SFT steps; held-out "
                f"accuracy " + ", ".join(f"{k} {v}" for k, v in last.items() if k != "step")
                + "; P(call) " + ", ".join(f"{k} {v:.2f}" for k, v in calls.items() if not k.endswith("_mass")) + ")")

    def _sum_train(self, run: Path) -> str:
        from vttrain.report.report import read_metrics
        rows = [r for r in read_metrics(run) if "reward" in r]
        tail = rows[-max(1, len(rows) // 5):]  # the last fifth of the steps

        def mean(key):
            v = [r[key] for r in tail if isinstance(r.get(key), (int, float))]
            return f"{sum(v) / len(v):.2f}" if v else "n/a"
        sources = sorted({k.split("/", 1)[1] for r in tail for k in r if k.startswith("resize_ratio/")})
        return (f"{len(rows)} steps; last fifth: reward {mean('reward')}, resize ratio (sampled, T = 1) "
                + ", ".join(f"{s} {mean('resize_ratio/' + s)}" for s in sources)
                + f"; needs_high {mean('resize_ratio_needs_high')}, low_ok {mean('resize_ratio_low_ok')}; "
                  f"model in {run / 'final'}")

    def _sum_eval(self, run: str) -> str:
        from vtdata.db import connect
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
        from vttrain.grpo.train import latest_checkpoint
        return ["--resume"] if run.is_dir() and latest_checkpoint(run) else []

    # ---------------------------------------------------------------------------------------- running
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
        t_all = time.time()
        done = run_stages(self.stages(), self.marks, self._execute)
        info(f"demo: {len(done)} stages in {time.time() - t_all:.1f} s "
             f"({sum(1 for d in done if d['reused'])} reused)")
        return done

    def _execute(self, stage: DemoStage, tag: str, stale: bool) -> str:
        """Run one stage's `vt` command (its stdout to OUT/.demo/<stage>.log); returns its summary."""
        if stage.run_dir is not None:
            self._forget_evals()
            if stale and stage.run_dir.exists():
                shutil.rmtree(stage.run_dir)  # new data, model or settings: train afresh instead of resuming
        args = stage.args + stage.extra()
        log = self.marks / f"{stage.name}.log"
        info(f"{tag} running vt {shlex.join(args)}  (its output: {log})")
        with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
            vt(args)  # results (tables, trainer logs) to the stage's log; progress bars stay on stderr
        return stage.summary()

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
        lines += ["", f"Compare the eval runs again: vt compare {names} --db {db}"]
        return "\n".join(lines)


EXAMPLE_QUERIES = [
    "SELECT * FROM label_counts",
    "SELECT source, round(low_accuracy, 3) AS low, round(high_accuracy, 3) AS high FROM low_vs_high_accuracy",
    "SELECT run, mode, round(avg(score), 3) AS accuracy, "
    "round(sum(visual_tokens) / sum(full_visual_tokens), 3) AS token_share, "
    "round(avg(resized::INT), 3) AS resize_ratio FROM eval_predictions GROUP BY ALL ORDER BY run",
]


def run(cfg: DemoConfig) -> None:
    import os
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the demo needs is made locally
    demo = Demo(cfg)
    demo.run()
    vt(["compare", *[name for name, _, _ in demo.eval_runs()], "--db", str(demo.db)])
    console.print(demo.epilogue(), highlight=False, soft_wrap=True)


demo_command = command(DemoConfig, run)
