"""`vt score-judge`: does the low-res view suffice? k rollouts per view, judged, labelled (paper §3.5).

For every sample: k answers on the LOW view and k on the HIGH view (scoring prompt `score_system`:
think, then `<answer>`), each judged by the shared judge. Per sample:

    low_ok      low correct >= --low-ok-low (default k) and high correct >= --low-ok-high (default k)
    needs_high  high correct - low correct >= --needs-high-gap (default ceil(6k/8): 6 of 8, the paper's)
    ambiguous   otherwise
    incomplete  a rollout is missing or a verdict is a judge error (never counted as wrong)

A rollout is correct when its judge score is >= 0.5 (scores are 0/1 except ANLS).

DuckDB tables: `rollouts` (one row per answer and its verdict; key policy, sample_id, view, idx) and
`sufficiency` (one row per policy and sample), plus the views `label_counts`, `low_vs_high_accuracy`
and `tokens_saved`. Work goes in chunks of --concurrency samples: the chunk's new rollouts are written
(one transaction) before they are judged, and the verdicts and labels after (another). A rerun (after a
crash, a kill -9, Ctrl-C, or with a larger k) generates only the missing rollouts and judges only the
rollouts without a verdict; LLM verdicts already paid for come from the judge's `judgments` cache.
Changing thresholds relabels stored counts without any call; changing the judge re-judges stored text.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import typer

from vtdata.console import VtError, debug, info, progress_bar
from vtdata.db import arrow_table, insert_rows
from vtdata.judge import judge_options

VIEWS = ("low", "high")
LABELS = ("low_ok", "needs_high", "ambiguous", "incomplete")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    policy VARCHAR NOT NULL,
    sample_id VARCHAR NOT NULL,
    view VARCHAR NOT NULL,            -- 'low' | 'high'
    idx INTEGER NOT NULL,             -- 0..k-1
    text VARCHAR,
    generated_tokens INTEGER,
    visual_tokens INTEGER,
    latency_s DOUBLE,
    finish_reason VARCHAR,
    temperature DOUBLE,
    score DOUBLE,                     -- NULL until judged, and when the judge failed
    judge_status VARCHAR,             -- NULL (not judged yet) | 'ok' | 'error'
    judge_reason VARCHAR,
    prediction VARCHAR,
    judge VARCHAR,                    -- the run's judge (its identity); a different judge re-judges
    verdict_by VARCHAR,               -- what produced the verdict (an LLM, a rule, the format check)
    created TIMESTAMP,
    judged TIMESTAMP,
    PRIMARY KEY (policy, sample_id, view, idx)
);
CREATE TABLE IF NOT EXISTS sufficiency (
    policy VARCHAR NOT NULL,
    sample_id VARCHAR NOT NULL,
    source VARCHAR,
    task VARCHAR,
    split VARCHAR,
    dataset VARCHAR,                  -- the scored dataset directory (vt curate reads the rows there)
    k INTEGER,
    low_correct INTEGER,
    high_correct INTEGER,
    low_judged INTEGER,               -- rollouts with an 'ok' verdict among the first k
    high_judged INTEGER,
    low_visual_tokens INTEGER,
    high_visual_tokens INTEGER,
    label VARCHAR,
    judge VARCHAR,
    updated TIMESTAMP,
    PRIMARY KEY (policy, sample_id)
);
CREATE OR REPLACE VIEW label_counts AS
    SELECT policy, source, label, count(*) AS samples
    FROM sufficiency GROUP BY ALL ORDER BY policy, source, label;
CREATE OR REPLACE VIEW low_vs_high_accuracy AS
    SELECT policy, source, count(*) AS samples,
           round(sum(low_correct) / sum(k), 4) AS low_accuracy,
           round(sum(high_correct) / sum(k), 4) AS high_accuracy,
           round(sum(high_correct - low_correct) / sum(k), 4) AS high_minus_low
    FROM sufficiency WHERE label <> 'incomplete' GROUP BY ALL ORDER BY policy, source;
CREATE OR REPLACE VIEW tokens_saved AS
    SELECT policy, source, count(*) AS samples,
           count(*) FILTER (WHERE label = 'low_ok') AS low_ok,
           sum(high_visual_tokens) AS high_visual_tokens,
           sum(CASE WHEN label = 'low_ok' THEN low_visual_tokens ELSE high_visual_tokens END) AS routed_visual_tokens,
           round(1 - sum(CASE WHEN label = 'low_ok' THEN low_visual_tokens ELSE high_visual_tokens END)
                     / sum(high_visual_tokens), 4) AS share_saved
    FROM sufficiency WHERE label <> 'incomplete' GROUP BY ALL ORDER BY policy, source;
"""
# tokens_saved: visual tokens if every sample used the high view vs. if the low_ok ones used the low view.

ROLLOUT_COLUMNS = ("policy", "sample_id", "view", "idx", "text", "generated_tokens", "visual_tokens",
                   "latency_s", "finish_reason", "temperature", "created")
SAMPLE_COLUMNS = ["id", "source", "task", "split", "question", "answers", "answer_type", "choices", "image",
                  "low_width", "low_height", "high_width", "high_height"]


def _ids(ids: list[str]):
    import pyarrow as pa
    return pa.table({"id": pa.array(ids, pa.string())})


@dataclass
class Thresholds:
    """Labelling rule; None = the paper's rule scaled to k."""
    low_ok_low: int | None = None
    """low_ok needs at least this many correct low-view rollouts (default k: all)."""
    low_ok_high: int | None = None
    """... and at least this many correct high-view rollouts (default k: all)."""
    needs_high_gap: int | None = None
    """needs_high when high correct - low correct >= this (default ceil(6k/8): 6 of 8 in the paper)."""

    def resolve(self, k: int) -> "Thresholds":
        t = Thresholds(k if self.low_ok_low is None else self.low_ok_low,
                       k if self.low_ok_high is None else self.low_ok_high,
                       math.ceil(6 * k / 8) if self.needs_high_gap is None else self.needs_high_gap)
        for name, v in asdict(t).items():
            if not 1 <= v <= k:
                raise VtError(f"--{name.replace('_', '-')} must be between 1 and k={k}, got {v}")
        return t


def label(low_correct: int, high_correct: int, k: int, t: Thresholds, complete: bool = True) -> str:
    """The sufficiency label of one sample (thresholds already resolved for k)."""
    if not complete:
        return "incomplete"
    if low_correct >= t.low_ok_low and high_correct >= t.low_ok_high:
        return "low_ok"
    if high_correct - low_correct >= t.needs_high_gap:
        return "needs_high"
    return "ambiguous"


def label_sql(t: Thresholds) -> str:
    """The same rule as `label()`, as a SQL expression over a sufficiency row."""
    return (f"CASE WHEN low_judged < k OR high_judged < k THEN 'incomplete' "
            f"WHEN low_correct >= {int(t.low_ok_low)} AND high_correct >= {int(t.low_ok_high)} THEN 'low_ok' "
            f"WHEN high_correct - low_correct >= {int(t.needs_high_gap)} THEN 'needs_high' "
            f"ELSE 'ambiguous' END")


@dataclass
class ScoreConfig:
    """Options of `vt score-judge` (every field is a CLI flag)."""
    data: Path
    """A built dataset directory (`vt build-data ... --out DIR`)."""
    db: Path | None = None
    """DuckDB file (default: vt.duckdb beside the data directory)."""
    policy: str = ""
    """`local:PATH` (a checkpoint dir or hub id) or `openai:MODEL`."""
    policy_base_url: str | None = None
    """Base URL of an OpenAI-compatible server for an `openai:` policy (e.g. http://localhost:8000/v1)."""
    policy_api_key_env: str | None = None
    """Environment variable holding the policy server's API key (None: $OPENAI_API_KEY for OpenAI's API;
    no key is sent to a --policy-base-url unless its variable is named)."""
    judge: str = "auto"
    """Judge spec: auto | rule:<name> | openai:<model>."""
    judge_base_url: str | None = None
    """Base URL(s) of the judge server for an `openai:` judge (comma-separated for several)."""
    judge_api_key_env: str | None = None
    """Environment variable holding the judge's API key (None: as for the policy)."""
    judge_scope: str = "open"
    """open: an LLM judge judges `open` items, rules the rest | all: the LLM judges every item (the paper)."""
    rollouts: int = 8
    """k: rollouts per view per sample (the paper: 8)."""
    split: str = "train"
    """Which split to score: train | val | all."""
    limit: int | None = None
    """Score only the first N samples of the split (in dataset order)."""
    concurrency: int = 16
    """Samples in flight at once (a local policy batches their prompts; an openai one sends them together)."""
    batch_size: int = 16
    """Local policy: prompts per generate() call."""
    temperature: float = 1.0
    """Sampling temperature (the paper: 1.0)."""
    max_new_tokens: int = 1024
    """Longest answer."""
    prompt: str = "score_system"
    """System prompt: a shipped prompt name or a file."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """Labelling thresholds (see Thresholds)."""
    device: str | None = None
    """Local policy device (default cuda if available)."""
    seed: int = 0
    """Sampling seed."""

    def validate(self) -> None:
        """One-line errors for bad options, before any data or model is loaded."""
        for name in ("rollouts", "concurrency", "batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise VtError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise VtError(f"--limit must be >= 1, got {self.limit}")
        if self.split not in ("train", "val", "all"):
            raise VtError(f"--split must be train, val or all, got {self.split!r}")
        if self.temperature < 0:
            raise VtError(f"--temperature must be >= 0, got {self.temperature}")
        self.thresholds.resolve(self.rollouts)
        judge_options(self.judge, self.judge_base_url, self.judge_api_key_env, self.judge_scope)

    def db_path(self) -> Path:
        from vtdata.db import default_db
        return Path(self.db) if self.db else default_db(self.data)


class Scorer:
    """One run of score-judge on an open writer connection."""

    def __init__(self, cfg: ScoreConfig, con, policy, judge) -> None:
        from vtdata import prompts
        self.cfg, self.con, self.policy, self.judge = cfg, con, policy, judge
        self.k = int(cfg.rollouts)
        self.t = cfg.thresholds.resolve(self.k)
        self.system = prompts.load(cfg.prompt)
        self.pid = policy.identity
        con.execute(SCHEMA)

    # -- bookkeeping in DuckDB ----------------------------------------------------------------
    def state(self, ids: list[str]) -> dict:
        """sample_id -> {'have': {(view, idx)}, 'unjudged': [(view, idx), ...]} for this policy."""
        out: dict = {i: {"have": set(), "unjudged": []} for i in ids}
        if not ids:
            return out
        with arrow_table(self.con, "_vt_ids", _ids(ids)):
            rows = self.con.execute(
                "SELECT sample_id, view, idx, judge_status, judge FROM rollouts r JOIN _vt_ids i ON r.sample_id = i.id "
                "WHERE policy = ? AND idx < ?", [self.pid, self.k]).fetchall()
        for sid, view, idx, status, judge in rows:
            out[sid]["have"].add((view, idx))
            if status != "ok" or judge != self.judge.identity:
                out[sid]["unjudged"].append((view, idx))
        return out

    def insert_rollouts(self, rows: list[dict]) -> None:
        insert_rows(self.con, "rollouts", rows, ROLLOUT_COLUMNS)  # all of the chunk's rollouts or none

    def write_verdicts(self, verdicts: list[dict], samples: list[dict]) -> None:
        import pyarrow as pa
        self.con.execute("BEGIN TRANSACTION")
        try:
            if verdicts:
                with arrow_table(self.con, "_vt_v", pa.Table.from_pylist(verdicts)):
                    self.con.execute(
                        "UPDATE rollouts r SET score = v.score, judge_status = v.status, judge_reason = v.reason, "
                        "prediction = v.prediction, judge = v.judge, verdict_by = v.verdict_by, judged = now() "
                        "FROM _vt_v v WHERE r.policy = v.policy AND r.sample_id = v.sample_id AND r.view = v.view "
                        "AND r.idx = v.idx")
            if samples:
                self._write_sufficiency(samples)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def _write_sufficiency(self, samples: list[dict]) -> None:
        """Recount the samples' sufficiency rows from their stored rollouts and label them."""
        import pyarrow as pa
        tbl = pa.table({c: [s.get(c) for s in samples] for c in ("id", "source", "task", "split")})
        with arrow_table(self.con, "_vt_s", tbl):
            self.con.execute("""
                INSERT OR REPLACE INTO sufficiency
                SELECT ? AS policy, s.id, s.source, s.task, s.split, ? AS dataset, ? AS k,
                       count(*) FILTER (WHERE r.view = 'low' AND r.judge_status = 'ok' AND r.score >= 0.5),
                       count(*) FILTER (WHERE r.view = 'high' AND r.judge_status = 'ok' AND r.score >= 0.5),
                       count(*) FILTER (WHERE r.view = 'low' AND r.judge_status = 'ok'),
                       count(*) FILTER (WHERE r.view = 'high' AND r.judge_status = 'ok'),
                       max(r.visual_tokens) FILTER (WHERE r.view = 'low'),
                       max(r.visual_tokens) FILTER (WHERE r.view = 'high'),
                       NULL, ?, now()
                FROM _vt_s s LEFT JOIN rollouts r
                  ON r.sample_id = s.id AND r.policy = ? AND r.idx < ?
                GROUP BY s.id, s.source, s.task, s.split""",
                [self.pid, str(Path(self.cfg.data).resolve()), self.k, self.judge.identity, self.pid, self.k])
        self.con.execute(f"UPDATE sufficiency SET label = {label_sql(self.t)} WHERE policy = ? AND label IS NULL",
                         [self.pid])

    def relabel(self) -> None:
        """Apply the current thresholds to every stored sample of this policy scored with this k."""
        self.con.execute(f"UPDATE sufficiency SET label = {label_sql(self.t)} WHERE policy = ? AND k = ?",
                         [self.pid, self.k])

    def done_ids(self) -> set[str]:
        """Samples whose labels are final for this policy, k and judge (nothing to do)."""
        rows = self.con.execute("SELECT sample_id FROM sufficiency WHERE policy = ? AND k = ? AND judge = ? "
                                "AND label <> 'incomplete'", [self.pid, self.k, self.judge.identity]).fetchall()
        return {r[0] for r in rows}

    # -- one chunk of samples -----------------------------------------------------------------
    async def run_chunk(self, samples: list[dict], st: dict | None = None) -> Counter:
        """Generate what is missing, judge what has no verdict, label; `st` = state() of these samples."""
        from vtdata import protocol
        from vtdata.judge import JudgeItem
        from vtdata.resolution import view_of
        from vttrain.policy import GenRequest
        cfg = self.cfg
        st = st if st is not None else self.state([s["id"] for s in samples])
        requests, slots = [], []  # slots[i] = (sample, view, missing indices)
        for s in samples:
            for view in VIEWS:
                missing = [i for i in range(self.k) if (view, i) not in st[s["id"]]["have"]]
                if missing:
                    try:
                        image = view_of(s, view)
                    except (ValueError, OSError) as err:
                        raise VtError(f"sample {s['id']}: cannot make its {view} view: {err}") from None
                    requests.append(GenRequest(protocol.direct_messages(self.system, s["question"], image),
                                               n=len(missing), temperature=cfg.temperature,
                                               max_new_tokens=cfg.max_new_tokens))
                    slots.append((s, view, missing))
        new_rows = []
        if requests:
            gens = await self.policy.agenerate(requests)
            now = _now()
            for g in gens:
                s, view, missing = slots[g.request]
                if g.error:  # not stored: the rerun asks again
                    debug(f"policy failed on {s['id']} {view}: {g.error}")
                    continue
                new_rows.append({"policy": self.pid, "sample_id": s["id"], "view": view, "idx": missing[g.index],
                                 "text": g.text, "generated_tokens": int(g.generated_tokens),
                                 "visual_tokens": int(g.visual_tokens), "latency_s": float(g.latency_s),
                                 "finish_reason": g.finish_reason, "temperature": float(cfg.temperature),
                                 "created": now})
            self.insert_rollouts(new_rows)  # paid for: on disk before judging
        # judge what has no verdict yet: the new rollouts and stored ones left unjudged / judged with errors
        by_id = {s["id"]: s for s in samples}
        todo = [(r["sample_id"], r["view"], r["idx"], r["text"]) for r in new_rows]
        stored = [(sid, v, i) for sid in by_id for v, i in st[sid]["unjudged"]]
        if stored:
            todo += self.stored_texts(stored)
        verdict_rows = []
        if todo:
            items = [JudgeItem(by_id[sid]["question"], list(by_id[sid]["answers"] or []), text or "",
                               by_id[sid].get("answer_type") or "open", by_id[sid].get("choices"))
                     for sid, _, _, text in todo]
            verdicts = await self.judge.ajudge(items)
            for (sid, view, idx, _), v in zip(todo, verdicts):
                verdict_rows.append({"policy": self.pid, "sample_id": sid, "view": view, "idx": idx,
                                     "score": None if v.score is None else float(v.score), "status": v.status,
                                     "reason": v.reason, "prediction": v.prediction, "judge": self.judge.identity,
                                     "verdict_by": v.judge})
        self.write_verdicts(verdict_rows, samples)
        return self.labels_of([s["id"] for s in samples])

    def stored_texts(self, keys: list[tuple]) -> list[tuple]:
        import pyarrow as pa
        tbl = pa.table({"sample_id": [k[0] for k in keys], "view": [k[1] for k in keys],
                        "idx": pa.array([k[2] for k in keys], pa.int32())})
        with arrow_table(self.con, "_vt_k", tbl):
            return self.con.execute(
                "SELECT r.sample_id, r.view, r.idx, r.text FROM rollouts r JOIN _vt_k k USING (sample_id, view, idx) "
                "WHERE r.policy = ?", [self.pid]).fetchall()

    def labels_of(self, ids: list[str]) -> Counter:
        with arrow_table(self.con, "_vt_ids", _ids(ids)):
            rows = self.con.execute("SELECT label, count(*) FROM sufficiency s JOIN _vt_ids i ON s.sample_id = i.id "
                                    "WHERE policy = ? GROUP BY label", [self.pid]).fetchall()
        return Counter(dict(rows))


def _now():
    import datetime as dt
    return dt.datetime.now()


def _status(c: Counter) -> str:
    return " ".join(f"{name}={c.get(name, 0)}" for name in LABELS)


def _load_samples(cfg: ScoreConfig) -> list[dict]:
    """The samples to score, without image bytes (those are read chunk by chunk)."""
    from vtdata.dataset import read_split
    data = Path(cfg.data)
    rows = read_split(data, cfg.split, cfg.limit, columns=[c for c in SAMPLE_COLUMNS if c != "image"])
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise VtError(f"sample id {dup} appears twice in {data}; rebuild the dataset")
    return rows


def _stream_with_images(cfg: ScoreConfig, todo: list[dict]):
    """The todo samples with their image bytes, in dataset order, in one pass over the shards."""
    from vtdata.dataset import iter_samples
    want = {r["id"]: r for r in todo}
    left = len(want)
    for row in iter_samples(cfg.data, split=None if cfg.split == "all" else cfg.split, columns=["id", "image"]):
        base = want.get(row["id"])
        if base is not None:
            yield dict(base, image=row["image"])
            left -= 1
            if not left:
                return


async def score(cfg: ScoreConfig, con, policy, judge, samples: list[dict] | None = None) -> dict:
    """Score the samples of cfg on an open writer connection; returns label counts and timings."""
    scorer = Scorer(cfg, con, policy, judge)
    samples = samples if samples is not None else _load_samples(cfg)
    scorer.relabel()
    done = scorer.done_ids()
    todo = [s for s in samples if s["id"] not in done]
    stored = scorer.state([s["id"] for s in todo])  # one query; this run is the only writer
    counts = scorer.labels_of([s["id"] for s in samples if s["id"] in done])
    info(f"score-judge: {len(samples)} samples, {len(samples) - len(todo)} already labelled, "
         f"{len(todo)} to do (k={scorer.k}, policy {policy.identity}, judge {judge.identity})")
    t0 = time.perf_counter()
    step = int(cfg.concurrency)
    with progress_bar("scoring", total=len(todo)) as bar:
        bar.advance(0, status=_status(counts))
        chunk: list[dict] = []
        for row in _stream_with_images(cfg, todo):
            chunk.append(row)
            if len(chunk) == step:
                counts += await scorer.run_chunk(chunk, {r["id"]: stored[r["id"]] for r in chunk})
                bar.advance(len(chunk), status=_status(counts))
                chunk = []
        if chunk:
            counts += await scorer.run_chunk(chunk, {r["id"]: stored[r["id"]] for r in chunk})
            bar.advance(len(chunk), status=_status(counts))
    elapsed = time.perf_counter() - t0
    total = scorer.labels_of([s["id"] for s in samples])
    return {"samples": len(samples), "scored": len(todo), "labels": dict(total), "elapsed_s": elapsed}


def score_judge_command(
    data: Path = typer.Option(..., "--data", help="Built dataset directory (vt build-data --out DIR)."),
    db: Path = typer.Option(None, "--db", help="DuckDB file (default: vt.duckdb beside the data directory)."),
    policy: str = typer.Option(..., "--policy", help="local:PATH (checkpoint dir or hub id) or openai:MODEL."),
    policy_base_url: str = typer.Option(None, "--policy-base-url", help="OpenAI-compatible server of an openai: "
                                        "policy, e.g. http://localhost:8000/v1 (vllm serve)."),
    policy_api_key_env: str = typer.Option(None, "--policy-api-key-env", help="Environment variable with the policy server's API key (default: OPENAI_API_KEY without --policy-base-url; none is sent to a base URL unless named)."),
    judge: str = typer.Option("auto", "--judge", help="auto | rule:<name> | openai:<model>."),
    judge_base_url: str = typer.Option(None, "--judge-base-url", help="Judge server(s) for an openai: judge "
                                       "(comma-separated)."),
    judge_api_key_env: str = typer.Option(None, "--judge-api-key-env", help="Environment variable with the judge's API key (default: OPENAI_API_KEY without a base URL; none is sent to a base URL unless named)."),
    judge_scope: str = typer.Option("open", "--judge-scope", help="open: an LLM judge judges 'open' items, rules the "
                                    "rest | all: the LLM judges every item (the paper)."),
    rollouts: int = typer.Option(8, "--rollouts", "-k", help="Rollouts per view per sample (paper: 8)."),
    split: str = typer.Option("train", "--split", help="train | val | all."),
    limit: int = typer.Option(None, "--limit", help="Only the first N samples of the split."),
    concurrency: int = typer.Option(16, "--concurrency", help="Samples in flight at once (one chunk: its rollouts are written in one transaction before judging)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Local policy: prompts per generate() call."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (paper: 1.0)."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", help="Longest answer in tokens."),
    prompt: str = typer.Option("score_system", "--prompt", help="System prompt: shipped name or a file."),
    low_ok_low: int = typer.Option(None, "--low-ok-low", help="low_ok: min correct low-view rollouts "
                                   "(default k)."),
    low_ok_high: int = typer.Option(None, "--low-ok-high", help="low_ok: min correct high-view rollouts "
                                    "(default k)."),
    needs_high_gap: int = typer.Option(None, "--needs-high-gap", help="needs_high: min high-minus-low correct "
                                       "(default ceil(6k/8))."),
    device: str = typer.Option(None, "--device", help="Local policy device (default: cuda if available)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
):
    """Pre-score low-res sufficiency: k rollouts on the low and the high view of every sample, judged and
    labelled low_ok / needs_high / ambiguous (incomplete on judge errors). Resumable; rerun to finish."""
    cfg = ScoreConfig(data=data, db=db, policy=policy, policy_base_url=policy_base_url,
                      policy_api_key_env=policy_api_key_env, judge=judge, judge_base_url=judge_base_url,
                      judge_api_key_env=judge_api_key_env, judge_scope=judge_scope, rollouts=rollouts, split=split, limit=limit,
                      concurrency=concurrency, batch_size=batch_size, temperature=temperature,
                      max_new_tokens=max_new_tokens, prompt=prompt,
                      thresholds=Thresholds(low_ok_low, low_ok_high, needs_high_gap), device=device, seed=seed)
    result = run(cfg)
    lab = result["labels"]
    info(f"done: {result['samples']} samples ({result['scored']} scored now in {result['elapsed_s']:.1f}s): "
         + _status(Counter(lab)))
    js = result.get("judge_stats") or {}
    if js.get("requests") or js.get("cache_hits"):
        info(f"judge: {js.get('requests', 0)} requests, {js.get('cache_hits', 0)} cache hits, "
             f"{js.get('errors', 0)} errors")
    if lab.get("incomplete"):
        info(f"{lab['incomplete']} samples incomplete (judge or policy errors): rerun the same command to finish them")


def make_judge_for(cfg: ScoreConfig, con):
    from vtdata.judge import make_judge
    # verdicts reach the judgments cache within a second: a kill loses at most that much paid work
    opts = judge_options(cfg.judge, cfg.judge_base_url, cfg.judge_api_key_env, cfg.judge_scope,
                         concurrency=cfg.concurrency * 2 * cfg.rollouts, flush_every=64, flush_seconds=1.0)
    return make_judge(cfg.judge, db=con, **opts)


def run(cfg: ScoreConfig) -> dict:
    """Score per the config in its database (the command's one writer connection)."""
    from vtdata.db import writer
    from vttrain.policy import make_policy
    cfg.validate()
    samples = _load_samples(cfg)  # bad --data / --split fail before a model is loaded
    with writer(cfg.db_path(), "vt score-judge") as con:
        judge = make_judge_for(cfg, con)
        policy = make_policy(cfg.policy, base_url=cfg.policy_base_url, api_key_env=cfg.policy_api_key_env,
                             concurrency=cfg.concurrency * cfg.rollouts * 2, batch_size=cfg.batch_size,
                             device=cfg.device, seed=cfg.seed)
        try:
            result = asyncio.run(score(cfg, con, policy, judge, samples))
            result["judge_stats"] = judge.stats()
            return result
        finally:
            judge.close()
            policy.close()
