"""The image-decision experiment's figures (`make science`), for several GRPO seeds.

For each seed: `vt demo --science --seed S --out OUT/seed-S` (build `manifests/sufficiency.yaml` -> warm start,
cached and shared by every seed -> score-judge -> curate -> GRPO with penalty_mode paper / none / always -> eval
on the held-out split). Then per source (general; coarse and fine: the SAME question, "What pattern fills the
grey box?", on images whose low view keeps / loses the answer) the think-mode resize ratio and accuracy of each
penalty mode against the warm start's full-resolution accuracy (the baseline measured in the same run), the
visual tokens relative to full, and the sampled (T = 1) resize rates of the last fifth of training beside the
greedy eval's. Targets (paper mode): resize >= 0.8 on fine, <= 0.2 on coarse and general; think accuracy
>= 0.95 x full on fine, >= full - 0.02 on the others; visual tokens <= 62 % of full; control: `none` keeps
resizing coarse (>= 0.5).

    python bench/science.py [--seeds 0 1 2] [--out bench-science] [-- extra vt demo flags]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SOURCES = ("general", "coarse", "fine")


def run_seed(out: Path, seed: int, extra: list[str]) -> float:
    t0 = time.time()
    cmd = [sys.executable, "-m", "vt", "-q", "demo", "--science", "--out", str(out), "--seed", str(seed), *extra]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL)
    return time.time() - t0


def figures(db: Path, runs: list[str] | None = None) -> dict:
    """{run: {source or 'all': summary row}} of the eval runs (default: every run in the database)."""
    from vtdata.db import connect
    from vttrain.summary import summarize
    con = connect(db, read_only=True)
    try:
        if runs is None:
            runs = [r[0] for r in con.execute("SELECT DISTINCT run FROM eval_predictions ORDER BY run").fetchall()]
        return {run: {r["source"]: r for r in summarize(con, run)} for run in runs}
    finally:
        con.close()


def sampled(run_dir: Path) -> dict:
    """{source: mean resize ratio while GRPO sampled (T = 1) over the last fifth of the logged steps}."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if "reward" in r]
    tail = rows[-max(1, len(rows) // 5):]
    out = {}
    for s in SOURCES:
        v = [r[f"resize_ratio/{s}"] for r in tail if isinstance(r.get(f"resize_ratio/{s}"), (int, float))]
        out[s] = sum(v) / len(v) if v else None
    return out


def check(fig: dict, prefix: str = "science") -> list[tuple[str, float, float, bool]]:
    """The issue's targets: (name, value, bound, ok) for the paper-mode run and the `none` control."""
    full, think = fig[f"{prefix}-full"], fig[f"{prefix}-think-paper"]
    tests = [("fine resize >= 0.8", think["fine"]["resize_ratio"], 0.8, ">="),
             ("coarse resize <= 0.2", think["coarse"]["resize_ratio"], 0.2, "<="),
             ("general resize <= 0.2", think["general"]["resize_ratio"], 0.2, "<="),
             ("fine acc >= 0.95 x full", think["fine"]["accuracy"], 0.95 * full["fine"]["accuracy"], ">="),
             ("coarse acc >= full - 0.02", think["coarse"]["accuracy"], full["coarse"]["accuracy"] - 0.02, ">="),
             ("general acc >= full - 0.02", think["general"]["accuracy"], full["general"]["accuracy"] - 0.02, ">="),
             ("visual tokens <= 62 % of full", think["all"]["visual_tokens_rel"], 0.62, "<=")]
    if f"{prefix}-think-none" in fig:
        tests.append(("control none: coarse resize >= 0.5", fig[f"{prefix}-think-none"]["coarse"]["resize_ratio"],
                      0.5, ">="))
    return [(name, v, bound, v is not None and (v >= bound if op == ">=" else v <= bound))
            for name, v, bound, op in tests]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench-science")
    ap.add_argument("extra", nargs="*", help="extra `vt demo` flags (after --)")
    a = ap.parse_args()
    summary = []
    for seed in a.seeds:
        out = Path(a.out) / f"seed-{seed}"
        took = run_seed(out, seed, a.extra)
        fig = figures(out / "vt.duckdb")
        stages = {p.stem: json.loads(p.read_text())["seconds"] for p in (out / ".demo").glob("*.json")}
        calls = json.loads((out / "model" / "vt_init.json").read_text()).get("call_probability", {})
        print(f"\nseed {seed}: vt demo --science in {took / 60:.1f} min wall ({out}); its stages took "
              f"{sum(stages.values()) / 60:.1f} min when they ran (" + ", ".join(f"{k} {v:.0f} s" for k, v in
                                                                              sorted(stages.items())) + ")")
        print("  warm start P(call) at the decision token (held-out low views): "
              + ", ".join(f"{k} {v:.3f}" for k, v in calls.items()))
        print(f"  {'run':<22} {'source':<8} {'accuracy':>8} {'resize':>7} {'sampled':>8} {'tokens/full':>11}")
        for run, per in fig.items():
            mode = run.rsplit("-", 1)[-1]
            samp = sampled(out / f"train-{mode}") if "-think-" in run else {}
            for src in (*SOURCES, "all"):
                r = per.get(src)
                if r:
                    s = samp.get(src)
                    print(f"  {run:<22} {src:<8} {r['accuracy']:>8.3f} {r['resize_ratio']:>7.3f} "
                          f"{'' if s is None else f'{s:.3f}':>8} {r['visual_tokens_rel']:>11.3f}")
        results = check(fig)
        print("\n".join(f"  {'ok  ' if ok else 'MISS'} {name}: {v:.3f} (bound {b:.3f})" for name, v, b, ok in results))
        think, samp = fig["science-think-paper"], sampled(out / "train-paper")
        summary.append((seed, think, fig["science-full"], fig.get("science-think-none"), samp,
                        all(ok for *_, ok in results)))
    print("\n| seed | fine: acc / resize (sampled) | coarse: acc / resize (sampled) | general: acc / resize (sampled) "
          "| tokens vs full | none: coarse resize | all targets |")
    print("|---|---|---|---|---|---|---|")
    for seed, think, full, none, samp, ok in summary:
        cells = [f"{think[s]['accuracy']:.2f} (full {full[s]['accuracy']:.2f}) / {think[s]['resize_ratio']:.2f} "
                 f"({samp[s] if samp[s] is None else round(samp[s], 2)})" for s in SOURCES]
        print(f"| {seed} | " + " | ".join(cells) + f" | {think['all']['visual_tokens_rel']:.1%} | "
              f"{none['coarse']['resize_ratio'] if none else float('nan'):.2f} | {'met' if ok else 'MISSED'} |")


if __name__ == "__main__":
    main()
