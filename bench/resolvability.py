"""Beyond the paper: the resolvability curve. Does the trained model resize exactly where the low view has
lost what the answer needs, per image rather than per scale label?

Draws box-pattern images at several stripe periods with random phase (period 2: always erased at the low view;
4: kept or lost depending on the phase; 6 and 8: kept), measures per image the contrast left in the box at the
low view (`sufficiency.low_view_contrast`: grey-level spread inside the box of vt's LANCZOS half-size view),
and computes the model's exact probability of calling the tool on it (`row_call_probability`: the agent prompt of
`vt eval --mode think`, summed over turn 1's think sentences). Prints P(call) per contrast bin and per period,
and the same for the warm start (the baseline, measured in the same run), and writes a scatter plot beside the
run (RUN/resolvability.png; `vt report --runs RUN` shows it).

    python bench/resolvability.py science-out/train-paper [--warm science-out/model] [--n 60]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

BINS = [(0, 2), (2, 10), (10, 30), (30, 60), (60, 1000)]


def probe(model_dir: Path, periods: list[int], n: int) -> list[dict]:
    from vtdata.resolution import view
    from vtdata.sources import sufficiency
    from vttrain.models.build import load
    from vttrain.models.warmstart_check import row_call_probability
    model, processor = load(model_dir, device="cpu")
    rows = []
    for p in periods:
        for i in range(n):
            s = sufficiency.sample("ocr", "resolvability", i, 112, p)
            data = sufficiency.render(s["spec"])
            rows.append({"task": "ocr", "question": s["question"], "image": view(data, (56, 56)), "period": p,
                         "phase": s["spec"]["phase"], "contrast": sufficiency.low_view_contrast(data, s["spec"])})
    for r, (prob, *_) in zip(rows, row_call_probability(model, processor, rows)):
        r["p_call"] = prob
    return rows


def table(rows: list[dict], name: str) -> list[str]:
    out = [f"{name}: P(call) by low-view contrast (grey-level spread in the box)"]
    for lo, hi in BINS:
        sel = [r["p_call"] for r in rows if lo <= r["contrast"] < hi]
        if sel:
            out.append(f"  contrast {lo:>3}-{hi:<4} n={len(sel):>3}  P(call) {sum(sel) / len(sel):.3f}")
    for p in sorted({r["period"] for r in rows}):
        sel = [r for r in rows if r["period"] == p]
        out.append(f"  period {p}: n={len(sel)}  P(call) {sum(r['p_call'] for r in sel) / len(sel):.3f}  "
                   f"(contrast {min(r['contrast'] for r in sel):.1f}-{max(r['contrast'] for r in sel):.1f})")
    return out


def plot(rows: list[dict], warm: list[dict] | None, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k, p in enumerate(sorted({r["period"] for r in rows})):
        sel = [r for r in rows if r["period"] == p]
        ax.scatter([r["contrast"] + 0.5 for r in sel], [r["p_call"] for r in sel], s=14, color=f"C{k}",
                   label=f"trained, period {p} px")
    if warm:
        ax.scatter([r["contrast"] + 0.5 for r in warm], [r["p_call"] for r in warm], s=8, color="grey", marker="x",
                   label="warm start")
    ax.set_xscale("log")
    ax.set_xlabel("contrast left in the box at the low view (+0.5, log)")
    ax.set_ylabel("P(call resize_image)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title("Resize probability per image vs what the low view kept", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a GRPO run directory (its final/ model is probed)")
    ap.add_argument("--warm", type=Path, help="the warm start (default: the model named in the run's config)")
    ap.add_argument("--n", type=int, default=60, help="images per period")
    ap.add_argument("--periods", type=int, nargs="+", default=[2, 4, 6, 8])
    a = ap.parse_args()
    warm_dir = a.warm
    if warm_dir is None:
        cfg = a.run / "vt_train_config.yaml"
        warm_dir = Path(yaml.safe_load(cfg.read_text())["model"]) if cfg.exists() else None
    rows = probe(a.run / "final", a.periods, a.n)
    warm = probe(warm_dir, a.periods, a.n) if warm_dir else None
    print("\n".join(table(rows, f"trained ({a.run / 'final'})")))
    if warm:
        print("\n".join(table(warm, f"warm start, the baseline ({warm_dir})")))
    plot(rows, warm, a.run / "resolvability.png")
    print(f"plot: {a.run / 'resolvability.png'}")


if __name__ == "__main__":
    main()
