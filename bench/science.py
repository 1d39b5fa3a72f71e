"""The miniature's figures (issue: "the method, shown learning"), for several GRPO seeds.

For each seed: `vt demo --science --seed S --out OUT/seed-S` (warm start, cached, shared by all seeds ->
score-judge -> curate -> GRPO with penalty_mode paper / none / always -> eval on the held-out split), then
per class (general = mini-general, detail = mini-detail) the think-mode resize ratio and accuracy of each
penalty mode against the warm start's full-resolution accuracy (the baseline measured in the same run),
and the visual tokens relative to full. Targets (paper mode): resize >= 0.8 on detail, <= 0.2 on
general; think accuracy >= 0.95 x full on detail and >= full - 0.02 on general; tokens <= 60 % of full.

    python bench/science.py [--seeds 0 1] [--out bench-science] [-- extra vt demo flags]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CLASSES = {"general": "mini-general", "detail": "mini-detail"}


def run_seed(out: Path, seed: int, extra: list[str]) -> float:
    t0 = time.time()
    cmd = [sys.executable, "-m", "vt", "-q", "demo", "--science", "--out", str(out), "--seed", str(seed), *extra]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    return time.time() - t0


def figures(db: Path, runs: list[str] | None = None) -> dict:
    """{run: {class or 'all': summary row}} of the eval runs (default: every run in the database)."""
    from vtdata.db import connect
    from vttrain.summary import summarize
    con = connect(db, read_only=True)
    try:
        if runs is None:
            runs = [r[0] for r in con.execute("SELECT DISTINCT run FROM eval_predictions ORDER BY run").fetchall()]
        out = {}
        for run in runs:
            rows = {r["source"]: r for r in summarize(con, run)}
            out[run] = {c: rows.get(src) for c, src in CLASSES.items()} | {"all": rows.get("all")}
        return out
    finally:
        con.close()


def check(fig: dict) -> list[str]:
    """The issue's targets for the paper-mode run, as 'ok'/'MISS' lines."""
    full, think = fig["science-full"], fig["science-think-paper"]
    tests = [("detail resize >= 0.8", think["detail"]["resize_ratio"], 0.8, ">="),
             ("general resize <= 0.2", think["general"]["resize_ratio"], 0.2, "<="),
             ("detail acc >= 0.95 x full", think["detail"]["accuracy"], 0.95 * full["detail"]["accuracy"], ">="),
             ("general acc >= full - 0.02", think["general"]["accuracy"], full["general"]["accuracy"] - 0.02, ">="),
             ("visual tokens <= 60 % of full", think["all"]["visual_tokens_rel"], 0.6, "<=")]
    lines = []
    for name, value, bound, op in tests:
        ok = value is not None and (value >= bound if op == ">=" else value <= bound)
        lines.append(f"  {'ok  ' if ok else 'MISS'} {name}: {value:.3f} (bound {bound:.3f})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="bench-science")
    ap.add_argument("extra", nargs="*", help="extra `vt demo` flags (after --)")
    a = ap.parse_args()
    for seed in a.seeds:
        out = Path(a.out) / f"seed-{seed}"
        took = run_seed(out, seed, a.extra)
        fig = figures(out / "vt.duckdb")
        stages = {p.stem: json.loads(p.read_text())["seconds"] for p in (out / ".demo").glob("*.json")}
        print(f"\nseed {seed}: vt demo --science in {took / 60:.1f} min wall ({out}); its stages took "
              f"{sum(stages.values()) / 60:.1f} min when they ran (" + ", ".join(f"{k} {v:.0f} s" for k, v in
                                                                              sorted(stages.items())) + ")")
        print(f"  {'run':<22} {'class':<8} {'accuracy':>8} {'resize':>7} {'tokens/full':>11}")
        for run, per in fig.items():
            for cls in ("general", "detail", "all"):
                r = per.get(cls)
                if r:
                    print(f"  {run:<22} {cls:<8} {r['accuracy']:>8.3f} {r['resize_ratio']:>7.3f} "
                          f"{r['visual_tokens_rel']:>11.3f}")
        full = fig["science-full"]
        think = fig["science-think-paper"]
        print(f"  think(paper) / full: accuracy {think['all']['accuracy'] / max(full['all']['accuracy'], 1e-9):.3f}x, "
              f"visual tokens {think['all']['visual_tokens_rel'] / full['all']['visual_tokens_rel']:.3f}x")
        print("\n".join(check(fig)))


if __name__ == "__main__":
    main()
