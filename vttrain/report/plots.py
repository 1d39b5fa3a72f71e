"""The plots of `vt report` (matplotlib, Agg backend): one PNG per function, written to the path given."""
from __future__ import annotations

from pathlib import Path

# panel title -> the keys `vt train` logs in metrics.jsonl (VtGRPOTrainer's metrics, TRL's reward, kl, entropy);
# a panel with several keys draws one line style per key (solid, dashed, dotted)
PANELS = {"reward": ("reward",), "resize ratio": ("resize_ratio",),
          "accuracy: direct vs resized": ("accuracy_direct", "accuracy_resized"),
          "format pass rate": ("format_pass_rate",), "penalty share": ("penalty_share",),
          "KL to the reference": ("kl",), "entropy": ("entropy",),
          "visual tokens per sample": ("visual_tokens_per_sample",), "judge error share": ("judge_error_share",)}
CURVES = [k for keys in PANELS.values() for k in keys]
STYLES = ("-", "--", ":")


def _curve(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # run and source names are text: `$x$` is not mathtext
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


def window(n: int) -> int:
    """The moving-average window for n logged steps: a tenth of the run, at least 1 (one step's batch holds
    only a few groups, so single steps are noisy)."""
    return max(1, n // 10)


def plot_training(runs: dict[str, list[dict]], path: Path) -> list[str]:
    """One panel per entry of PANELS, one colour per run: each step faint, the moving average (`window`)
    solid. Returns the metric keys found (for the caption)."""
    plt = _plt()
    cols = 3
    rows = -(-len(PANELS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    found = []
    for ax, (title, keys) in zip(axes.flat, PANELS.items()):
        any_pts = False
        for k, (run, rows_) in enumerate(runs.items()):
            for key, ls in zip(keys, STYLES):
                xs, ys = _curve(rows_, key)
                if not xs:
                    continue
                any_pts = True
                found.append(key)
                label = run if len(keys) == 1 else f"{run}: {key.split('_')[-1]}"
                ax.plot(xs, ys, color=f"C{k}", ls=ls, alpha=0.25, lw=0.8)
                ax.plot(*smooth(xs, ys, window(len(xs))), color=f"C{k}", ls=ls, lw=1.6, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if not any_pts:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
        elif len(runs) > 1 or len(keys) > 1:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(PANELS):]:
        ax.axis("off")
    fig.suptitle("Training curves (faint: each logged step; solid: moving average over a tenth of the run)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [k for k in CURVES if k in found]


CLASS_CURVES = {"needs_high": "resize_ratio_needs_high", "low_ok": "resize_ratio_low_ok"}


def smooth(xs: list[float], ys: list[float], window: int) -> tuple[list[float], list[float]]:
    """Trailing moving average over `window` logged points (a step's batch holds only a few groups)."""
    out = [sum(ys[max(0, i - window + 1):i + 1]) / len(ys[max(0, i - window + 1):i + 1]) for i in range(len(ys))]
    return xs, out


def source_curves(runs: dict[str, list[dict]]) -> dict[str, str]:
    """{source: metric key} of the per-source resize ratios the runs logged (`resize_ratio/<source>`)."""
    keys = sorted({k for rows in runs.values() for r in rows for k in r if k.startswith("resize_ratio/")})
    return {k.split("/", 1)[1]: k for k in keys}


def plot_resize_curves(runs: dict[str, list[dict]], path: Path, curves: dict[str, str], title: str) -> bool:
    """Resize ratio against step (moving average), one panel per run, one colour per curve (`curves`: label ->
    metric key). False when no run logged any of them."""
    plt = _plt()
    fig, axes = plt.subplots(1, max(1, len(runs)), figsize=(3.2 * max(1, len(runs)) + 2.4, 3.4), squeeze=False,
                             sharey=True)
    drawn = False
    for ax, (run, rows) in zip(axes[0], runs.items()):
        for k, (label, key) in enumerate(curves.items()):
            xs, ys = _curve(rows, key)
            if xs:
                drawn = True
                ax.plot(*smooth(xs, ys, window(len(xs))), color=f"C{k}", label=label)
        ax.set_title(run, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    if drawn:
        axes[0][0].set_ylabel("resize ratio (moving average)")
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def plot_tradeoff(points: list[dict], path: Path, group: str = "mode", what: str = "eval run") -> None:
    """Accuracy against visual tokens, a point per eval run; the legend groups points by `group` (the eval
    mode, or the tool setting), the marker is the mode."""
    plt = _plt()
    markers = {"full": "s", "low": "v", "think": "*"}
    fig, ax = plt.subplots(figsize=(5.5, 4))
    names: dict[tuple, list[str]] = {}
    for p in points:
        x = 100 * (p["visual_tokens_rel"] or 0)
        y = 100 * (p["accuracy"] or 0)
        ax.scatter([x], [y], marker=markers.get(p["mode"], "o"), s=90 if p["mode"] == "think" else 50,
                   label=p[group])
        names.setdefault((round(x, 1), round(y, 1)), []).append(p["run"])
    for (x, y), runs in names.items():  # runs on the same spot share one label
        ax.annotate(", ".join(runs), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, title=group, loc="center right")
    ax.set_xlabel("visual tokens used (% of full resolution)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, 130)
    ax.set_ylim(-3, 110)
    ax.grid(alpha=0.3)
    ax.set_title(f"Accuracy vs visual tokens (one point per {what})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MODE_COLORS = {"full": "#1a73e8", "low": "#8ab4f8", "think": "#e37400"}


def plot_sources(rows: list[dict], modes: list[str], path: Path) -> None:
    """The first page's plot: per source, accuracy of each eval mode (left) and the share of samples the
    think run resized, with its visual tokens as % of full (right). `rows`: report_summary.source_rows."""
    plt = _plt()
    sources = [r["source"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(sources) + 4), 3.6),
                                      gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(1, len(modes))
    for k, mode in enumerate(modes):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(rows))]
        left.bar(xs, [100 * (r[f"{mode}_acc"] or 0) for r in rows], width, label=mode, color=MODE_COLORS.get(mode))
    left.set_xticks(range(len(rows)), sources, rotation=20, ha="right")
    left.set_ylabel("accuracy (%)")
    left.set_ylim(0, 119)
    left.set_yticks(range(0, 101, 20))
    left.legend(fontsize=8, ncol=len(modes), loc="upper center", frameon=False)
    left.set_title("Accuracy per source and eval mode", fontsize=10)
    if "think" in modes:
        ratios = [100 * (r["think_resize"] or 0) for r in rows]
        bars = right.bar(range(len(rows)), ratios, 0.6, color=MODE_COLORS["think"])
        for b, r in zip(bars, rows):
            if r["think_tokens"] is not None:
                right.annotate(f"{100 * r['think_tokens']:.0f}% tokens", (b.get_x() + b.get_width() / 2, b.get_height()),
                               textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        right.set_xticks(range(len(rows)), sources, rotation=20, ha="right")
        right.set_ylim(0, 119)
        right.set_yticks(range(0, 101, 20))
        right.set_ylabel("samples resized (%)")
        right.set_title("think: resize ratio per source\n(label: visual tokens, % of full)", fontsize=9)
    else:
        right.axis("off")
        right.text(0.5, 0.5, "no think-mode eval run", ha="center", va="center", color="gray")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
