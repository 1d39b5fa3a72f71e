"""`vt eval`: accuracy against visual tokens, the VisionThink trade-off (paper Table 2, Fig. 5).

Three modes on the same samples:
  full   answer on the high-res view (scoring prompt: `score_system` + image + question);
  low    answer on the low-res view (same prompt; exactly 1/4 of the visual tokens of `full`);
  think  the two-turn resize protocol of training (`vtdata.protocol`): the low view first, the high
         view only when the model calls `resize_image`; visual tokens = low + high for resized samples.

Every prediction is written to DuckDB as soon as it is generated, before it is judged
(`eval_predictions`, one row per run and sample; `eval_runs`, one row per run), so a rerun of the same
`--name` skips what is done and judges again only predictions without a good verdict. At the end the
run is exported as an lmms-eval `--log_samples` file (`doc_id`, `doc`, `target`, `arguments`, `resps`,
`filtered_resps`, hashes) plus vt's own fields, which `vt judge` reads back, and `<run>_results.json`
beside it (the aggregate, in lmms-eval's results layout).
`vt eval --compare RUN RUN ...` prints a Table-2-like comparison of finished runs.
"""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from vtdata import __version__
from vtdata.console import VtError, info, progress_bar

MODES = ("full", "low", "think")
VIEWS = ("dataset", "native")
STATUS_OK = "ok"


@dataclass
class EvalConfig:
    """Options of `vt eval` (each field is a CLI flag of the same name)."""

    data: str = ""
    """Built dataset directory (`vt build-data` or `vt curate` output)."""
    mode: str = "think"
    """`full` (high view), `low` (low view) or `think` (two-turn resize protocol)."""
    model: Optional[str] = None
    """Local checkpoint directory or hub id; shorthand for `--policy local:PATH`."""
    policy: Optional[str] = None
    """Policy spec: `local:PATH` (transformers generate) or `openai:MODEL` (with --policy-base-url)."""
    policy_base_url: Optional[str] = None
    """Base URL of an OpenAI-compatible server for `openai:` policies (e.g. a `vllm serve` endpoint)."""
    policy_api_key_env: Optional[str] = None
    """Environment variable holding the policy server's API key (never written anywhere; None:
    $OPENAI_API_KEY for OpenAI's API, no key sent to a --policy-base-url unless its variable is named)."""
    judge: str = "auto"
    """Judge spec (`auto`, `rule:NAME`, `openai:MODEL`), as for `vt judge`."""
    judge_base_url: Optional[str] = None
    """Base URL(s) of the OpenAI-compatible judge server (comma-separated) for `openai:` judges."""
    judge_api_key_env: Optional[str] = None
    """Environment variable holding the judge's API key (None: as for the policy)."""
    judge_scope: str = "open"
    """open: an LLM judge judges `open` items, rules the rest | all: the LLM judges every item (the paper)."""
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
    out: Optional[str] = None
    """Directory for the predictions JSONL (default `evals/` beside the database)."""
    max_new_tokens: int = 8192
    """Generation budget per assistant turn (the release's 8192: a shorter one cuts a real model's <think>)."""
    views: str = "dataset"
    """`dataset`: the row's low/high views (what training saw) | `native`: high = the original image, low =
    original // 2 per side (the release's evaluation, for Table-2 numbers)."""
    temperature: float = 0.0
    """Sampling temperature; 0 = greedy (the paper's evaluation)."""
    batch_size: int = 8
    """Samples generated per policy call."""
    max_turns: int = 2
    """Assistant turns at most in `think` mode (the paper: 2)."""
    seed: int = 0
    """Seed for sampling when temperature > 0."""

    def validate(self) -> None:
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
            from vttrain.models import check_source
            check_source(target)  # before any data is read
        if self.limit is not None and self.limit < 1:
            raise VtError("--limit must be at least 1")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_turns < 1:
            raise VtError("--batch-size, --max-new-tokens and --max-turns must be at least 1")
        if self.temperature < 0:
            raise VtError("--temperature must be >= 0")
        from vtdata.judge import judge_options
        judge_options(self.judge, self.judge_base_url, self.judge_api_key_env, self.judge_scope)  # openai-only flags
        from vtdata import prompts
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
        from vtdata.db import default_db
        return Path(self.db) if self.db else default_db(self.data)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else self.db_path().parent / "evals"

    def identity(self) -> dict:
        """What must match for a rerun of the same name to resume (not --limit, --batch-size, --out)."""
        kind, _, target = self.policy_spec.partition(":")
        policy = f"local:{Path(target).resolve()}" if kind == "local" and Path(target).exists() else self.policy_spec
        return {"mode": self.mode, "policy": policy, "data": str(Path(self.data).resolve()),
                "split": self.split, "judge": self.judge, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "max_turns": self.max_turns, "system_prompt": self.system(),
                **({"judge_scope": self.judge_scope} if self.judge_scope != "open" else {}),
                **({"views": self.views} if self.views != "dataset" else {}),
                **({"user_prompt": self.user_prompt, "tool_ok_prompt": self.tool_ok_prompt,
                    "tool_error_prompt": self.tool_error_prompt} if self.mode == "think" else {})}

    def system(self) -> str:
        return self.system_prompt or ("agent_system" if self.mode == "think" else "score_system")


# --------------------------------------------------------------------------------------------- tables

SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_runs (
    run VARCHAR PRIMARY KEY, mode VARCHAR, policy VARCHAR, data VARCHAR, split VARCHAR,
    judge VARCHAR, config JSON, started TIMESTAMP, finished TIMESTAMP, samples INTEGER,
    wall_s DOUBLE, predictions_path VARCHAR);
CREATE TABLE IF NOT EXISTS eval_predictions (
    run VARCHAR, sample_id VARCHAR, doc_id INTEGER, source VARCHAR, task VARCHAR, mode VARCHAR,
    question VARCHAR, answers VARCHAR[], answer_type VARCHAR, choices VARCHAR[],
    turns VARCHAR[], response VARCHAR, prediction VARCHAR, tool_call VARCHAR, resized BOOLEAN,
    score DOUBLE, status VARCHAR, reason VARCHAR, judge VARCHAR,
    visual_tokens INTEGER, low_visual_tokens INTEGER, full_visual_tokens INTEGER,
    generated_tokens INTEGER, latency_s DOUBLE, wall_s DOUBLE, created TIMESTAMP,
    PRIMARY KEY (run, sample_id));
"""

PRED_COLUMNS = ["run", "sample_id", "doc_id", "source", "task", "mode", "question", "answers",
                "answer_type", "choices", "turns", "response", "prediction", "tool_call", "resized",
                "score", "status", "reason", "judge", "visual_tokens", "low_visual_tokens",
                "full_visual_tokens", "generated_tokens", "latency_s", "wall_s", "created"]


def ensure_tables(con) -> None:
    for stmt in SCHEMA.strip().split(";"):
        if stmt.strip():
            con.execute(stmt)


def drop_runs(con, runs: list[str]) -> None:
    """Forget eval runs (their predictions and run rows), e.g. after the model they evaluated changed."""
    ensure_tables(con)
    for table in ("eval_predictions", "eval_runs"):
        con.execute(f"DELETE FROM {table} WHERE run IN (SELECT unnest(?::VARCHAR[]))", [list(runs)])


def _check_run(con, cfg: EvalConfig, run: str) -> bool:
    """True when the run exists with the same identity (resume); VtError when it differs."""
    row = con.execute("SELECT config FROM eval_runs WHERE run = ?", [run]).fetchone()
    if row is None:
        return False
    old = json.loads(row[0]).get("identity", {})
    diff = {k: (old.get(k), v) for k, v in cfg.identity().items() if old.get(k) != v}
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
                [run, cfg.mode, ident["policy"], ident["data"], cfg.split, cfg.judge, json.dumps(config)])


def _insert(con, rows: list[dict]) -> None:
    """Append a batch of predictions through Arrow (one statement per batch, not per row)."""
    from vtdata.db import insert_rows
    insert_rows(con, "eval_predictions", rows, PRED_COLUMNS, replace=True)


# ---------------------------------------------------------------------------------------- generation

@dataclass
class Turn:
    text: str
    generated_tokens: int
    visual_tokens: int
    latency_s: float
    error: Optional[str] = None  # the backend failed (no text): the sample is retried on the next run


@dataclass
class Outcome:
    """What the policy did on one sample, before judging."""
    turns: list[Turn] = field(default_factory=list)
    tool_call: str = "none"          # none | ok | error
    visual_tokens: int = 0

    @property
    def response(self) -> str:
        return self.turns[-1].text if self.turns else ""

    @property
    def error(self) -> Optional[str]:
        return next((t.error for t in self.turns if t.error), None)


class Evaluator:
    """Runs one mode over rows with a policy; knows nothing about storage."""

    def __init__(self, policy, cfg: EvalConfig):
        self.policy, self.cfg = policy, cfg

    async def _generate(self, conversations: list[list[dict]]) -> list[Turn]:
        from vttrain.policy import GenRequest
        if not conversations:
            return []
        gens = await self.policy.agenerate([GenRequest(messages=m, n=1, temperature=self.cfg.temperature,
                                                       max_new_tokens=self.cfg.max_new_tokens)
                                            for m in conversations])
        return [Turn(g.text, int(g.generated_tokens), int(g.visual_tokens), float(g.latency_s), g.error)
                for g in gens]

    async def run_batch(self, rows: list[dict]) -> list[Outcome]:
        from vtdata import prompts, protocol
        from vtdata.resolution import view_of
        mode = self.cfg.mode
        if mode in ("full", "low"):
            system = prompts.load(self.cfg.system())
            view = "high" if mode == "full" else "low"
            convs = [protocol.direct_messages(system, r["question"], view_of(r, view)) for r in rows]
            turns = await self._generate(convs)
            return [Outcome([t], "none", t.visual_tokens) for t in turns]
        # think: the training protocol, turn by turn, batched across samples
        c = self.cfg
        convs = [protocol.agent_messages(r["question"], view_of(r, "low"), c.system(), c.user_prompt) for r in rows]
        names = {"ok_prompt": c.tool_ok_prompt, "error_prompt": c.tool_error_prompt}
        outcomes = [Outcome() for _ in rows]
        active = list(range(len(rows)))
        for turn_no in range(self.cfg.max_turns):
            turns = await self._generate([convs[i] for i in active])
            nxt = []
            for i, t in zip(active, turns):
                o = outcomes[i]
                o.turns.append(t)
                o.visual_tokens = t.visual_tokens  # the last turn's context holds every image seen
                call = None if t.error else protocol.parse_tool_call(t.text)
                if call is None or turn_no + 1 >= self.cfg.max_turns:
                    continue  # a direct answer, or no turn left to answer in
                said = {"role": "assistant", "content": [{"type": "text", "text": t.text}]}
                if isinstance(call, str):  # an invalid call gets the error turn, no image
                    o.tool_call = "error" if o.tool_call == "none" else o.tool_call
                    convs[i] = convs[i] + [said, protocol.tool_turn(error=call, **names)]
                else:
                    o.tool_call = "ok"
                    convs[i] = convs[i] + [said, protocol.tool_turn(image=view_of(rows[i], "high"), **names)]
                nxt.append(i)
            active = nxt
            if not active:
                break
        return outcomes


# ------------------------------------------------------------------------------------------- the run

def _rows(cfg: EvalConfig) -> list[dict]:
    from vtdata.dataset import read_split
    rows = read_split(cfg.data, cfg.split, cfg.limit)
    return [native_views(r) for r in rows] if cfg.views == "native" else rows


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
    from vttrain.policy import qwen_visual_tokens
    return qwen_visual_tokens(row[f"{view}_width"], row[f"{view}_height"])


def _as_list(x) -> Optional[list]:
    if x is None:
        return None
    return [str(a) for a in x]


def run_eval(cfg: EvalConfig, policy=None, judge=None) -> dict:
    """Evaluate, resuming a run of the same name; returns {'run', 'done', 'new', 'summary', 'jsonl', 'db'}.

    `policy` / `judge` replace the ones `cfg` names (tests pass scripted ones; the caller closes them)."""
    from vtdata.db import writer
    from vtdata.judge import make_judge
    from vtdata.judge import judge_options

    from vttrain.models import make_out_dir

    cfg.validate()
    run = cfg.run_name()
    make_out_dir(cfg.out_dir())  # before any work: the JSONL is written at the end
    rows = _rows(cfg)
    t_start = time.time()
    with writer(cfg.db_path(), "vt eval") as con:
        ensure_tables(con)
        exists = _check_run(con, cfg, run)
        done = {r[0] for r in con.execute("SELECT sample_id FROM eval_predictions WHERE run = ?", [run]).fetchall()}
        todo = [(i, r) for i, r in enumerate(rows) if r["id"] not in done]
        own_judge, own_policy = judge is None, policy is None and bool(todo)
        if own_judge:
            judge = make_judge(cfg.judge, db=con, **judge_options(cfg.judge, cfg.judge_base_url, cfg.judge_api_key_env,
                                                                   cfg.judge_scope))
        try:
            if own_policy:  # loaded before the run is recorded: a model that does not load leaves no trace
                policy = _make_policy(cfg)
            if not exists:
                _start_run(con, cfg, run)
            _rejudge(con, run, judge)
            info(f"eval {run}: {len(rows)} samples, {len(rows) - len(todo)} done, {len(todo)} to run "
                 f"(mode {cfg.mode}, policy {cfg.policy_spec}, judge {judge.identity})")
            if todo:
                _run_samples(con, cfg, run, todo, judge, policy)
        finally:
            if own_judge:
                judge.close()
            if own_policy and policy is not None:
                policy.close()
        wall = time.time() - t_start
        n = con.execute("SELECT count(*) FROM eval_predictions WHERE run = ?", [run]).fetchone()[0]
        jsonl = export_jsonl(con, run, cfg.out_dir() / f"{run}.jsonl")
        con.execute("UPDATE eval_runs SET finished = now(), samples = ?, wall_s = coalesce(wall_s, 0) + ?, "
                    "predictions_path = ? WHERE run = ?", [n, wall, str(jsonl), run])
        summary = summarize(con, run)
    return {"run": run, "done": n, "new": len(todo), "summary": summary, "jsonl": jsonl,
            "db": cfg.db_path()}


def _run_samples(con, cfg: EvalConfig, run: str, todo: list[tuple[int, dict]], judge, policy) -> None:
    """Generate and judge the samples not yet done, a batch at a time. A batch's generations are written
    before they are judged (a crash while judging loses no generation: the rerun judges them)."""
    ev = Evaluator(policy, cfg)
    counts = {"scored": 0, "correct": 0, "resized": 0, "failed": 0}
    with progress_bar(f"eval {cfg.mode}", total=len(todo)) as bar:
        for b in range(0, len(todo), cfg.batch_size):
            batch = todo[b:b + cfg.batch_size]
            recs = _generate_batch(ev, run, batch, counts)
            _insert(con, recs)
            _judge_records(con, run, judge, recs)
            counts["correct"] += sum(1 for x in recs if x["score"])
            counts["resized"] += sum(1 for x in recs if x["resized"])
            bar.advance(len(batch), status=f"correct {counts['correct']}/{counts['scored']} "
                                           f"resized {counts['resized']}")
    if counts["failed"]:
        info(f"{counts['failed']} samples got no generation from the policy (backend errors); they "
             f"are not recorded: rerun the same command to retry them")


def _generate_batch(ev: Evaluator, run: str, batch: list[tuple[int, dict]], counts: dict) -> list[dict]:
    """Generate one batch and turn it into prediction rows, not judged yet (failed generations left out)."""
    t0 = time.perf_counter()
    outcomes = asyncio.run(ev.run_batch([r for _, r in batch]))
    share = (time.perf_counter() - t0) / len(batch)  # the batch's wall time, split evenly over its samples
    counts["failed"] += sum(1 for o in outcomes if o.error)
    recs = [_record(run, ev.cfg.mode, i, r, o, share) for (i, r), o in zip(batch, outcomes) if not o.error]
    counts["scored"] += len(recs)
    return recs


def _judge_records(con, run: str, judge, recs: list[dict]) -> None:
    """Judge prediction rows (each with its sample's question, answers, answer_type, choices and response),
    fill in their verdict fields and write the verdicts to `eval_predictions` in one statement."""
    if not recs:
        return
    import pyarrow as pa
    from vtdata.judge import JudgeItem
    from vtdata.db import arrow_table
    items = [JudgeItem(question=x["question"], answers=list(x["answers"] or []), response=x["response"] or "",
                       answer_type=x.get("answer_type") or "open", choices=x.get("choices")) for x in recs]
    for x, v in zip(recs, judge.judge(items)):
        x.update(score=v.score, status=v.status, reason=v.reason, judge=v.judge, prediction=v.prediction)
    cols = ["sample_id", "score", "status", "reason", "judge", "prediction"]
    tbl = pa.table({c: pa.array([x[c] for x in recs], pa.float64() if c == "score" else pa.string()) for c in cols})
    with arrow_table(con, "eval_verdicts", tbl):
        con.execute("UPDATE eval_predictions p SET score = v.score, status = v.status, reason = v.reason, "
                    "judge = v.judge, prediction = v.prediction FROM eval_verdicts v "
                    "WHERE p.run = ? AND p.sample_id = v.sample_id", [run])


def _make_policy(cfg: EvalConfig):
    from vtdata import protocol
    from vttrain.policy import make_policy
    kw: dict[str, Any] = {"seed": cfg.seed, "batch_size": cfg.batch_size, "api_key_env": cfg.policy_api_key_env}
    if cfg.mode == "think" and cfg.policy_spec.startswith("local:"):
        kw["chat_template"] = protocol.CHAT_TEMPLATE  # the tokens training saw for tool turns
    return make_policy(cfg.policy_spec, base_url=cfg.policy_base_url, **kw)


def _record(run: str, mode: str, doc_id: int, row: dict, o: Outcome, wall_s: float) -> dict:
    """One `eval_predictions` row; its verdict fields stay NULL until `_judge_records` fills them."""
    return {"run": run, "sample_id": row["id"], "doc_id": doc_id, "source": row["source"],
            "task": row["task"], "mode": mode, "question": row["question"],
            "answers": _as_list(row["answers"]), "answer_type": row.get("answer_type"),
            "choices": _as_list(row.get("choices")), "turns": [t.text for t in o.turns],
            "response": o.response, "prediction": None, "tool_call": o.tool_call,
            "resized": o.tool_call == "ok", "score": None, "status": None, "reason": None, "judge": None,
            "visual_tokens": o.visual_tokens, "low_visual_tokens": _view_tokens(row, "low"),
            "full_visual_tokens": _view_tokens(row, "high"),
            "generated_tokens": sum(t.generated_tokens for t in o.turns),
            "latency_s": sum(t.latency_s for t in o.turns), "wall_s": wall_s, "created": datetime.now()}


def _rejudge(con, run: str, judge) -> None:
    """Predictions without a good verdict (the judge failed, or a crash came before judging) are judged
    again from the stored response; nothing is regenerated."""
    cur = con.execute("SELECT * FROM eval_predictions WHERE run = ? AND status IS DISTINCT FROM ?", [run, STATUS_OK])
    names = [d[0] for d in cur.description]
    recs = [dict(zip(names, v)) for v in cur.fetchall()]
    if recs:
        _judge_records(con, run, judge, recs)
        info(f"re-judged {len(recs)} stored predictions without a good verdict")


# ------------------------------------------------------------------------------------- export, stats

def _sha(x) -> str:
    import hashlib
    return hashlib.sha256(str(x).encode()).hexdigest()


def export_jsonl(con, run: str, path: Path) -> Path:
    """An lmms-eval `--log_samples` file: `doc_id`, `doc` (question, answers, answer_type, choices, id,
    source, task), `target`, `arguments` ([question, generation kwargs]), `resps` ([[turns...]]),
    `filtered_resps` ([extracted answer]), `doc_hash`/`prompt_hash`/`target_hash`, the metric `vt_score`;
    plus vt's fields at the top level (`prediction` is the raw final response, what `vt judge`
    judges: it extracts the answer itself). `<run>_results.json` beside it holds the aggregate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(con.execute("SELECT config FROM eval_runs WHERE run = ?", [run]).fetchone()[0] or "{}")
    gen_kwargs = {k: cfg.get("identity", {}).get(k) for k in ("max_new_tokens", "temperature", "max_turns")}
    cur = con.execute("SELECT * FROM eval_predictions WHERE run = ? ORDER BY doc_id", [run])
    names = [d[0] for d in cur.description]
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for values in cur.fetchall():
            r = dict(zip(names, values))
            doc = {"id": r["sample_id"], "question": r["question"], "answers": r["answers"],
                   "answer_type": r["answer_type"], "choices": r["choices"], "source": r["source"], "task": r["task"]}
            target = (r["answers"] or [None])[0]
            rec = {"doc_id": r["doc_id"], "doc": doc, "target": target,
                   "arguments": [r["question"], gen_kwargs], "resps": [r["turns"]],
                   "filtered_resps": [r["prediction"] or ""],
                   "doc_hash": _sha(json.dumps(doc, sort_keys=True)), "prompt_hash": _sha(r["question"]),
                   "target_hash": _sha(target), "vt_score": r["score"],
                   "id": r["sample_id"], "question": r["question"], "answers": r["answers"],
                   "answer_type": r["answer_type"], "prediction": r["response"], "extracted": r["prediction"]}
            for k in ("run", "source", "task", "mode", "score", "status", "reason", "judge", "tool_call",
                      "resized", "visual_tokens", "low_visual_tokens", "full_visual_tokens",
                      "generated_tokens", "latency_s", "wall_s"):
                rec[k] = r[k]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)
    write_results_json(con, run, cfg, path.with_name(f"{run}_results.json"))
    return path


def write_results_json(con, run: str, cfg: dict, path: Path) -> Path:
    """The aggregate in lmms-eval's results layout: `results[task]["metric,filter"]`, one task per run
    (`<run>`) and per source (`<run>/<source>`), plus `configs`, `n-samples`, `higher_is_better`."""
    metrics = ("accuracy", "resize_ratio", "visual_tokens_rel", "visual_tokens", "generated_tokens", "judge_errors")
    results, n_samples = {}, {}
    for row in summarize(con, run):
        task = run if row["source"] == "all" else f"{run}/{row['source']}" + (f"/{row['task']}" if row["task"] else "")
        results[task] = {"alias": task, **{f"{m},none": row[m] for m in metrics}, "accuracy_stderr,none": "N/A"}
        n_samples[task] = {"original": row["samples"], "effective": row["samples"]}
    doc = {"results": results, "configs": {run: cfg}, "n-samples": n_samples,
           "higher_is_better": {run: {"accuracy": True, "resize_ratio": False, "visual_tokens_rel": False}},
           "vt_version": __version__}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


SUMMARY_SQL = """
SELECT {keys},
       count(*) AS samples,
       avg(score) FILTER (WHERE status = 'ok') AS accuracy,
       count(*) FILTER (WHERE status IS DISTINCT FROM 'ok') AS judge_errors,
       avg(CASE WHEN resized THEN 1.0 ELSE 0.0 END) AS resize_ratio,
       sum(visual_tokens)::DOUBLE / nullif(sum(full_visual_tokens), 0) AS visual_tokens_rel,
       avg(visual_tokens) AS visual_tokens,
       avg(generated_tokens) AS generated_tokens,
       sum(wall_s) AS wall_s
FROM eval_predictions WHERE run = ? {group}
"""


def summarize(con, run: str) -> list[dict]:
    """Per (source, task) rows, then an `all` row: accuracy over judged-ok samples, resize ratio,
    visual tokens used relative to the full-res view, mean generated tokens, summed generation time."""
    out = []
    for keys, group in (("source, task", "GROUP BY source, task ORDER BY source, task"),
                        ("'all' AS source, '' AS task", "")):
        cur = con.execute(SUMMARY_SQL.format(keys=keys, group=group), [run])
        names = [d[0] for d in cur.description]
        out += [dict(zip(names, v)) for v in cur.fetchall()]
    return out


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def summary_table(run: str, summary: list[dict]):
    from rich.table import Table
    t = Table(title=f"vt eval {run} (tokens% = visual tokens used / full-res tokens)")
    t.add_column("source", no_wrap=True)
    t.add_column("task", no_wrap=True)
    for c in ("n", "acc%", "resize%", "tokens%", "gen tok", "time s", "judge err"):
        t.add_column(c, justify="right")
    for r in summary:
        t.add_row(r["source"], r["task"], str(r["samples"]), pct(r["accuracy"]), pct(r["resize_ratio"]),
                  pct(r["visual_tokens_rel"]), f"{r['generated_tokens'] or 0:.1f}", f"{r['wall_s'] or 0:.1f}",
                  str(r["judge_errors"]))
    return t


def compare(con, runs: list[str]):
    """Table 2 of the paper for the given runs: accuracy per source, the average accuracy relative
    to the first `full` run (or the first run), resize ratio (overall and per source, as the paper's
    resize-call shares) and visual tokens relative to full."""
    from rich.table import Table
    if not {"eval_runs", "eval_predictions"} <= {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}:
        raise VtError("no eval runs in this database yet (run `vt eval` first)")
    known = {r[0]: r[1] for r in con.execute("SELECT run, mode FROM eval_runs").fetchall()}
    missing = [r for r in runs if r not in known]
    if missing:
        raise VtError(f"unknown eval run(s): {', '.join(missing)}; known: {', '.join(sorted(known)) or 'none'}")
    per = {r: {s["source"]: s for s in summarize(con, r)} for r in runs}
    sources = sorted({s for r in runs for s in per[r] if s != "all"})
    ref = next((r for r in runs if known[r] == "full"), runs[0])
    t = Table(title="vt eval --compare (accuracy %; rel. = mean over sources of acc / acc of "
                    f"{ref})")
    t.add_column("run")
    t.add_column("mode")
    for s in sources:
        t.add_column(s, justify="right")
    for c in ("avg", "rel.", "resize %", *[f"resize % {s}" for s in sources], "vis. tokens %"):
        t.add_column(c, justify="right")
    rows = []
    for r in runs:
        accs = [per[r].get(s, {}).get("accuracy") for s in sources]
        rel = [a / b for a, b in ((per[r].get(s, {}).get("accuracy"), per[ref].get(s, {}).get("accuracy"))
                                  for s in sources) if a is not None and b]
        allr = per[r]["all"]
        row = {"run": r, "mode": known[r], "accuracy": dict(zip(sources, accs)), "avg": allr["accuracy"],
               "rel": sum(rel) / len(rel) if rel else None, "resize_ratio": allr["resize_ratio"],
               "resize_by_source": {s: per[r].get(s, {}).get("resize_ratio") for s in sources},
               "visual_tokens_rel": allr["visual_tokens_rel"]}
        rows.append(row)
        t.add_row(r, known[r], *[pct(a) for a in accs], pct(row["avg"]), pct(row["rel"]),
                  pct(row["resize_ratio"]), *[pct(row["resize_by_source"][s]) for s in sources],
                  pct(row["visual_tokens_rel"]))
    return t, rows


# ------------------------------------------------------------------------------------------------ CLI

def eval_command(
    runs: Optional[list[str]] = typer.Argument(None, help="With --compare: the run names to compare."),
    compare_runs: bool = typer.Option(False, "--compare", help="Compare finished runs (Table 2 style) instead of evaluating."),
    data: Optional[str] = typer.Option(None, help="Built dataset directory (vt build-data or vt curate output)."),
    mode: str = typer.Option("think", help="full (high view) | low (low view, 1/4 tokens) | think (two-turn resize protocol)."),
    model: Optional[str] = typer.Option(None, help="Local checkpoint dir or hub id (= --policy local:PATH)."),
    policy: Optional[str] = typer.Option(None, help="Policy spec: local:PATH | openai:MODEL."),
    policy_base_url: Optional[str] = typer.Option(None, help="Base URL of the OpenAI-compatible server for openai: policies."),
    judge: str = typer.Option("auto", help="Judge spec: auto | rule:NAME | openai:MODEL."),
    judge_base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible judge server URL(s), comma-separated."),
    judge_api_key_env: Optional[str] = typer.Option(None, help="Environment variable with the judge's API key (default: OPENAI_API_KEY without a base URL; none is sent to a base URL unless named)."),
    judge_scope: str = typer.Option("open", help="open: an LLM judge judges 'open' items, rules the rest | all: the LLM judges every item (the paper)."),
    policy_api_key_env: Optional[str] = typer.Option(None, help="Environment variable with the policy server's API key (default: OPENAI_API_KEY without --policy-base-url; none is sent to a base URL unless named)."),
    system_prompt: Optional[str] = typer.Option(None, help="System prompt, shipped name or file (default: agent_system in think mode, score_system otherwise)."),
    user_prompt: str = typer.Option("agent_user", help="Think mode: user template with {question} (as in training)."),
    tool_ok_prompt: str = typer.Option("tool_ok", help="Think mode: instruction after the high-res image."),
    tool_error_prompt: str = typer.Option("tool_error", help="Think mode: instruction after a tool error."),
    db: Optional[str] = typer.Option(None, help="DuckDB file (default: vt.duckdb beside --data; ./vt.duckdb for --compare without --data)."),
    split: str = typer.Option("val", help="Split to evaluate: val | train | all."),
    limit: Optional[int] = typer.Option(None, help="Only the first N samples."),
    name: Optional[str] = typer.Option(None, help="Run name (default <model>-<mode>-<split>); rerun to resume."),
    out: Optional[str] = typer.Option(None, help="Directory for <run>.jsonl (default: evals/ beside the database)."),
    max_new_tokens: int = typer.Option(8192, help="Generation budget per assistant turn (the release's 8192)."),
    views: str = typer.Option("dataset", help="dataset (the row's low/high views) | native (high = the original, low = original // 2: the release's eval)."),
    temperature: float = typer.Option(0.0, help="0 = greedy (the paper's evaluation)."),
    batch_size: int = typer.Option(8, help="Samples per policy call."),
    max_turns: int = typer.Option(2, help="Assistant turns at most in think mode."),
    seed: int = typer.Option(0, help="Sampling seed (temperature > 0)."),
) -> None:
    """Evaluate a model in full / low / think mode: accuracy, resize ratio and visual tokens per source.

    Examples: `vt eval --model demo-out/train/final --data demo-out/data --mode think`;
    `vt eval --compare demo-full demo-low demo-think --db demo-out/vt.duckdb`."""
    import sys

    from rich.console import Console
    out_console = Console(width=None if sys.stdout.isatty() else 160)  # results to stdout; no squeezing in pipes
    if compare_runs:
        if not runs:
            raise VtError("--compare needs at least one run name: vt eval --compare RUN RUN ...")
        from vtdata.db import connect, default_db
        # the database: --db, else vt.duckdb beside --data, else ./vt.duckdb (as `vt report`)
        con = connect(Path(db) if db else default_db(data), read_only=True)
        try:
            table, _ = compare(con, list(runs))
        finally:
            con.close()
        out_console.print(table)
        return
    if runs:
        raise VtError(f"unexpected argument(s) {' '.join(runs)}; did you mean --compare?")
    cfg = EvalConfig(data=data or "", mode=mode, model=model, policy=policy, policy_base_url=policy_base_url,
                     judge=judge, judge_base_url=judge_base_url, judge_api_key_env=judge_api_key_env,
                     judge_scope=judge_scope, policy_api_key_env=policy_api_key_env, system_prompt=system_prompt, user_prompt=user_prompt,
                     tool_ok_prompt=tool_ok_prompt, tool_error_prompt=tool_error_prompt, db=db, split=split, limit=limit, name=name, out=out,
                     max_new_tokens=max_new_tokens, views=views, temperature=temperature, batch_size=batch_size,
                     max_turns=max_turns, seed=seed)
    res = run_eval(cfg)
    out_console.print(summary_table(res["run"], res["summary"]))
    info(f"predictions: {res['jsonl']}  (db {res['db']}, tables eval_runs, eval_predictions)")

