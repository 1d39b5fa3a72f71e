"""`vt eval`: accuracy against visual tokens, the VisionThink trade-off (paper Table 2, Fig. 5).

Three modes on the same samples, run by the rollout engine (`vttrain/rollout/engine.py`, one job per sample):
  full   answer on the high-res view (scoring prompt: `score_system` + image + question);
  low    answer on the low-res view (same prompt; exactly 1/4 of the visual tokens of `full`);
  think  the two-turn resize protocol of training (`vtdata.protocol`): the low view first, the high
         view only when the model calls `resize_image`; visual tokens = low + high for resized samples.

Every prediction is written to DuckDB as soon as it is generated, before it is judged
(`eval_predictions`, one row per run and sample; `eval_runs`, one row per run), so a rerun of the same
`--name` skips what is done and judges again only predictions without a good verdict. At the end the
run is exported as an lmms-eval `--log_samples` file plus `<run>_results.json` (`vttrain/report/summary.py`).
`vt compare RUN RUN ...` prints a Table-2-like comparison of finished runs.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from vtdata import prompts, protocol, tables
from vtdata.dataset import read_split
from vtdata.config import command
from vtdata.console import VtError, info, progress_bar, redact, results_console
from vtdata.db import default_db, writer
from vtdata.outdir import check_name, new_out_dir
from vtdata.resolution import visual_tokens
from vtdata.judge import JudgeSpec, make_judge
from vttrain.rollout import engine
from vttrain.models.build import check_source, model_fingerprint
from vttrain.rollout.policy import make_policy
from vttrain.report.summary import export_jsonl, summarize, summary_table

MODES = ("full", "low", "think")
VIEWS = ("dataset", "native")
STATUS_OK = "ok"
ENGINE_MODE = {"full": "high", "low": "low", "think": "think"}


@dataclass
class EvalConfig:
    """Evaluate a model in full / low / think mode: accuracy, resize ratio and visual tokens per source.

    Examples: `vt eval --model demo-out/train/final --data demo-out/data --mode think`; then
    `vt compare demo-full demo-low demo-think --db demo-out/vt.duckdb`."""

    data: str = ""
    """Built dataset directory (`vt build-data` or `vt curate` output)."""
    mode: str = "think"
    """`full` (high view), `low` (low view) or `think` (two-turn resize protocol)."""
    model: Optional[str] = None
    """Local checkpoint directory or hub id; shorthand for `--policy local:PATH`."""
    policy: Optional[str] = None
    """Policy spec: `local:PATH` (transformers generate) or `openai:MODEL` (with --policy-base-url)."""
    policy_base_url: Optional[str] = None
    """Base URL(s) of OpenAI-compatible servers for `openai:` policies, comma-separated (load-balanced),
    e.g. a `vllm serve` endpoint."""
    policy_timeout: float = field(default=600.0, metadata={"min": 0.001, "max": 86400.0})
    """Seconds one policy request may take in all (connection, retries, every byte of the reply)."""
    policy_api_key_env: Optional[str] = None
    """Environment variable holding the policy server's API key (never written anywhere; None:
    $OPENAI_API_KEY for OpenAI's API, no key sent to a --policy-base-url unless its variable is named)."""
    judging: JudgeSpec = field(default_factory=JudgeSpec)
    """The judge: --judge, --judge-base-url, --judge-api-key-env, --judge-scope (vtdata.judge.JudgeSpec)."""
    system_prompt: Optional[str] = None
    """System prompt (shipped name or file): default `agent_system` in think mode, `score_system` otherwise."""
    user_prompt: str = "agent_user"
    """Think mode: the user template with {question} (as in training)."""
    tool_ok_prompt: str = "tool_ok"
    """Think mode: the instruction after the high-res image in the tool turn."""
    tool_error_prompt: str = "tool_error"
    """Think mode: the instruction after a tool error."""
    db: Optional[str] = None
    """DuckDB file; default `vt.duckdb` beside the data directory."""
    split: str = "val"
    """Which split of the data to evaluate (`val`, `train`, or `all`)."""
    limit: Optional[int] = None
    """Evaluate only the first N samples (in data order)."""
    name: Optional[str] = None
    """Run name (default `<model>-<mode>-<split>`); rerunning a name resumes it."""
    out: Optional[str] = field(default=None, metadata={"flags": ["-o"]})
    """Directory for the predictions JSONL (default `evals/` beside the database)."""
    max_new_tokens: int = 8192
    """Generation budget per assistant turn (the release's 8192: a shorter one cuts a real model's <think>)."""
    direct_newline: bool = True
    """full/low: a newline between the image and the question (the release's general-QA prompt); false = vt
    before issue 21."""
    views: str = "dataset"
    """`dataset`: the row's low/high views (what training saw) | `native`: high = the original image, low =
    original // 2 per side (the release's evaluation, for Table-2 numbers)."""
    temperature: float = 0.0
    """Sampling temperature; 0 = greedy (the paper's evaluation)."""
    batch_size: int = 8
    """Samples generated per policy call."""
    max_turns: int = 2
    """Assistant turns at most in `think` mode (the paper: 2)."""
    tools: str = "resize"
    """Think mode: the tools the policy may call (vtdata/protocol/tools.py): resize | zoom | resize,zoom."""
    seed: int = 0
    """Seed for sampling when temperature > 0."""

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name)  # it names the predictions file under evals/
        if self.mode not in MODES:
            raise VtError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.views not in VIEWS:
            raise VtError(f"--views must be one of {', '.join(VIEWS)}, not {self.views!r}")
        if not self.data:
            raise VtError("--data DIR is required (a directory written by `vt build-data`)")
        if not Path(self.data).is_dir():
            raise VtError(f"--data {self.data}: no such directory")
        if bool(self.model) == bool(self.policy):
            raise VtError("give exactly one of --model PATH or --policy SPEC")
        if self.split not in ("train", "val", "all"):
            raise VtError(f"--split must be train, val or all, not {self.split!r}")
        kind, _, target = self.policy_spec.partition(":")
        if kind == "local":
            check_source(target)  # before any data is read
        if self.limit is not None and self.limit < 1:
            raise VtError("--limit must be at least 1")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_turns < 1:
            raise VtError("--batch-size, --max-new-tokens and --max-turns must be at least 1")
        if self.temperature < 0:
            raise VtError("--temperature must be >= 0")
        self.tool_selection  # a VtError naming the tools when they are not resize / zoom
        for p in [self.system()] + ([self.user_prompt, self.tool_ok_prompt, self.tool_error_prompt]
                                    if self.mode == "think" else []):
            prompts.load(p)  # a VtError naming the prompt when it is neither shipped nor a file

    @property
    def policy_spec(self) -> str:
        return self.policy or f"local:{self.model}"

    def run_name(self) -> str:
        if self.name:
            return self.name
        spec = self.policy_spec.split(":", 1)[-1].rstrip("/")
        return f"{Path(spec).name or spec}-{self.mode}-{self.split}"

    def db_path(self) -> Path:
        return Path(self.db) if self.db else default_db(self.data)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else self.db_path().parent / "evals"

    def identity(self) -> dict:
        """What must match for a rerun of the same name to resume (not --limit, --batch-size, --out)."""
        kind, _, target = self.policy_spec.partition(":")
        policy = f"local:{Path(target).resolve()}" if kind == "local" and Path(target).exists() else self.policy_spec
        model = model_fingerprint(Path(target)) if kind == "local" and Path(target).is_dir() else None
        return {"mode": self.mode, "policy": policy, **({"model": model} if model else {}), "data": str(Path(self.data).resolve()),
                "split": self.split, "judge": self.judging.judge, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "max_turns": self.max_turns, "system_prompt": self.system(),
                **({"judge_scope": self.judging.judge_scope} if self.judging.judge_scope != "open" else {}),
                **({"views": self.views} if self.views != "dataset" else {}),
                **({"tools": ",".join(self.tool_selection)} if self.tool_selection != ("resize",) else {}),
                **({"user_prompt": self.user_prompt, "tool_ok_prompt": self.tool_ok_prompt,
                    "tool_error_prompt": self.tool_error_prompt} if self.mode == "think" else {})}

    @property
    def tool_selection(self) -> tuple:
        from vtdata.protocol.tools import selection
        return selection(self.tools)

    def system(self) -> str:
        return self.system_prompt or ("agent_system" if self.mode == "think" else "score_system")


# --------------------------------------------------------------------------------------------- tables


TABLES = ("eval_runs", "eval_predictions")  # their DDL: vtdata/tables.py
PRED_COLUMNS = ["run", "sample_id", "doc_id", "source", "task", "mode", "question", "answers",
                "answer_type", "choices", "turns", "response", "prediction", "tool_call", "resized",
                "score", "status", "reason", "judge", "visual_tokens", "low_visual_tokens",
                "full_visual_tokens", "generated_tokens", "latency_s", "wall_s", "created", "zoomed"]


def drop_runs(con, runs: list[str]) -> None:
    """Forget eval runs (their predictions and run rows), e.g. after the model they evaluated changed."""
    tables.ensure(con, *TABLES)
    for table in ("eval_predictions", "eval_runs"):
        con.execute(f"DELETE FROM {table} WHERE run IN (SELECT unnest(?::VARCHAR[]))", [list(runs)])


def _check_run(con, cfg: EvalConfig, run: str) -> bool:
    """True when the run exists with the same identity (resume); VtError when it differs."""
    row = con.execute("SELECT config FROM eval_runs WHERE run = ?", [run]).fetchone()
    if row is None:
        return False
    old = json.loads(row[0]).get("identity", {})
    now = json.loads(redact(json.dumps(cfg.identity())))  # as stored (secrets redacted)
    if "model" not in old:  # a run recorded before model fingerprints: bound to its path only, as it was
        now.pop("model", None)
    diff = {k: (old.get(k), v) for k, v in now.items() if old.get(k) != v}
    if "model" in diff:
        raise VtError(f"run {run!r} was made by a different model at {now['policy'].split(':', 1)[-1]} "
                      f"(weights fingerprint {diff['model'][0]}, now {diff['model'][1]}); pass another --name, "
                      f"or drop the old run to evaluate the new model under this name")
    if diff:
        k, (a, b) = next(iter(diff.items()))
        raise VtError(f"run {run!r} already exists with {k}={a!r} (now {b!r}); "
                      f"pass another --name or the same options to resume it")
    return True


def _start_run(con, cfg: EvalConfig, run: str) -> None:
    ident = cfg.identity()
    config = {"identity": ident, "options": asdict(cfg)}
    con.execute("INSERT INTO eval_runs (run, mode, policy, data, split, judge, config, started, wall_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, now(), 0)",
                [run, cfg.mode, redact(ident["policy"]), ident["data"], cfg.split, cfg.judging.judge,
                 redact(json.dumps(config))])


def _rows(cfg: EvalConfig) -> list[dict]:
    """The split's rows in data order, each with its `doc_id` (its position: lmms-eval's doc id)."""
    rows = read_split(cfg.data, cfg.split, cfg.limit)
    return [{**(native_views(r) if cfg.views == "native" else r), "doc_id": i} for i, r in enumerate(rows)]


def native_views(row: dict) -> dict:
    """The row with the release's evaluation views: high = the original size, low = original // 2 per side
    (each scaled up to at least 28 px a side, as the release does)."""
    def at_least_28(w: int, h: int) -> tuple[int, int]:
        if min(w, h) >= 28:
            return w, h
        s = max(28 / w, 28 / h)
        return int(w * s), int(h * s)
    w, h = int(row["width"]), int(row["height"])
    (lw, lh), (hw, hh) = at_least_28(max(1, w // 2), max(1, h // 2)), at_least_28(w, h)
    return {**row, "low_width": lw, "low_height": lh, "high_width": hw, "high_height": hh}


def _view_tokens(row: dict, view: str) -> int:
    """Visual tokens of the row's low or high view (`full` mode spends the high's): the count the policy
    backends use."""
    return visual_tokens(row[f"{view}_width"], row[f"{view}_height"])


def _as_list(x) -> Optional[list]:
    if x is None:
        return None
    return [str(a) for a in x]


async def _evaluate(cfg: EvalConfig, run: str, con, rows: list[dict], stored: dict, policy, judge) -> int:
    """Generate and judge what the run lacks (the rows without a prediction, and the stored predictions
    without a good verdict: `stored` = sample_id -> status), a batch at a time; returns how many
    predictions were generated."""
    unjudged = [r for r in rows if r["id"] in stored and stored[r["id"]] != STATUS_OK]
    todo = [r for r in rows if r["id"] not in stored]
    info(f"eval {run}: {len(rows)} samples, {len(rows) - len(todo)} done, {len(todo)} to run"
         + (f", {len(unjudged)} to judge again" if unjudged else "")
         + f" (mode {cfg.mode}, policy {cfg.policy_spec}, judge {judge.identity})")
    store = engine.Store(con, "eval_predictions", ("run", "sample_id"), tuple(PRED_COLUMNS), "response",
                         {"score": "score", "status": "status", "reason": "reason", "prediction": "prediction",
                          "judge": "judge"})
    settings = engine.Settings(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                               system_prompt=cfg.system(), agent_system_prompt=cfg.system(),
                               agent_user_prompt=cfg.user_prompt, tool_ok_prompt=cfg.tool_ok_prompt,
                               tool_error_prompt=cfg.tool_error_prompt, max_turns=cfg.max_turns,
                               tools=cfg.tool_selection, direct_newline=cfg.direct_newline)
    mode = ENGINE_MODE[cfg.mode]

    def record(r, now) -> dict:
        """One `eval_predictions` row; its verdict fields stay NULL until judged."""
        row = r.job.sample
        return {"run": run, "sample_id": row["id"], "doc_id": row["doc_id"], "source": row["source"],
                "task": row["task"], "mode": cfg.mode, "question": row["question"],
                "answers": _as_list(row["answers"]), "answer_type": row.get("answer_type"),
                "choices": _as_list(row.get("choices")), "turns": [t.text for t in r.turns],
                "response": r.response, "tool_call": r.tool_call, "resized": "resize" in r.used,
                "zoomed": "zoom" in r.used,
                "visual_tokens": r.visual_tokens, "low_visual_tokens": _view_tokens(row, "low"),
                "full_visual_tokens": _view_tokens(row, "high"), "generated_tokens": r.generated_tokens,
                "latency_s": r.latency_s, "wall_s": r.wall_s, "created": now}

    def chunks():  # the stored predictions to judge again first, then the rows to generate
        for part in (unjudged, todo):
            for chunk in engine.chunks(part, cfg.batch_size):
                yield [engine.Job((run, r["id"]), r, mode) for r in chunk]

    n = {"new": 0, "correct": 0, "judged": 0, "resized": 0, "failed": 0}
    with progress_bar(f"eval {cfg.mode}", total=len(unjudged) + len(todo)) as bar:
        async for res in engine.run(chunks(), policy=policy, judge=judge, store=store, settings=settings,
                                    record=record):
            n["new"] += len(res.generated)
            n["failed"] += len(res.failed)
            n["resized"] += sum("resize" in r.used for r in res.generated)
            n["judged"] += len(res.judged)
            n["correct"] += sum(bool(v.score) for _, v in res.judged)
            bar.advance(len(res.jobs), status=f"correct {n['correct']}/{n['judged']} resized {n['resized']}")
    if n["failed"]:
        info(f"{n['failed']} samples got no generation from the policy (backend errors); they "
             f"are not recorded: rerun the same command to retry them")
    return n["new"]


def run(cfg: EvalConfig, policy=None, judge=None) -> dict:
    """`vt eval`: evaluate, resuming a run of the same name; prints the summary and returns
    {'run', 'done', 'new', 'summary', 'jsonl', 'db'}. `policy` / `judge` replace the ones `cfg` names
    (tests pass scripted ones; the caller closes them)."""
    model = cfg.policy_spec.split(":", 1)[1] if cfg.policy_spec.startswith("local:") else None
    with new_out_dir(cfg.out_dir(), inputs=(cfg.data, cfg.db_path(), model if model and Path(model).exists() else None)):  # made before any work (the JSONL is written at the end); gone if it fails
        return _run(cfg, policy, judge)


def _run(cfg: EvalConfig, policy, judge) -> dict:
    name = cfg.run_name()
    rows = _rows(cfg)
    t_start = time.time()
    with writer(cfg.db_path(), "vt eval") as con:
        tables.ensure(con, *TABLES)
        exists = _check_run(con, cfg, name)
        own_judge, own_policy = judge is None, policy is None
        if own_judge:
            judge = make_judge(cfg.judging.judge, db=con, **cfg.judging.options())
        try:
            stored = dict(con.execute("SELECT sample_id, status FROM eval_predictions WHERE run = ?", [name]).fetchall())
            if own_policy and any(r["id"] not in stored for r in rows):
                policy = _make_policy(cfg)  # before the run is recorded: a model that does not load leaves no trace
            if not exists:
                _start_run(con, cfg, name)
            new = asyncio.run(_evaluate(cfg, name, con, rows, stored, policy, judge))
        finally:
            js = judge.stats() if hasattr(judge, "stats") else {}  # a caller's judge may have none
            if own_judge:
                judge.close()
            if own_policy and policy is not None:
                policy.close()
        wall = time.time() - t_start
        done = con.execute("SELECT count(*) FROM eval_predictions WHERE run = ?", [name]).fetchone()[0]
        jsonl = export_jsonl(con, name, cfg.out_dir() / f"{name}.jsonl")
        con.execute("UPDATE eval_runs SET finished = now(), samples = ?, wall_s = coalesce(wall_s, 0) + ?, "
                    "predictions_path = ? WHERE run = ?", [done, wall, str(jsonl), name])
        summary = summarize(con, name)
    results_console().print(summary_table(name, summary))
    info(f"predictions: {jsonl}  (db {cfg.db_path()}, tables eval_runs, eval_predictions)")
    if js.get("replies"):
        info(f"judge: {js['requests']} requests, judge_retry_share {js['judge_retry_share']:.4f} "
             f"({js['unread_replies']}/{js['replies']} replies without a readable verdict)")
    return {"run": name, "done": done, "new": new, "summary": summary, "jsonl": jsonl, "db": cfg.db_path()}


def _make_policy(cfg: EvalConfig):
    kw: dict[str, Any] = {"seed": cfg.seed, "batch_size": cfg.batch_size, "api_key_env": cfg.policy_api_key_env,
                          "timeout_s": cfg.policy_timeout}
    if cfg.mode == "think" and cfg.policy_spec.startswith("local:"):
        kw["chat_template"] = protocol.chat_template()  # the tokens training saw (turn2_bytes: release)
    return make_policy(cfg.policy_spec, base_url=cfg.policy_base_url, **kw)


eval_command = command(EvalConfig, run)
