"""`vt score-judge`: does the low-res view suffice? k rollouts per view, judged, labelled (paper §3.5).

For every sample: k answers on the LOW view and k on the HIGH view (scoring prompt `score_system`:
think, then `<answer>`), each judged by the shared judge. Per sample:

    low_ok      low correct >= --low-ok-low (default k) and high correct >= --low-ok-high (default k)
    needs_high  high correct - low correct >= --needs-high-gap (default ceil(6k/8): 6 of 8, the paper's)
    ambiguous   otherwise
    incomplete  a rollout is missing or a verdict is a judge error (never counted as wrong)

A rollout is correct when its judge score is >= 0.5 (scores are 0/1 except ANLS).

DuckDB tables: `rollouts` (one row per answer and its verdict; key policy, protocol, input_sha, view, idx),
`sufficiency` (one row per policy, protocol, dataset and sample; key policy, protocol, dataset_sha,
sample_id) and `score_protocols` (each protocol's settings), plus the views `label_counts`,
`low_vs_high_accuracy` and `tokens_saved`. The keys say what made a row (vtdata/provenance.py): another
prompt, temperature, seed, token budget or policy weights is another protocol, other view pixels or
another question another input, another dataset content another label set; none of them reuses the
other's rollouts or labels. k is not in the rollout key: a larger k adds indices to the same protocol.
Generating, storing and judging are the rollout engine's (`vttrain/rollout/engine.py`: 2k jobs per sample);
this module adds the labelling. Work goes in chunks
of --concurrency samples: the chunk's new rollouts are written before they are judged, and the verdicts
and labels after, in one transaction. A rerun (after a crash, a kill -9, Ctrl-C, or with a larger k)
generates only the missing rollouts and judges only the rollouts without a verdict; LLM verdicts already
paid for come from the judge's `judgments` cache.
Changing thresholds relabels stored counts without any call; changing the judge re-judges stored text.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vtdata import prompts, provenance, tables
from vtdata.config import command
from vtdata.console import VtError, debug, info, progress_bar, redact
from vtdata.dataset import iter_samples, read_split
from vtdata.db import arrow_table, default_db, writer
from vtdata.judge import JudgeSpec, make_judge
from vtdata.provenance import LabelSet
from vttrain.rollout import engine
from vttrain.rollout.policy import make_policy

VIEWS = ("low", "high")
LABELS = ("low_ok", "needs_high", "ambiguous", "incomplete")


TABLES = ("score_protocols", "rollouts", "sufficiency", "label_counts", "low_vs_high_accuracy", "tokens_saved")  # DDL: vtdata/tables.py
ROLLOUT_COLUMNS = ("policy", "protocol", "input_sha", "sample_id", "view", "idx", "text", "generated_tokens", "visual_tokens",
                   "latency_s", "finish_reason", "temperature", "created")
SAMPLE_COLUMNS = ["id", "source", "task", "split", "question", "answers", "answer_type", "choices", "image",
                  "low_width", "low_height", "high_width", "high_height", "image_sha256"]


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


def label_sql(t: Thresholds) -> str:
    """The labelling rule (thresholds resolved for k) as a SQL expression over a sufficiency row."""
    return (f"CASE WHEN low_judged < k OR high_judged < k THEN 'incomplete' "
            f"WHEN low_correct >= {int(t.low_ok_low)} AND high_correct >= {int(t.low_ok_high)} THEN 'low_ok' "
            f"WHEN high_correct - low_correct >= {int(t.needs_high_gap)} THEN 'needs_high' "
            f"ELSE 'ambiguous' END")


MAX_ROLLOUTS = 1024  # k rollouts per view per sample (the paper: 8); more would not fit in memory


@dataclass
class ScoreConfig:
    """Pre-score low-res sufficiency: k rollouts on the low and the high view of every sample, judged and
    labelled low_ok / needs_high / ambiguous (incomplete on judge errors). Resumable; rerun to finish."""
    data: Path
    """Built dataset directory (`vt build-data ... --out DIR`)."""
    db: Path | None = None
    """DuckDB file (default: vt.duckdb beside the data directory, or $VT_DB)."""
    policy: str = ""
    """`local:PATH` (a checkpoint dir or hub id) or `openai:MODEL`."""
    policy_base_url: str | None = None
    """Base URL(s) of OpenAI-compatible servers for an `openai:` policy, comma-separated (load-balanced),
    e.g. http://localhost:8000/v1 (`vllm serve`)."""
    policy_api_key_env: str | None = None
    """Environment variable holding the policy server's API key (None: $OPENAI_API_KEY for OpenAI's API;
    no key is sent to a --policy-base-url unless its variable is named)."""
    policy_timeout: float = field(default=600.0, metadata={"min": 0.001, "max": 86400.0})
    """Seconds one policy request may take in all (connection, retries, every byte of the reply)."""
    judging: JudgeSpec = field(default_factory=JudgeSpec)
    """The judge: --judge, --judge-base-url, --judge-api-key-env, --judge-scope (vtdata.judge.JudgeSpec)."""
    rollouts: int = field(default=8, metadata={"flags": ["-k"], "min": 1, "max": MAX_ROLLOUTS,
                                               "why": "every rollout of a chunk is held in memory"})
    """k: rollouts per view per sample (the paper: 8)."""
    split: str = "train"
    """Which split to score: train | val | all."""
    limit: int | None = None
    """Score only the first N samples of the split (in dataset order)."""
    concurrency: int = 16
    """Samples in flight at once (one chunk: its rollouts are written in one transaction before judging)."""
    batch_size: int = 16
    """Local policy: prompts per generate() call."""
    temperature: float = 1.0
    """Sampling temperature (the paper: 1.0)."""
    max_new_tokens: int = 1024
    """Longest answer in tokens."""
    prompt: str = "score_system"
    """System prompt: a shipped prompt name or a file."""
    direct_newline: bool = True
    """A newline between the image and the question (the release's general-QA prompt); false = vt before issue 21."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """Labelling thresholds (see Thresholds)."""
    device: str | None = None
    """Local policy device (default cuda if available)."""
    seed: int = 0
    """Sampling seed."""

    def __post_init__(self) -> None:
        """One-line errors for bad options, before any data or model is loaded."""
        for name in ("rollouts", "concurrency", "batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise VtError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise VtError(f"--limit must be >= 1, got {self.limit}")
        if self.rollouts > MAX_ROLLOUTS:
            raise VtError(f"-k/--rollouts must be <= {MAX_ROLLOUTS}, got {self.rollouts}")
        if self.split not in ("train", "val", "all"):
            raise VtError(f"--split must be train, val or all, got {self.split!r}")
        if self.temperature < 0:
            raise VtError(f"--temperature must be >= 0, got {self.temperature}")
        if not self.policy:
            raise VtError("--policy is required: local:PATH or openai:MODEL")
        self.thresholds.resolve(self.rollouts)

    def db_path(self) -> Path:
        return Path(self.db) if self.db else default_db(self.data)


def protocol_settings(cfg: ScoreConfig, policy) -> dict:
    """Everything that shapes a rollout besides its input: hashed into the rollouts' `protocol` key."""
    ident = policy.identity
    settings = {"policy": ident, "system_prompt": prompts.load(cfg.prompt), "direct_newline": bool(cfg.direct_newline),
                "layout": "direct-v1", "temperature": float(cfg.temperature), "top_p": 1.0,
                "max_new_tokens": int(cfg.max_new_tokens), "seed": int(cfg.seed)}
    if ident.startswith("openai:"):  # the server's per-request seed: from the rollout's key (engine.seed_of)
        settings["seeding"] = "rollout-key-v1"
    path = Path(ident.split(":", 1)[1]) if ident.startswith("local:") else None
    if path is not None and path.is_dir():  # another checkpoint at the same path is another policy
        from vttrain.models.build import model_fingerprint
        settings["weights"] = model_fingerprint(path)
    return settings


def write_sufficiency(con, ls: LabelSet, k: int, t: Thresholds, judge: str, data: Path, samples: list[dict]) -> Counter:
    """Recount the samples' sufficiency rows (of the label set) from their stored rollouts and label them, in
    one statement; returns the count of each label written."""
    import pyarrow as pa
    tbl = pa.table({c: [s.get(c) for s in samples] for c in ("id", "source", "task", "split", "input_sha")})
    with arrow_table(con, "_vt_s", tbl):
        labels = con.execute(f"""
            INSERT OR REPLACE INTO sufficiency (policy, protocol, dataset_sha, sample_id, input_sha, source, task,
                split, dataset, k, low_correct, high_correct, low_judged, high_judged, low_visual_tokens,
                high_visual_tokens, label, judge, updated)
            SELECT *, {label_sql(t)}, ?, now() FROM (
                SELECT ? AS policy, ? AS protocol, ? AS dataset_sha, s.id, s.input_sha, s.source, s.task, s.split,
                       ? AS dataset, ? AS k,
                       count(*) FILTER (WHERE r.view = 'low' AND r.judge_status = 'ok' AND r.score >= 0.5)
                           AS low_correct,
                       count(*) FILTER (WHERE r.view = 'high' AND r.judge_status = 'ok' AND r.score >= 0.5)
                           AS high_correct,
                       count(*) FILTER (WHERE r.view = 'low' AND r.judge_status = 'ok') AS low_judged,
                       count(*) FILTER (WHERE r.view = 'high' AND r.judge_status = 'ok') AS high_judged,
                       max(r.visual_tokens) FILTER (WHERE r.view = 'low'),
                       max(r.visual_tokens) FILTER (WHERE r.view = 'high')
                FROM _vt_s s LEFT JOIN rollouts r
                  ON r.input_sha = s.input_sha AND r.policy = ? AND r.protocol = ? AND r.idx < ?
                GROUP BY s.id, s.input_sha, s.source, s.task, s.split)
            RETURNING label""",
            [judge, *ls.params, str(Path(data).resolve()), k, ls.policy, ls.protocol, k]).fetchall()
    return Counter(label for (label,) in labels)


def label_counts(con, ls: LabelSet, ids: list[str]) -> Counter:
    import pyarrow as pa
    with arrow_table(con, "_vt_ids", pa.table({"id": pa.array(ids, pa.string())})):
        rows = con.execute("SELECT label, count(*) FROM sufficiency s JOIN _vt_ids i ON s.sample_id = i.id "
                           f"WHERE {ls.where('s')} GROUP BY label", ls.params).fetchall()
    return Counter(dict(rows))


def _status(c: Counter) -> str:
    return " ".join(f"{name}={c.get(name, 0)}" for name in LABELS)


def _load_samples(cfg: ScoreConfig) -> list[dict]:
    """The samples to score, without image bytes (those are read chunk by chunk)."""
    data = Path(cfg.data)
    rows = read_split(data, cfg.split, cfg.limit, columns=[c for c in SAMPLE_COLUMNS if c != "image"])
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise VtError(f"sample id {dup} appears twice in {data}; rebuild the dataset")
    return rows


def _with_images(cfg: ScoreConfig, todo: list[dict]):
    """The todo samples with their image bytes, in dataset order, in one pass over the shards."""
    want = {r["id"]: r for r in todo}
    left = len(want)
    if not left:
        return
    for row in iter_samples(cfg.data, split=None if cfg.split == "all" else cfg.split, columns=["id", "image"]):
        base = want.get(row["id"])
        if base is not None:
            yield dict(base, image=row["image"])
            left -= 1
            if not left:
                return


def _prepare(con, cfg: ScoreConfig, policy) -> LabelSet:
    """Tables in the current format (a database from before provenance keys has its tables set aside), the
    run's protocol recorded; returns the run's label set."""
    moved = provenance.set_aside(con)
    if moved:
        info("score-judge: this database's " + " and ".join(f"`{a}`" for a, _ in moved) + " came from a vt that did "
             "not record which protocol and dataset made them; kept as " + " and ".join(f"`{b}`" for _, b in moved)
             + " (read them with vt sql), not reused: scoring anew")
    tables.ensure(con, *TABLES)
    settings = protocol_settings(cfg, policy)
    proto = provenance.digest(settings)
    con.execute("INSERT OR IGNORE INTO score_protocols VALUES (?, ?, ?, now())",
                [proto, redact(policy.identity), redact(json.dumps(settings))])
    return LabelSet(policy.identity, proto, provenance.dataset_sha(cfg.data))


async def score(cfg: ScoreConfig, con, policy, judge, samples: list[dict] | None = None) -> dict:
    """Score the samples of cfg on an open writer connection; returns label counts and timings."""
    k, pid = int(cfg.rollouts), policy.identity
    t = cfg.thresholds.resolve(k)
    ls = _prepare(con, cfg, policy)
    proto = ls.protocol
    samples = samples if samples is not None else _load_samples(cfg)
    # relabel with the current thresholds (no call), then skip the samples whose labels are final
    con.execute(f"UPDATE sufficiency SET label = {label_sql(t)} WHERE {ls.where()} AND k = ?", [*ls.params, k])
    done = {r[0] for r in con.execute(f"SELECT sample_id FROM sufficiency WHERE {ls.where()} AND k = ? AND judge = ? "
                                      "AND label <> 'incomplete'", [*ls.params, k, judge.identity]).fetchall()}
    todo = [s for s in samples if s["id"] not in done]
    counts = label_counts(con, ls, [s["id"] for s in samples if s["id"] in done])
    info(f"score-judge: {len(samples)} samples, {len(samples) - len(todo)} already labelled, "
         f"{len(todo)} to do (k={k}, policy {pid}, protocol {proto[:12]}, dataset {ls.dataset_sha[:12]}, "
         f"judge {judge.identity})")
    store = engine.Store(con, "rollouts", ("policy", "protocol", "input_sha", "view", "idx"), ROLLOUT_COLUMNS, "text",
                         {"score": "score", "status": "judge_status", "reason": "judge_reason",
                          "prediction": "prediction", "judge": "verdict_by"},
                         judge_column="judge", judge_identity=judge.identity, stamp="judged")
    settings = engine.Settings(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, system_prompt=cfg.prompt,
                               direct_newline=cfg.direct_newline)

    def record(r: engine.Rollout, now) -> dict:
        (_, _, ish, view, idx), turn = r.job.key, r.turns[-1]
        return {"policy": pid, "protocol": proto, "input_sha": ish, "sample_id": r.job.sample["id"], "view": view,
                "idx": idx, "text": turn.text,
                "generated_tokens": turn.generated_tokens, "visual_tokens": turn.visual_tokens,
                "latency_s": turn.latency_s, "finish_reason": turn.finish_reason,
                "temperature": float(cfg.temperature), "created": now}

    group: dict[str, list[dict]] = {}  # the chunk's samples by input: samples with one input share its rollouts

    def jobs(chunk: list[dict]) -> list[engine.Job]:
        group.clear()
        out = []
        for s in chunk:
            s["input_sha"] = provenance.input_sha(s, engine.view_image)
            if s["input_sha"] not in group:
                out += [engine.Job((pid, proto, s["input_sha"], view, i), s, view) for view in VIEWS for i in range(k)]
            group.setdefault(s["input_sha"], []).append(s)
        return out

    written = Counter()  # the labels the chunk's verdicts gave (read by the progress loop)

    def relabel(chunk_jobs: list[engine.Job]) -> None:
        written.clear()
        written.update(write_sufficiency(con, ls, k, t, judge.identity, cfg.data,
                                         [s for g in group.values() for s in g]))

    t0 = time.perf_counter()
    with progress_bar("scoring", total=len(todo)) as bar:
        bar.advance(0, status=_status(counts))
        sample_chunks = engine.chunks(_with_images(cfg, todo), int(cfg.concurrency))
        async for res in engine.run((jobs(c) for c in sample_chunks), policy=policy, judge=judge, store=store,
                                    settings=settings, record=record, on_verdicts=relabel):
            ids = [s["id"] for g in group.values() for s in g]
            for r in res.failed:
                debug(f"policy failed on {r.job.sample['id']} {r.job.mode}: {r.error}")
            counts += written
            bar.advance(len(ids), status=_status(counts))
    total = label_counts(con, ls, [s["id"] for s in samples])
    return {"samples": len(samples), "scored": len(todo), "labels": dict(total), "protocol": proto,
            "dataset_sha": ls.dataset_sha,
            "elapsed_s": time.perf_counter() - t0}


def make_judge_for(cfg: ScoreConfig, con):
    # verdicts reach the judgments cache within a second: a kill loses at most that much paid work
    opts = cfg.judging.options(concurrency=cfg.concurrency * 2 * cfg.rollouts, flush_every=64, flush_seconds=1.0)
    return make_judge(cfg.judging.judge, db=con, **opts)


def run(cfg: ScoreConfig) -> dict:
    """`vt score-judge`: score per the config in its database (the command's one writer connection)."""
    samples = _load_samples(cfg)  # bad --data / --split fail before a model is loaded
    with writer(cfg.db_path(), "vt score-judge") as con:
        judge = make_judge_for(cfg, con)
        policy = make_policy(cfg.policy, base_url=cfg.policy_base_url, api_key_env=cfg.policy_api_key_env,
                             concurrency=cfg.concurrency * cfg.rollouts * 2, batch_size=cfg.batch_size,
                             device=cfg.device, seed=cfg.seed, timeout_s=cfg.policy_timeout)
        try:
            result = asyncio.run(score(cfg, con, policy, judge, samples))
            result["judge_stats"] = judge.stats()
        finally:
            judge.close()
            policy.close()
    lab = result["labels"]
    info(f"done: {result['samples']} samples ({result['scored']} scored now in {result['elapsed_s']:.1f}s): "
         + _status(Counter(lab)))
    js = result["judge_stats"] or {}
    if js.get("requests") or js.get("cache_hits"):
        info(f"judge: {js.get('requests', 0)} requests, {js.get('cache_hits', 0)} cache hits, "
             f"{js.get('errors', 0)} errors"
             + (f", judge_retry_share {js['judge_retry_share']:.4f} ({js['unread_replies']}/{js['replies']} replies "
                f"without a readable verdict)" if js.get("replies") else ""))
    if lab.get("incomplete"):
        info(f"{lab['incomplete']} samples incomplete (judge or policy errors): rerun the same command to finish them")
    return result


score_judge_command = command(ScoreConfig, run)
