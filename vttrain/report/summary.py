"""Eval run summaries, the public API that `vt eval`, `vt compare`, `vt report` and `vt demo` read: per-source
accuracy / resize ratio / visual tokens of a run (`summarize`), the Table-2 comparison of runs (`compare`),
and the run's files for other tools: an lmms-eval `--log_samples` JSONL (`export_jsonl`) and the aggregate
in lmms-eval's results layout (`write_results_json`). Reads the `eval_runs` / `eval_predictions` tables.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from vtdata import __version__, tables
from vtdata.config import command
from vtdata.console import VtError, results_console
from vtdata.db import connect, default_db


def _sha(x) -> str:
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
                      "resized", "zoomed", "visual_tokens", "low_visual_tokens", "full_visual_tokens",
                      "generated_tokens", "latency_s", "wall_s"):
                rec[k] = r.get(k)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)
    write_results_json(con, run, cfg, path.with_name(f"{run}_results.json"))
    return path


def write_results_json(con, run: str, cfg: dict, path: Path) -> Path:
    """The aggregate in lmms-eval's results layout: `results[task]["metric,filter"]`, one task per run
    (`<run>`) and per source (`<run>/<source>`), plus `configs`, `n-samples`, `higher_is_better`."""
    metrics = ("accuracy", "resize_ratio", "visual_tokens_rel", "visual_tokens", "generated_tokens", "judge_errors",
               "judge_error_share")
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
       coalesce(sum(score) FILTER (WHERE status = 'ok'), 0)::DOUBLE / count(*) AS accuracy,
       avg(score) FILTER (WHERE status = 'ok') AS accuracy_ok,
       count(*) FILTER (WHERE status IS DISTINCT FROM 'ok') AS judge_errors,
       count(*) FILTER (WHERE status IS DISTINCT FROM 'ok')::DOUBLE / count(*) AS judge_error_share,
       avg(CASE WHEN resized THEN 1.0 ELSE 0.0 END) AS resize_ratio,
       {zoom} AS zoom_ratio,
       count(*) FILTER (WHERE contains(response, '<tool_call>')) AS unanswered,
       sum(visual_tokens)::DOUBLE / nullif(sum(full_visual_tokens), 0) AS visual_tokens_rel,
       avg(visual_tokens) AS visual_tokens,
       avg(generated_tokens) AS generated_tokens,
       sum(wall_s) AS wall_s
FROM eval_predictions WHERE run = ? {group}
"""


def summarize(con, run: str, by: str = "source, task") -> list[dict]:
    """Per (source, task) rows (per source with by="source"), then an `all` row: accuracy over every sample
    (a judge error counts as wrong: errors can only lower it, never raise it; `accuracy_ok` is the
    accuracy over judged-ok samples), resize and zoom ratios, samples left without an answer (still calling at the turn limit),
    visual tokens used relative to the full-res view, mean generated tokens, summed generation time."""
    zoom = "avg(CASE WHEN zoomed THEN 1.0 ELSE 0.0 END)" if "zoomed" in tables.columns(con, "eval_predictions") \
        else "0.0::DOUBLE"  # a database written before the zoom tool: no zoom
    total = "'all' AS source" + (", '' AS task" if "task" in by else "")
    out = []
    for keys, group in ((by, f"GROUP BY {by} ORDER BY {by}"), (total, "")):
        cur = con.execute(SUMMARY_SQL.format(keys=keys, group=group, zoom=zoom), [run])
        names = [d[0] for d in cur.description]
        out += [dict(zip(names, v)) for v in cur.fetchall()]
    return out


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def acc_cell(row: dict | None) -> str:
    """Accuracy as printed everywhere (eval, compare, report): judge errors count as wrong in it, and their
    share is shown when there are any, so a run whose judge failed never passes for a clean one."""
    row = row or {}
    share = row.get("judge_error_share")
    return pct(row.get("accuracy")) + (f" ({pct(share)}% judge err. counted wrong)" if share else "")


def summary_table(run: str, summary: list[dict]):
    t = Table(title=f"vt eval {run} (tokens% = visual tokens used / full-res tokens)")
    t.add_column("source", no_wrap=True)
    t.add_column("task", no_wrap=True)
    for c in ("n", "acc%", "resize%", "zoom%", "tokens%", "gen tok", "time s", "judge err"):
        t.add_column(c, justify="right")
    for r in summary:
        t.add_row(r["source"], r["task"], str(r["samples"]), acc_cell(r), pct(r["resize_ratio"]),
                  pct(r.get("zoom_ratio")),
                  pct(r["visual_tokens_rel"]), f"{r['generated_tokens'] or 0:.1f}", f"{r['wall_s'] or 0:.1f}",
                  str(r["judge_errors"]))
    return t


def compare(con, runs: list[str]):
    """Table 2 of the paper for the given runs: accuracy per source, the average accuracy relative
    to the first `full` run (or the first run), resize ratio (overall and per source, as the paper's
    resize-call shares) and visual tokens relative to full."""
    if not {"eval_runs", "eval_predictions"} <= tables.existing(con):
        raise VtError("no eval runs in this database yet (run `vt eval` first)")
    known = {r[0]: r[1] for r in con.execute("SELECT run, mode FROM eval_runs").fetchall()}
    missing = [r for r in runs if r not in known]
    if missing:
        raise VtError(f"unknown eval run(s): {', '.join(missing)}; known: {', '.join(sorted(known)) or 'none'}")
    per = {r: {s["source"]: s for s in summarize(con, r)} for r in runs}
    sources = sorted({s for r in runs for s in per[r] if s != "all"})
    ref = next((r for r in runs if known[r] == "full"), runs[0])
    t = Table(title="vt compare (accuracy %; rel. = mean over sources of acc / acc of "
                    f"{ref})")
    t.add_column("run")
    t.add_column("mode")
    for s in sources:
        t.add_column(s, justify="right")
    for c in ("avg", "rel.", "resize %", *[f"resize % {s}" for s in sources], "vis. tokens %", "judge err %"):
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
               "visual_tokens_rel": allr["visual_tokens_rel"], "judge_error_share": allr["judge_error_share"]}
        rows.append(row)
        t.add_row(r, known[r], *[acc_cell(per[r].get(s)) for s in sources], acc_cell(allr), pct(row["rel"]),
                  pct(row["resize_ratio"]), *[pct(row["resize_by_source"][s]) for s in sources],
                  pct(row["visual_tokens_rel"]), pct(row["judge_error_share"]))
    return t, rows


@dataclass
class CompareConfig:
    """Compare finished eval runs, Table 2 style: accuracy per source, relative to the first `full` run,
    resize ratio (overall and per source) and visual tokens relative to full."""
    runs: list[str] = field(metadata={"argument": True})
    """The eval run names to compare."""
    db: Path | None = None
    """DuckDB file (default: $VT_DB, else ./vt.duckdb)."""

    def __post_init__(self) -> None:
        if not self.runs:
            raise VtError("give at least one run name: vt compare RUN RUN ...")


def run(cfg: CompareConfig) -> list[dict]:
    """`vt compare`: print the comparison table; returns its rows."""
    con = connect(Path(cfg.db) if cfg.db else default_db(), read_only=True)
    try:
        table, rows = compare(con, list(cfg.runs))
    finally:
        con.close()
    results_console().print(table)
    return rows


compare_command = command(CompareConfig, run)
