"""The zoom tool on the miniature (issue 14): resize-only vs zoom-only vs both, against full resolution.

1. `vt build-data manifests/sufficiency.yaml` (general = background colour; coarse and fine = the pattern of a
   56 x 56 grey box in one quadrant of the 112 x 112 image, which the 56 x 56 low view keeps (coarse) or loses
   (fine): the detail questions that need the high view are the fine ones);
2. `vt init-model mini --tools resize,zoom`: the warm start with both tools at fixed rates (a calling trajectory
   picks either, whatever the question; a zoom's box is the low-view quadrant holding the grey box);
3. per tool setting: GRPO (`vt train manifests/train-mini.yaml --tools S --penalty_cost tokens`) on the
   train split, then `vt eval --mode think --tools S` on the held-out split; `vt eval --mode full` of the warm
   start is the full-resolution reference.
Prints accuracy, tool rates and visual tokens per source, and the issue's target: with zoom, fine accuracy
within 0.02 of resize-only at <= 50 % of resize-only's visual tokens on fine questions.

    python bench/zoom.py [--out bench-zoom] [--steps 200] [--settings resize zoom resize,zoom]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from science import figures  # bench/science.py: per-class summaries of eval runs

ROOT = Path(__file__).resolve().parents[1]


def vt(*args: str) -> None:
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "vt", "-q", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode:
        sys.exit(f"vt {' '.join(args)} failed:\n{p.stderr[-3000:]}")
    print(f"  vt {args[0]} {' '.join(a for a in args[1:3])} ... {time.time() - t0:.0f} s", flush=True)


def table(fig: dict) -> list[str]:
    lines = ["| run | class | accuracy | resize | zoom | visual tokens | tokens / full |", "|---|---|---|---|---|---|---|"]
    for run, per in fig.items():
        for cls in ("general", "coarse", "fine", "all"):
            r = per.get(cls)
            if r:
                lines.append(f"| {run} | {cls} | {r['accuracy']:.3f} | {r['resize_ratio']:.2f} | "
                             f"{r.get('zoom_ratio') or 0:.2f} | {r['visual_tokens']:.2f} | {r['visual_tokens_rel']:.3f} |")
    return lines


def target(fig: dict, resize: str, zoom: str) -> str:
    a, b = fig[resize]["fine"], fig[zoom]["fine"]
    acc_ok = b["accuracy"] >= a["accuracy"] - 0.02
    tok_ok = b["visual_tokens"] <= 0.5 * a["visual_tokens"]
    return (f"{zoom} vs {resize} on fine: accuracy {b['accuracy']:.3f} vs {a['accuracy']:.3f} "
            f"({'ok' if acc_ok else 'MISS'}: within 0.02), visual tokens {b['visual_tokens']:.2f} vs "
            f"{a['visual_tokens']:.2f} = {b['visual_tokens'] / a['visual_tokens']:.0%} ({'ok' if tok_ok else 'MISS'}: <= 50 %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-zoom")
    ap.add_argument("--steps", type=int, default=200, help="GRPO steps per setting (0: evaluate the warm start only)")
    ap.add_argument("--settings", nargs="+", default=["resize", "zoom", "resize,zoom"])
    ap.add_argument("--eval-limit", type=int, default=180)
    ap.add_argument("--penalty-cost", default="tokens")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out)
    data, model, db = out / "data", out / "model", out / "vt.duckdb"
    common = ["--limit", str(a.eval_limit), "--max-new-tokens", "16", "--db", str(db), "--out", str(out / "evals")]
    if not (data / "build.json").exists():
        vt("build-data", str(ROOT / "manifests" / "sufficiency.yaml"), "--out", str(data), "--db", str(db))
    vt("init-model", "mini", str(model), "--tools", "resize,zoom", "--seed", str(a.seed))
    runs = ["zoom-full"]
    if not (out / "evals" / "zoom-full.jsonl").exists():
        vt("eval", "--model", str(model), "--data", str(data), "--mode", "full", "--name", "zoom-full", *common)
    for s in a.settings:  # the warm start per setting (the tool choice before GRPO)
        tag = s.replace(",", "+")
        runs.append(f"zoom-warm-{tag}")
        if not (out / "evals" / f"zoom-warm-{tag}.jsonl").exists():
            vt("eval", "--model", str(model), "--data", str(data), "--mode", "think", "--tools", s, "--name",
               f"zoom-warm-{tag}", *common)
    for s in a.settings if a.steps > 0 else []:  # GRPO per setting, then think eval with the same tools
        tag = s.replace(",", "+")
        run_dir, name = out / f"train-{tag}", f"zoom-think-{tag}"
        if not (run_dir / "final" / "config.json").exists():
            vt("train", str(ROOT / "manifests" / "train-mini.yaml"), "--model", str(model), "--data_dir", str(data),
               "--output_dir", str(run_dir), "--tools", s, "--penalty_cost", a.penalty_cost,
               "--max_steps", str(a.steps), "--seed", str(a.seed), "--save_strategy", "no")
        runs.append(name)
        if not (out / "evals" / f"{name}.jsonl").exists():
            vt("eval", "--model", str(run_dir / "final"), "--data", str(data), "--mode", "think", "--tools", s,
               "--name", name, *common)
    fig = figures(db, runs)
    print("\n".join(table(fig)))
    tags = {s: f"zoom-{'think' if a.steps > 0 else 'warm'}-{s.replace(',', '+')}" for s in a.settings}
    for s in ("zoom", "resize,zoom"):
        if "resize" in tags and s in tags:
            print(target(fig, tags["resize"], tags[s]))


if __name__ == "__main__":
    main()
