"""`vt report`: one static HTML page with PNG plots of every pipeline stage found in the database.

Sections (a stage that has not run shows "not run yet", never an error):
  1. scoring      low- vs high-res accuracy per source (`sufficiency`, else `rollouts`), label counts;
  2. curation     the curated balance per source and class (`curated`);
  3. training     reward, resize-call ratio and penalty share against step (`metrics.jsonl` of each
                  run directory given with --runs), each run's config, example rollouts;
  4. evaluation   accuracy against visual tokens, one point per eval run and mode (`eval_runs`,
                  `eval_predictions`), with the Table-2-like comparison and example rollouts.
The page references its plots by relative path, so the output directory can be copied or served; the
example rollouts' thumbnails are inline. Plots: report_plots.py; example rollouts: report_examples.py.
"""
from __future__ import annotations

import html
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vtdata.config import command
from vtdata.console import VtError, info
from vtdata.outdir import check_out, publish, staging
from vtdata.tables import columns, existing
from vttrain.report import tables as report_summary
from vttrain.report.examples import cell, eval_blocks, read_jsonl, train_block, train_config
from vttrain.report.plots import (CLASS_CURVES, plot_curated, plot_resize_curves, plot_scoring, plot_sources,
                                  plot_tradeoff, plot_training, source_curves, window)
from vttrain.report.summary import acc_cell, compare, pct, summarize

NOT_RUN = "not run yet"

@dataclass
class ReportConfig:
    """Write a static HTML report with plots: scoring, curation, training curves, eval trade-off.

    Example: `vt report --db demo-out/vt.duckdb --runs demo-out/train --out demo-out/report`."""

    out: str = field(default="report", metadata={"flags": ["-o"]})
    """Output directory: index.html and plots/*.png."""
    db: Optional[str] = None
    """DuckDB file written by the pipeline (default: $VT_DB, else ./vt.duckdb; none is an error)."""
    runs: list[str] = field(default_factory=list)
    """Training run directories (each with the metrics.jsonl that `vt train` writes; repeatable); default:
    every directory up to two levels below the database's folder that holds a metrics.jsonl."""
    title: str = "vt report"
    """Page title."""
    force: bool = False
    """Replace a non-empty --out that vt cannot prove it wrote (no .vt-output listing every path in it:
    a foreign directory, or a report of a vt older than that marker), deleting everything in it."""

@dataclass
class Section:
    title: str
    body: str = ""          # HTML
    images: list[str] = field(default_factory=list)
    missing: Optional[str] = None  # why the stage shows "not run yet"

# --------------------------------------------------------------------------------------- data access

def _query(con, sql: str, params=None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, v)) for v in cur.fetchall()]

def scoring_accuracy(con) -> list[dict]:
    """Per scoring policy and source: low- and high-view accuracy of the scoring rollouts and the label
    counts, from the views `vt score-judge` creates (`low_vs_high_accuracy`, `label_counts`)."""
    if not {"low_vs_high_accuracy", "label_counts"} <= existing(con):
        return []
    keyed = {"protocol", "dataset_sha"} <= columns(con, "label_counts")  # views of vt since issue 30
    rows = _query(con, f"""
        SELECT a.policy, {"a.protocol, a.dataset_sha," if keyed else ""} a.source, a.samples,
               a.low_accuracy AS low_acc, a.high_accuracy AS high_acc,
               coalesce(sum(l.samples) FILTER (WHERE l.label = 'low_ok'), 0) AS low_ok,
               coalesce(sum(l.samples) FILTER (WHERE l.label = 'needs_high'), 0) AS needs_high,
               coalesce(sum(l.samples) FILTER (WHERE l.label = 'ambiguous'), 0) AS ambiguous,
               coalesce(sum(l.samples) FILTER (WHERE l.label NOT IN ('low_ok', 'needs_high', 'ambiguous')), 0)
                   AS other
        FROM low_vs_high_accuracy a LEFT JOIN label_counts l
             USING (policy, {"protocol, dataset_sha, " if keyed else ""}source)
        GROUP BY ALL ORDER BY ALL""")
    sets = {(r["policy"], r.get("protocol"), r.get("dataset_sha")) for r in rows}
    for r in rows:  # several label sets of one policy: each named by its protocol and dataset hashes
        p, d = r.pop("protocol", None), r.pop("dataset_sha", None)
        if len(sets) > len({x[0] for x in sets}):
            r["policy"] = f"{r['policy']} [{p[:8]}/{d[:8]}]"
    return rows

def curated_balance(con) -> list[dict]:
    """Per curated set and source: samples per class (`use_tool` true = needs_high); classes topped up
    with ambiguous samples (`vt curate --fill-short`) are shown apart."""
    if "curated" not in existing(con):
        return []
    cols = columns(con, "curated")
    if not {"name", "source", "use_tool"} <= cols:
        return []
    filled = "CASE WHEN filled THEN ' (filled)' ELSE '' END" if "filled" in cols else "''"
    return _query(con, f"""SELECT name, source,
                                  CASE WHEN use_tool THEN 'needs_high' ELSE 'low_ok' END || {filled} AS class,
                                  count(*) AS n
                           FROM curated GROUP BY ALL ORDER BY 1, 2, 3""")

def eval_points(con) -> list[dict]:
    """One point per eval run with predictions: its mode and `vt eval`'s all-sources summary row."""
    if not {"eval_runs", "eval_predictions"} <= existing(con):
        return []
    out = []
    for run, mode, policy in con.execute("SELECT run, mode, policy FROM eval_runs ORDER BY started, run").fetchall():
        total = summarize(con, run)[-1]
        if total["samples"]:
            out.append({**total, "run": run, "mode": mode, "policy": policy, "acc": acc_cell(total)})
    return out

def read_metrics(run_dir: Path) -> list[dict]:
    """The lines of a run's metrics.jsonl (or of the file given); a line cut by a crash is skipped."""
    return read_jsonl(run_dir / "metrics.jsonl" if run_dir.is_dir() else run_dir)

# ----------------------------------------------------------------------------------------------- html

def _table(rows: list[dict], cols: list[tuple[str, str]], percent: set[str] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    body = []
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            cells.append(f"<td>{html.escape(pct(v) if key in percent else cell(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .meta{color:#666;font-size:.9em} section{margin:2em 0}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0} table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} .missing{color:#a50;font-style:italic}
img.thumb{margin:0 .3em 0 0;vertical-align:top} .examples td{text-align:left;vertical-align:top}
.turn{font-family:monospace;font-size:.85em;white-space:pre-wrap;margin-bottom:.3em}"""

def render_html(cfg: ReportConfig, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(cfg.title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(cfg.title)}</h1>",
             f"<p class='meta'>database: {html.escape(str(cfg.db))} &middot; generated "
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p>"]
    for s in sections:
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>")
        if s.missing:
            parts.append(f"<p class='missing'>{NOT_RUN}: {html.escape(s.missing)}</p>")
        for img in s.images:
            parts.append(f"<img src='{html.escape(img)}' alt='{html.escape(s.title)}'>")
        parts.append(s.body + "</section>")
    parts.append("</body></html>")
    return "\n".join(parts)

# ------------------------------------------------------------------------------------------- building

def build_report(cfg: ReportConfig) -> Path:
    """Write OUT/index.html and OUT/plots/*.png; returns the HTML path."""
    from vtdata.db import default_db
    db = Path(cfg.db) if cfg.db else default_db()
    if not db.exists():  # an empty report would look like a pipeline that produced nothing
        raise VtError(f"{'--db ' + str(cfg.db) if cfg.db else f'no --db and no {db}'}: no such database "
                      f"(pass --db FILE or set $VT_DB; `vt demo` writes demo-out/vt.duckdb)")
    if not cfg.runs:
        base = db.resolve().parent
        cfg.runs = sorted(str(p.parent) for pat in ("*/metrics.jsonl", "*/*/metrics.jsonl") for p in base.glob(pat))
    out = check_out(Path(cfg.out), "index.html", "a vt report", keep=(db, *cfg.runs), force=cfg.force)
    with staging(out) as tmp:  # written afresh: a stage that disappeared leaves no stale plot
        _write(cfg, db, tmp)
        publish(tmp, out)
    return out / "index.html"


def _write(cfg: ReportConfig, db: Path, out: Path) -> None:
    from vtdata.db import connect
    con = connect(db, read_only=True)
    plots = out / "plots"
    plots.mkdir()
    cfg.db = str(db) if con is not None else "(none)"
    if not cfg.runs and con is not None:
        base = db.resolve().parent
        cfg.runs = sorted(str(p.parent) for pat in ("*/metrics.jsonl", "*/*/metrics.jsonl") for p in base.glob(pat))
    try:
        sections = [_summary(cfg, con, plots), _scoring(con, plots), _curation(con, plots), _training(cfg, plots),
                    _evaluation(con, plots)]
        sections += [t for t in [_tool_settings(con, plots)] if t is not None]  # only when a run used zoom
    finally:
        if con is not None:
            con.close()
    (out / "index.html").write_text(render_html(cfg, sections), encoding="utf-8")

def _summary(cfg: ReportConfig, con, plots: Path) -> Section:
    s = Section("Summary: per source, full vs low vs think")
    picks = report_summary.latest_runs(con) if con is not None and {"eval_runs", "eval_predictions"} <= existing(con) else {}
    if not picks:
        s.missing = "no eval runs (run `vt eval --mode full|low|think`)"
        return s
    modes = [m for m in report_summary.MODES if m in picks]
    rows = report_summary.source_rows(con, picks)
    plot_sources(rows, modes, plots / "sources.png")
    s.images.append("plots/sources.png")
    cols, percent = report_summary.columns(modes)
    s.body = ("<p>The latest eval run of each mode. <i>full</i> and <i>low</i> answer from the high and the "
              "low view (25 % of the visual tokens); <i>think</i> starts from the low view and calls "
              "<code>resize_image</code> when it needs the high one, so its token cost is 25 % plus the high "
              "view of the resized share. Accuracy counts every sample, a judge error as wrong (errors can only "
              "lower it; <code>vt compare</code> shows their share apart).</p>"
              + report_summary.models_html(picks, cfg.runs) + _table(rows, cols, percent=percent))
    return s

def _scoring(con, plots: Path) -> Section:
    s = Section("1. Scoring: does the low-res view suffice?")
    rows = scoring_accuracy(con) if con is not None else []
    if not rows:
        s.missing = "no scoring results in the database (run `vt score-judge`)"
        return s
    plot_scoring(rows, plots / "scoring.png")
    s.images.append("plots/scoring.png")
    cols = [("policy", "scoring policy"), ("source", "source"), ("samples", "samples"), ("low_acc", "low acc %"),
            ("high_acc", "high acc %"), ("low_ok", "low_ok"), ("needs_high", "needs_high"),
            ("ambiguous", "ambiguous"), ("other", "incomplete/other")]
    s.body = ("<p>Each sample was answered k times on its low-res view (1/4 of the visual tokens) and k times "
              "on its high-res view (<code>vt score-judge</code>). Where the bars match, the low view suffices; where the "
              "high bar towers, the source needs resolution (the paper's OCR-heavy sets).</p>"
              + _table(rows, cols, percent={"low_acc", "high_acc"}))
    return s

def _curation(con, plots: Path) -> Section:
    s = Section("2. Curation: balance of the training set")
    rows = curated_balance(con) if con is not None else []
    if not rows:
        s.missing = "no `curated` table (run `vt curate`)"
        return s
    plot_curated(rows, plots / "curated.png")
    s.images.append("plots/curated.png")
    s.body = ("<p>The training set of <code>vt curate</code>: <code>low_ok</code> samples (answered at low res) teach the "
              "model to answer directly, <code>needs_high</code> samples to call the resize tool. "
              "\"(filled)\" marks ambiguous samples that topped up a short class.</p>"
              + _table(rows, [("name", "set"), ("source", "source"), ("class", "class"), ("n", "samples")]))
    return s

def _training(cfg: ReportConfig, plots: Path) -> Section:
    s = Section("3. Training curves")
    runs = {}
    for d in cfg.runs:
        rows = read_metrics(Path(d))
        if rows:
            runs[Path(d).name or d] = rows
    if not runs:
        given = ", ".join(cfg.runs) if cfg.runs else "none given or found beside the database (pass --runs RUN_DIR)"
        s.missing = f"no metrics.jsonl in the run directories: {given}"
        return s
    keys = plot_training(runs, plots / "training.png")
    s.images.append("plots/training.png")
    if plot_resize_curves(runs, plots / "resize_by_source.png", source_curves(runs),
                          "Resize ratio per data source"):
        s.images.append("plots/resize_by_source.png")
    if plot_resize_curves(runs, plots / "resize_by_class.png", CLASS_CURVES,
                          "Resize ratio per curated class (score-judge's label)"):
        s.images.append("plots/resize_by_class.png")
    for d in cfg.runs:  # bench/resolvability.py's curve, written beside a run
        if (Path(d) / "resolvability.png").is_file():
            name = f"resolvability-{Path(d).name}.png"
            shutil.copyfile(Path(d) / "resolvability.png", plots / name)
            s.images.append(f"plots/{name}")
    shown = [k for k in TABLE_KEYS if k in keys]
    ends = []
    for r, rows in runs.items():
        logged = [x for x in rows if any(isinstance(x.get(k), (int, float)) for k in keys)]
        w = window(len(logged))
        end = {"run": r, "steps": len(logged), "window": w}
        for k in shown:
            vals = [x[k] for x in logged[-w:] if isinstance(x.get(k), (int, float))]
            end[k] = sum(vals) / len(vals) if vals else None
        ends.append(end)
    s.body = (f"<p>metrics logged: {html.escape(', '.join(keys) or 'none of the curves')}. The table gives "
              "each run's mean over its last logged steps (the same window as the curves' moving average), "
              "not one noisy step.</p>"
              + _table(ends, [("run", "run"), ("steps", "logged steps"), ("window", "mean of last")]
                       + [(k, k) for k in shown]))
    if all(not x.get(k) for x in ends for k in ("reward", "resize_ratio", "penalty_share")):
        s.body += "<p><b>Every logged value is 0</b>: the policy earned no reward and never resized (an untrained model?).</p>"
    s.body += report_summary.models_html({}, [d for d in cfg.runs if (Path(d).name or d) in runs])
    configs = [{"run": r, **run_config(Path(d))} for d in cfg.runs for r in [Path(d).name or d] if r in runs]
    if any(len(c) > 1 for c in configs):
        s.body += "<h3>Run configs</h3>" + _table(configs, [("run", "run")] + [(k, k) for k in CONFIG_KEYS])
    examples = "".join(train_block(Path(d)) for d in cfg.runs)
    if examples:
        s.body += "<h3>Example rollouts (last logged step, one per group)</h3>" + examples
    return s

TABLE_KEYS = ("reward", "resize_ratio", "accuracy_direct", "accuracy_resized", "format_pass_rate", "penalty_share",
              "kl", "entropy", "visual_tokens_per_sample", "judge_error_share")
"""The metrics of the training table (those a run logged), each the mean of its last logged steps."""
CONFIG_KEYS = ("model", "judge", "penalty_mode", "theta", "num_generations", "learning_rate", "beta", "max_steps",
               "seed")

def run_config(run_dir: Path) -> dict:
    """The settings that tell runs apart, from the resolved config `vt train` writes (vt_train_config.yaml)."""
    cfg = train_config(run_dir)
    return {k: cfg.get(k) for k in CONFIG_KEYS} if cfg else {}

def _evaluation(con, plots: Path) -> Section:
    s = Section("4. Evaluation: accuracy vs visual tokens")
    points = eval_points(con) if con is not None else []
    if not points:
        s.missing = "no `eval_runs` (run `vt eval`)"
        return s
    plot_tradeoff(points, plots / "tradeoff.png")
    s.images.append("plots/tradeoff.png")
    intro = ("<p>Up and to the left is better: VisionThink aims at full-res accuracy (top) with far fewer "
             "visual tokens than full (left of 100 %); low is exactly 25 %, think is low plus high for the "
             "samples where the model asked for the resize.</p>")
    s.body = intro + _table(points, [("run", "run"), ("mode", "mode"), ("policy", "model"), ("samples", "samples"),
                                     ("acc", "acc %"), ("visual_tokens_rel", "visual tokens % of full"),
                                     ("resize_ratio", "resize %"), ("generated_tokens", "gen. tokens"),
                                     ("judge_error_share", "judge err %")],
                            percent={"visual_tokens_rel", "resize_ratio", "judge_error_share"})
    _, rows = compare(con, [p["run"] for p in points])
    if rows and rows[0]["accuracy"]:
        srcs = list(rows[0]["accuracy"])
        flat = [{"run": r["run"], "mode": r["mode"], **r["accuracy"], "avg": r["avg"], "rel": r["rel"],
                 **{f"resize {x}": v for x, v in r["resize_by_source"].items()}, "resize": r["resize_ratio"],
                 "judge_error_share": r["judge_error_share"]} for r in rows]
        resize = [f"resize {x}" for x in srcs]
        s.body += ("<h3>Per source (accuracy % and resize %; rel. = mean per-source accuracy ratio to the first "
                   "full run)</h3>"
                   + _table(flat, [("run", "run"), ("mode", "mode")] + [(x, f"acc {x}") for x in srcs]
                            + [("avg", "acc avg"), ("rel", "rel.")] + [(x, x + " %") for x in resize]
                            + [("resize", "resize all %"), ("judge_error_share", "judge err %")],
                            percent=set(srcs) | set(resize) | {"avg", "rel", "resize", "judge_error_share"}))
    examples = eval_blocks(con)
    if examples:
        s.body += "<h3>Example rollouts (think mode: resized and direct answers)</h3>" + examples
    return s

def _tool_settings(con, plots: Path) -> Section | None:
    """Accuracy vs visual tokens with one point per tool setting (`vt eval --tools`), when any think run used a
    tool other than resize (vtdata/protocol/tools.py); full/low runs are the reference points."""
    points = eval_points(con) if con is not None else []
    tools = {r: json.loads(c or "{}").get("identity", {}).get("tools", "resize")
             for r, c in con.execute("SELECT run, config FROM eval_runs").fetchall()} if points else {}
    if not any(t != "resize" for t in tools.values()):
        return None
    s = Section("5. Tools: accuracy vs visual tokens per tool setting")
    for p in points:
        p["tools"] = tools.get(p["run"], "resize") if p["mode"] == "think" else p["mode"]
    plot_tradeoff(points, plots / "tools.png", group="tools", what="tool setting")
    s.images.append("plots/tools.png")
    s.body = _table(points, [("run", "run"), ("tools", "tools"), ("accuracy", "acc %"),
                             ("visual_tokens_rel", "visual tokens % of full"), ("resize_ratio", "resize %"),
                             ("zoom_ratio", "zoom %"), ("unanswered", "unanswered")],
                    percent={"accuracy", "visual_tokens_rel", "resize_ratio", "zoom_ratio"})
    return s

def run(cfg: ReportConfig) -> Path:
    page = build_report(cfg)
    info(f"report: {page} (open it in a browser)")
    return page

report_command = command(ReportConfig, run)
