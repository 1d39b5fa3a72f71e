"""`vt report`: one static HTML page with PNG plots of every pipeline stage found in the database.

Sections (a stage that has not run shows "not run yet", never an error):
  1. scoring      low- vs high-res accuracy per source (`sufficiency`, else `rollouts`), label counts;
  2. curation     the curated balance per source and class (`curated`);
  3. training     reward, resize-call ratio and penalty share against step (`metrics.jsonl` of each
                  run directory given with --runs);
  4. evaluation   accuracy against visual tokens, one point per eval run and mode (`eval_runs`,
                  `eval_predictions`), with the Table-2-like comparison.
The page references its images by relative path, so the output directory can be copied or served.
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer

from vtdata.console import VtError, info
from vtdata.outdir import make_out_dir
from vtdata.tables import columns, existing
from vttrain.eval import compare, pct, summarize  # light: these import torch only inside functions

NOT_RUN = "not run yet"


@dataclass
class ReportConfig:
    """Options of `vt report`."""

    out: str = "report"
    """Output directory: index.html and plots/*.png."""
    db: Optional[str] = None
    """DuckDB file written by the pipeline (default ./vt.duckdb when it exists)."""
    runs: list[str] = field(default_factory=list)
    """Training run directories (each with the metrics.jsonl that `vt train` writes); default: every
    directory up to two levels below the database's folder that holds a metrics.jsonl."""
    title: str = "vt report"
    """Page title."""


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
    return _query(con, """
        SELECT a.policy, a.source, a.samples, a.low_accuracy AS low_acc, a.high_accuracy AS high_acc,
               coalesce(sum(l.samples) FILTER (WHERE l.label = 'low_ok'), 0) AS low_ok,
               coalesce(sum(l.samples) FILTER (WHERE l.label = 'needs_high'), 0) AS needs_high,
               coalesce(sum(l.samples) FILTER (WHERE l.label = 'ambiguous'), 0) AS ambiguous,
               coalesce(sum(l.samples) FILTER (WHERE l.label NOT IN ('low_ok', 'needs_high', 'ambiguous')), 0)
                   AS other
        FROM low_vs_high_accuracy a LEFT JOIN label_counts l USING (policy, source)
        GROUP BY ALL ORDER BY a.policy, a.source""")


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
            out.append({**total, "run": run, "mode": mode, "policy": policy})
    return out


# panel title -> the key `vt train` logs in metrics.jsonl (VtGRPOTrainer's metrics, TRL's reward)
CURVES = {"reward": "reward", "resize ratio": "resize_ratio", "penalty share": "penalty_share"}


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl" if run_dir.is_dir() else run_dir
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return rows


def _curve(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


# ---------------------------------------------------------------------------------------------- plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_scoring(rows: list[dict], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(rows) + 2), 3.4))
    xs = range(len(rows))
    low = [100 * (r["low_acc"] or 0) for r in rows]
    high = [100 * (r["high_acc"] or 0) for r in rows]
    ax.bar([x - 0.2 for x in xs], low, 0.4, label="low res (1/4 tokens)", color="#8ab4f8")
    ax.bar([x + 0.2 for x in xs], high, 0.4, label="high res", color="#1a73e8")
    several = len({r["policy"] for r in rows}) > 1
    ax.set_xticks(list(xs), [f"{r['source']}\n{r['policy']}" if several else r["source"] for r in rows],
                  rotation=20, ha="right")
    ax.set_ylabel("accuracy of scoring rollouts (%)")
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
    ax.set_title("Low vs high resolution accuracy per source")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curated(rows: list[dict], path: Path) -> None:
    plt = _plt()
    sources = sorted({r["source"] for r in rows})
    classes = sorted({r["class"] for r in rows})
    colors = {"low_ok": "#34a853", "needs_high": "#ea4335", "low_ok (filled)": "#a8dab5",
              "needs_high (filled)": "#f4b4ae"}
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(sources) + 2), 3.4))
    bottom = [0] * len(sources)
    for c in classes:
        vals = [sum(r["n"] for r in rows if r["source"] == s and r["class"] == c) for s in sources]
        ax.bar(sources, vals, bottom=bottom, label=c, color=colors.get(c))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("samples")
    ax.set_ylim(0, max(bottom or [1]) * 1.3)
    ax.set_title("Curated set: low_ok vs needs_high per source")
    ax.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(runs: dict[str, list[dict]], path: Path) -> list[str]:
    """One panel per curve; returns the metric keys found (for the caption)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    found = []
    for ax, (title, key) in zip(axes, CURVES.items()):
        any_pts = False
        for run, rows in runs.items():
            xs, ys = _curve(rows, key)
            if xs:
                any_pts = True
                found.append(key)
                ax.plot(xs, ys, marker="o", ms=3, label=run)
        ax.set_title(title)
        ax.set_xlabel("step")
        if not any_pts:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
        elif len(runs) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return sorted(set(found))


CLASS_CURVES = {"needs_high": "resize_ratio_needs_high", "low_ok": "resize_ratio_low_ok"}


def smooth(xs: list[float], ys: list[float], window: int) -> tuple[list[float], list[float]]:
    """Trailing moving average over `window` logged points (a step's batch holds only a few groups)."""
    out = [sum(ys[max(0, i - window + 1):i + 1]) / len(ys[max(0, i - window + 1):i + 1]) for i in range(len(ys))]
    return xs, out


def plot_resize_by_class(runs: dict[str, list[dict]], path: Path) -> bool:
    """The miniature's Fig. 3a: resize ratio on needs_high (solid) and low_ok (dashed) samples against
    step, one colour per run. False when no run logged the per-class ratios (uncurated data)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    drawn = False
    for k, (run, rows) in enumerate(runs.items()):
        for cls, key in CLASS_CURVES.items():
            xs, ys = _curve(rows, key)
            if not xs:
                continue
            drawn = True
            ax.plot(*smooth(xs, ys, max(1, len(xs) // 10)), color=f"C{k}", ls="-" if cls == "needs_high" else "--",
                    label=f"{run}: {cls}")
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel("resize ratio (moving average)")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title("Resize ratio per class (solid: needs_high, dashed: low_ok)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def plot_tradeoff(points: list[dict], path: Path) -> None:
    plt = _plt()
    markers = {"full": "s", "low": "v", "think": "*"}
    fig, ax = plt.subplots(figsize=(5.5, 4))
    names: dict[tuple, list[str]] = {}
    for p in points:
        x = 100 * (p["visual_tokens_rel"] or 0)
        y = 100 * (p["accuracy"] or 0)
        ax.scatter([x], [y], marker=markers.get(p["mode"], "o"), s=90 if p["mode"] == "think" else 50,
                   label=p["mode"])
        names.setdefault((round(x, 1), round(y, 1)), []).append(p["run"])
    for (x, y), runs in names.items():  # runs on the same spot share one label
        ax.annotate(", ".join(runs), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, title="mode", loc="center right")
    ax.set_xlabel("visual tokens used (% of full resolution)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, 130)
    ax.set_ylim(-3, 110)
    ax.grid(alpha=0.3)
    ax.set_title("Accuracy vs visual tokens (one point per eval run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- html

def _table(rows: list[dict], cols: list[tuple[str, str]], percent: set[str] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    body = []
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            if key in percent:
                v = pct(v)
            elif isinstance(v, float):
                v = f"{v:.2f}"
            cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .meta{color:#666;font-size:.9em} section{margin:2em 0}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0} table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} .missing{color:#a50;font-style:italic}"""


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
    from vtdata.db import connect
    from vtdata.db import default_db
    db = Path(cfg.db) if cfg.db else default_db()
    if not db.exists():  # an empty report would look like a pipeline that produced nothing
        raise VtError(f"{'--db ' + str(cfg.db) if cfg.db else f'no --db and no {db}'}: no such database "
                      f"(pass --db FILE or set $VT_DB; `vt demo` writes demo-out/vt.duckdb)")
    con = connect(db, read_only=True)
    out = Path(cfg.out)
    plots = make_out_dir(make_out_dir(out) / "plots")
    for old in plots.glob("*.png"):
        old.unlink()  # a stage that disappeared must not leave a stale plot referenced by nobody
    cfg.db = str(db) if con is not None else "(none)"
    if not cfg.runs and con is not None:
        base = db.resolve().parent
        cfg.runs = sorted(str(p.parent) for pat in ("*/metrics.jsonl", "*/*/metrics.jsonl") for p in base.glob(pat))
    try:
        sections = [_scoring(con, plots), _curation(con, plots), _training(cfg, plots), _evaluation(con, plots)]
    finally:
        if con is not None:
            con.close()
    page = out / "index.html"
    page.write_text(render_html(cfg, sections), encoding="utf-8")
    return page


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
    if plot_resize_by_class(runs, plots / "resize_by_class.png"):
        s.images.append("plots/resize_by_class.png")
    last = []
    for r, rows in runs.items():
        logged = [x for x in rows if any(isinstance(x.get(k), (int, float)) for k in keys)]
        last.append({"run": r, "steps": len(logged),
                     **{k: next((x[k] for x in reversed(logged) if isinstance(x.get(k), (int, float))), None)
                        for k in keys}})
    s.body = (f"<p>metrics: {html.escape(', '.join(keys) or 'none of reward / resize ratio / penalty share')}"
              f"</p>" + _table(last, [("run", "run"), ("steps", "logged steps")] + [(k, f"last {k}") for k in keys]))
    if all(not x.get(k) for x in last for k in keys):
        s.body += "<p><b>Every logged value is 0</b>: the policy earned no reward and never resized (an untrained model?).</p>"
    configs = [{"run": r, **run_config(Path(d))} for d in cfg.runs for r in [Path(d).name or d] if r in runs]
    if any(len(c) > 1 for c in configs):
        s.body += "<h3>Run configs</h3>" + _table(configs, [("run", "run")] + [(k, k) for k in CONFIG_KEYS])
    examples = "".join(example_rollouts(Path(d)) for d in cfg.runs)
    if examples:
        s.body += "<h3>Example rollouts (last logged step, one per group)</h3>" + examples
    return s


CONFIG_KEYS = ("model", "judge", "penalty_mode", "theta", "num_generations", "learning_rate", "beta", "max_steps",
               "seed")


def run_config(run_dir: Path) -> dict:
    """The settings that tell runs apart, from the resolved config `vt train` writes (vt_train_config.yaml)."""
    import yaml
    try:
        cfg = yaml.safe_load((run_dir / "vt_train_config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {k: cfg.get(k) for k in CONFIG_KEYS}


def example_rollouts(run_dir: Path, per_run: int = 4) -> str:
    """A few rollouts of a run's last logged step (rollouts.jsonl): both turns, verdict, penalty, reward."""
    path = run_dir / "rollouts.jsonl"
    if not path.is_file():
        return ""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    if not rows:
        return ""
    last = max(r.get("step", 0) for r in rows)
    seen, picked = set(), []
    for r in rows:
        if r.get("step") == last and r.get("group") not in seen:
            seen.add(r.get("group"))
            picked.append({"id": r.get("id"), "resized": r.get("used_high"), "score": r.get("score"),
                           "penalty": r.get("penalty"), "reward": r.get("reward"),
                           "turns": " ⏎ ".join(r.get("turns") or [])})
    picked = picked[:per_run]
    return (f"<p>{html.escape(run_dir.name)}, step {last}</p>"
            + _table(picked, [("id", "sample"), ("resized", "resized"), ("score", "score"), ("penalty", "penalty"),
                              ("reward", "reward"), ("turns", "assistant turns")]))


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
    s.body = intro + _table(points, [("run", "run"), ("mode", "mode"), ("samples", "samples"), ("accuracy", "acc %"),
                                     ("visual_tokens_rel", "visual tokens % of full"), ("resize_ratio", "resize %"),
                                     ("generated_tokens", "gen. tokens")],
                            percent={"accuracy", "visual_tokens_rel", "resize_ratio"})
    _, rows = compare(con, [p["run"] for p in points])
    if rows and rows[0]["accuracy"]:
        srcs = list(rows[0]["accuracy"])
        flat = [{"run": r["run"], "mode": r["mode"], **r["accuracy"], "avg": r["avg"], "rel": r["rel"]} for r in rows]
        s.body += ("<h3>Per source (accuracy %; rel. = mean per-source ratio to the first full run)</h3>"
                   + _table(flat, [("run", "run"), ("mode", "mode")] + [(x, x) for x in srcs]
                            + [("avg", "avg"), ("rel", "rel.")], percent=set(srcs) | {"avg", "rel"}))
    return s


def report_command(
    out: str = typer.Option("report", help="Output directory for index.html and plots/*.png."),
    db: Optional[str] = typer.Option(None, help="DuckDB file of the pipeline (default: $VT_DB, else ./vt.duckdb)."),
    runs: Optional[list[str]] = typer.Option(None, "--runs", help="Training run directory with metrics.jsonl (repeatable; default: those found beside the database)."),
    title: str = typer.Option("vt report", help="Page title."),
) -> None:
    """Write a static HTML report with plots: scoring, curation, training curves, eval trade-off.

    Example: `vt report --db demo-out/vt.duckdb --runs demo-out/train --out demo-out/report`."""
    page = build_report(ReportConfig(out=out, db=db, runs=list(runs or []), title=title))
    info(f"report: {page} (open it in a browser)")
