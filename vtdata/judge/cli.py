"""`vt judge`: judge a JSONL file of predictions (vt lines or lmms-eval sample logs).

Input lines (vt): {"id", "question", "answer": str | "answers": [str], "prediction", optional
"answer_type" (open|number|mc|math|anls), optional "choices"}. lmms-eval `--log_samples` lines: {"doc_id",
"doc", "target", "arguments", "resps", "filtered_resps"} (see `lmms_fields`). Each output
line is the input plus `score` (1, 0, a fraction for anls/vqa, or null), `status` (ok|error),
`judge`, `reason` and `extracted` (the judged prediction). Malformed lines are reported with their
line numbers and skipped. Verdicts of the LLM judge are cached in DuckDB: a rerun pays only for
what is missing.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vtdata.config import command
from vtdata.console import VtError, console, info, progress_bar, quiet
from vtdata.judge import JudgeSpec


@dataclass
class JudgeConfig:
    """Judge predictions against gold answers with rule judges or an LLM judge (cached in DuckDB)."""

    input: Path = field(metadata={"argument": True})
    """JSONL: vt lines (question, answer|answers, prediction[, answer_type, choices]) or lmms-eval samples."""
    out: Path = field(metadata={"flags": ["-o"]})
    """Output JSONL: each input line + score, status, judge, reason, extracted."""
    judging: JudgeSpec = field(default_factory=JudgeSpec)
    """The judge: --judge, --judge-base-url, --judge-api-key-env, --judge-scope (vtdata.judge.JudgeSpec)."""
    db: Path | None = None
    """DuckDB file with the judgments cache (default: $VT_DB, else vt.duckdb beside INPUT)."""
    no_cache: bool = False
    """Neither read nor write the judgments cache."""
    concurrency: int = 64
    """Max in-flight judge requests."""
    rpm: float | None = None
    """Max judge requests per minute (default: unbounded)."""
    timeout: float = 60.0
    """Seconds per judge request."""
    max_attempts: int = 5
    """Attempts per item on 429/5xx/timeouts/unparseable verdicts."""
    temperature: float = 0.0
    """Judge sampling temperature (part of the cache identity)."""
    max_tokens: int = 512
    """Judge reply token budget."""
    system_prompt: str = "judge_system"
    """Judge system prompt: a shipped name or a file (paper Table 3 by default)."""
    user_prompt: str = "judge_user"
    """Judge user template: a shipped name or a file ({question}, {ground_truth}, {prediction})."""
    extract: Literal["auto", "tags", "none"] = "auto"
    """auto: the <answer> tag if the prediction has one, else the whole text | tags: a prediction without
    <answer> tag scores 0 | none: the prediction is the answer."""
    shortcut: bool = True
    """Score an 'open' prediction equal to a gold answer (normalised) without asking the LLM."""
    chunk: int = 1024
    """Items judged and written per chunk."""
    flush_every: int = 64
    """Cached verdicts per DuckDB write (a kill -9 loses at most these)."""

    def __post_init__(self):
        if self.extract not in ("auto", "tags", "none"):
            raise VtError("--extract must be auto, tags or none")
        if self.chunk < 1 or self.flush_every < 1:
            raise VtError("--chunk and --flush-every must be positive")


def _flat(value):
    while isinstance(value, list) and value:
        value = value[0]
    return value


QUESTION_KEYS = ("question", "query", "problem", "prompt", "text")  # where lmms-eval tasks keep it in `doc`


def lmms_fields(obj: dict) -> tuple:
    """(question, answers, prediction) of an lmms-eval sample line: the question is `doc`'s question
    field (question, query, problem, prompt, text), else the first string of `arguments` (the prompt the
    model got), else a legacy `input`; the gold is `target`, else `doc`'s answer(s); the prediction is
    the first filtered response, else the first raw one."""
    doc = obj.get("doc") if isinstance(obj.get("doc"), dict) else {}
    args = obj.get("arguments") if isinstance(obj.get("arguments"), list) else []
    question = next((doc[k] for k in QUESTION_KEYS if isinstance(doc.get(k), str)), None)
    if question is None:
        question = next((a for a in (_flat(x) for x in args) if isinstance(a, str)), obj.get("input"))
    answers = obj.get("target")
    if answers in (None, "", []):
        answers = doc.get("answers", doc.get("answer"))
    pred = _flat(obj.get("filtered_resps"))
    if pred is None:
        pred = _flat(obj.get("resps"))
    return question, answers, pred


def parse_line(obj: dict) -> dict:
    """A vt or lmms-eval line -> {question, answers, prediction, answer_type, choices}; ValueError if unusable."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if "prediction" in obj or "question" in obj:
        question, pred = obj.get("question"), obj.get("prediction")
        answers = obj.get("answers", obj.get("answer"))
    elif "filtered_resps" in obj or "doc_id" in obj:
        question, answers, pred = lmms_fields(obj)
    else:
        raise ValueError("neither a vt line (question, answer(s), prediction) nor an lmms-eval sample")
    if not isinstance(question, str):
        raise ValueError("missing question (string)")
    if isinstance(answers, (str, int, float)) and not isinstance(answers, bool):
        answers = [str(answers)]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, (str, int, float)) for a in answers):
        raise ValueError("missing answer: 'answer' (string) or 'answers' (non-empty list of strings)")
    if not isinstance(pred, str):
        raise ValueError("missing prediction (string)")
    atype = obj.get("answer_type", "open") or "open"
    from vtdata.judge import ANSWER_TYPES
    if atype not in ANSWER_TYPES:
        raise ValueError(f"answer_type {atype!r} is not one of {', '.join(ANSWER_TYPES)}")
    choices = obj.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise ValueError("choices must be a list of strings")
    return {"question": question, "answers": [str(a) for a in answers], "prediction": pred,
            "answer_type": atype, "choices": choices}


def read_input(path: Path) -> tuple[list[tuple[dict, dict]], list[tuple[int, str]]]:
    from vtdata.safeload import jsonl
    rows, bad = [], []
    for n, obj, err in jsonl(path, "input"):
        if err is not None:
            bad.append((n, err))
            continue
        try:
            rows.append((obj, parse_line(obj)))
        except ValueError as e:
            bad.append((n, str(e).split("\n")[0][:120]))
    return rows, bad


def build_judge(cfg: JudgeConfig, con):
    from vtdata.judge import make_judge
    spec = cfg.judging
    opts = spec.options()
    if not opts:
        return make_judge(spec.judge, shortcut=cfg.shortcut)
    return make_judge(spec.judge, db=con, concurrency=cfg.concurrency, rpm=cfg.rpm, timeout=cfg.timeout,
                      max_attempts=cfg.max_attempts, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                      system_prompt=cfg.system_prompt, user_prompt=cfg.user_prompt, shortcut=cfg.shortcut,
                      flush_every=cfg.flush_every, **opts)


def run(cfg: JudgeConfig) -> dict:
    from vtdata.db import default_db
    from vtdata.judge import JudgeItem
    rows, bad = read_input(cfg.input)
    for n, why in bad[:20]:
        info(f"skipped line {n}: {why}")
    if len(bad) > 20:
        info(f"... and {len(bad) - 20} more malformed lines skipped")
    if not rows:
        raise VtError(f"{cfg.input}: no judgeable line ({len(bad)} malformed)")
    uses_llm = cfg.judging.judge.startswith("openai:")
    db = None if (cfg.no_cache or not uses_llm) else (cfg.db or default_db(cfg.input))

    def items_of(chunk):
        out = []
        for _, r in chunk:
            raw = cfg.extract == "none" or (cfg.extract == "auto" and "<answer>" not in r["prediction"])
            out.append(JudgeItem(r["question"], r["answers"], r["prediction"], r["answer_type"], r["choices"], is_answer=raw))
        return out

    from contextlib import nullcontext

    from vtdata.db import writer
    from vtdata.console import redact
    from vtdata.outdir import atomic_file
    t0 = time.monotonic()
    scores, by_type = [], {}
    with atomic_file(cfg.out, inputs=(cfg.input, db)) as tmp, \
            (writer(db, "vt judge") if db else nullcontext(None)) as con:
        judge = build_judge(cfg, con)
        try:
            with progress_bar("judging", total=len(rows)) as bar, tmp.open("w", encoding="utf-8") as f:
                for start in range(0, len(rows), cfg.chunk):
                    chunk = rows[start:start + cfg.chunk]
                    verdicts = judge.judge(items_of(chunk), progress=lambda k: bar.advance(k))
                    for (obj, r), v in zip(chunk, verdicts):
                        obj = dict(obj)
                        obj.update(score=v.score, status=v.status, judge=v.judge, reason=redact(v.reason),
                                   extracted=v.prediction)
                        f.write(json.dumps(obj, ensure_ascii=False) + "\n")
                        if v.status == "ok":
                            scores.append(v.score)
                            by_type.setdefault(r["answer_type"], []).append(v.score)
                    s = judge.stats()
                    bar.advance(0, status=f"errors={s['errors']} requests={s['requests']} cache_hits={s['cache_hits']}")
        finally:
            stats = judge.stats()
            judge.close()
    stats.update(skipped_lines=len(bad), seconds=time.monotonic() - t0,
                 accuracy=(sum(scores) / len(rows)) if rows else None,  # an error counts as wrong
                 accuracy_ok=(sum(scores) / len(scores)) if scores else None,
                 by_type={k: sum(v) / len(v) for k, v in by_type.items()}, judge=judge.identity)
    _summary(stats, cfg)
    return stats


def _summary(s: dict, cfg: JudgeConfig) -> None:
    from rich.table import Table
    t = Table(title=f"vt judge: {cfg.out}", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    acc = "n/a" if s["accuracy"] is None else f"{100 * s['accuracy']:.2f} % of {s['items']}"
    if s["errors"]:  # errors count as wrong in the headline: a failing judge can only lower it
        acc += (f" ({s['errors']} judge errors, {100 * s['errors'] / max(s['items'], 1):.1f} %, counted wrong; "
                f"{100 * (s['accuracy_ok'] or 0):.2f} % of the {s['ok']} judged)")
    for k, v in [("judge", s["judge"]), ("accuracy (errors count wrong)", acc)] + \
                [(f"  accuracy {k}", f"{100 * v:.2f} %") for k, v in sorted(s["by_type"].items())] + \
                [("items", s["items"]), ("errors (score null)", s["errors"]),
                 ("format failures (no <answer>)", s["format_failures"]), ("malformed lines skipped", s["skipped_lines"]),
                 ("requests made", s["requests"]), ("cache hits", s["cache_hits"]),
                 ("rule verdicts", s["rule_verdicts"] + s["shortcut"]), ("tokens", s["tokens"]),
                 ("mean request latency", f"{s['mean_latency_s']:.3f} s"), ("wall time", f"{s['seconds']:.1f} s")] + \
                ([("judge_retry_share", retry_share(s))] if s["replies"] else []):
        t.add_row(k, str(v))
    if not quiet():
        console.print(t)
    else:
        console.print(f"accuracy {acc}; errors {s['errors']}; requests {s['requests']}; cache hits {s['cache_hits']}"
                      + (f"; judge_retry_share {retry_share(s)}" if s["replies"] else ""))


def retry_share(s: dict) -> str:
    """judge_retry_share as printed: the share of the judge's replies without a readable verdict (each
    paid again, or its item's error), with its counts."""
    return (f"{s['judge_retry_share']:.4f} ({s['unread_replies']}/{s['replies']} replies, "
            f"{s['miscopied_tags']} miscopied tags)")


judge_command = command(JudgeConfig, run)
