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
import shutil
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
    from vttrain.report.summary import summarize
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


# ------------------------------------------------------------------------------------------- the matrix
# Warm-start builds x GRPO seeds (issue 28): a build differs per machine (floating-point paths), so the split must
# hold from any build, not from one cached one. Build 3 is made with 2 torch threads: another float path, as on
# another machine (its config key is the same as a 1-thread build's, so it gets a cache of its own).
DEMO_BUILDS, DEMO_SEEDS, SCIENCE_BUILDS = (0, 1, 2, 3), (0, 1), (0, 1, 2)
PERTURBED = {3: 2}  # build seed -> torch threads of its SFT


def build(cache: Path, seed: int, threads: int = 1) -> dict:
    """The warm start of `seed` into its own cache (`VT_CACHE`); returns its vt_init.json."""
    code = ("import sys; from vttrain.models.warmstart import init_mini; from vttrain.models.warmstart_data import MiniConfig; "
            f"init_mini(sys.argv[1], MiniConfig(seed={seed}, threads={threads}))")
    model = cache / "model"
    subprocess.run([sys.executable, "-c", code, str(model)], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "VT_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return json.loads((model / "vt_init.json").read_text())


def split_row(fig: dict, think: str, full: str) -> tuple[dict, bool]:
    """Per-source (accuracy, resize) of a think run and whether it splits: fine >= 0.8 resized, coarse and general
    <= 0.2, accuracy within the science check's bounds (fine >= 0.95 x full, the others >= full - 0.02)."""
    t, f = fig[think], fig[full]
    ok = (t["fine"]["resize_ratio"] >= 0.8 and t["coarse"]["resize_ratio"] <= 0.2
          and t["general"]["resize_ratio"] <= 0.2 and t["fine"]["accuracy"] >= 0.95 * f["fine"]["accuracy"]
          and all(t[s]["accuracy"] >= f[s]["accuracy"] - 0.02 for s in ("coarse", "general")))
    return t, ok


def matrix(root: Path, workers: int, extra: list[str], science: bool = True) -> int:
    """Every build x seed with the demo's settings, and SCIENCE_BUILDS x seed 0 with the science settings (the paper
    penalty only); one row per run, then `split_runs=P/N`. Returns the number of runs that did not split."""
    from concurrent.futures import ThreadPoolExecutor
    root.mkdir(parents=True, exist_ok=True)
    caches = {b: root / f"cache-b{b}" for b in DEMO_BUILDS}
    t0 = time.time()
    with ThreadPoolExecutor(workers) as pool:
        inits = dict(zip(DEMO_BUILDS, pool.map(lambda b: build(caches[b], b, PERTURBED.get(b, 1)), DEMO_BUILDS)))
    print(f"builds: {len(inits)} in {(time.time() - t0) / 60:.1f} min wall")
    for b, init in inits.items():
        calls = init["call_probability"]
        print(f"  build {b}{' (2 threads)' if b in PERTURBED else ''}: key {init['key']}, {init['steps_trained']} SFT steps, "
              f"P(call) " + " / ".join(f"{calls[s]:.3f}" for s in SOURCES)
              + (f", P(sentence | source) {init['sentence_probability']}" if "sentence_probability" in init else ""))
    jobs = [("demo", b, s) for b in DEMO_BUILDS for s in DEMO_SEEDS]
    if science:
        jobs += [("science", b, 0) for b in SCIENCE_BUILDS]

    def one(job):
        kind, b, s = job
        out = root / f"{kind}-b{b}-s{s}"
        cmd = [sys.executable, "-m", "vt", "-q", "demo", "--out", str(out), "--warm-seed", str(b), "--seed", str(s),
               *(["--science", "--penalty-modes", "paper"] if kind == "science" else []), *extra]
        t = time.time()
        res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "VT_CACHE": str(caches[b]), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
        if res.returncode:
            return job, None, res.stderr[-2000:], time.time() - t
        return job, figures(out / "vt.duckdb"), out, time.time() - t

    print(f"\n| run | build | GRPO seed | fine: acc / resize | coarse: acc / resize | general: acc / resize "
          f"| visual tokens vs full | min | split |")
    print("|---|---|---|---|---|---|---|---|---|")
    passed = 0
    with ThreadPoolExecutor(workers) as pool:
        for (kind, b, s), fig, out, took in pool.map(one, jobs):
            if fig is None:
                print(f"| {kind} | {b} | {s} | FAILED: {out.strip().splitlines()[-1] if out.strip() else '?'} | | | | | no |")
                continue
            pre = "science" if kind == "science" else "demo"
            think, ok = split_row(fig, f"{pre}-think-paper" if kind == "science" else f"{pre}-think", f"{pre}-full")
            passed += ok
            cells = [f"{think[x]['accuracy']:.2f} / {think[x]['resize_ratio']:.2f}" for x in ("fine", "coarse", "general")]
            print(f"| {kind} | {b}{'*' if b in PERTURBED else ''} | {s} | " + " | ".join(cells)
                  + f" | {think['all']['visual_tokens_rel']:.1%} | {took / 60:.1f} | {'yes' if ok else 'NO'} |", flush=True)
    print(f"\n(* built with 2 torch threads: another float path.) {(time.time() - t0) / 60:.1f} min wall")
    print(f"split_runs={passed}/{len(jobs)}")
    return len(jobs) - passed


# ---------------------------------------------------------------------------------------- the diagnosis
def diagnose(run_dir: Path, data_dir: Path, steps: int = 50, theta: float = 0.2) -> dict:
    """Why a GRPO run splits or collapses, from its rollouts.jsonl (issue 28): per source, the policy-gradient push
    on the call/answer choice at the decision token summed over the first `steps` steps, sum of A_i (c_i - q_g)
    with A_i the group-normalised advantage TRL uses (scale_rewards group), c_i = 1 when rollout i called the tool
    and q_g its group's call share (positive: towards calling); in fine groups the mean of r = C_direct /
    (C_direct + C_high) against theta and the share of groups with r >= theta (their correct resized answers pay
    the penalty); the curated set's sources by label (needs_high / low_ok)."""
    import math
    import statistics

    import pyarrow.parquet as pq
    src = {}
    labels: dict = {}
    for f in sorted(data_dir.rglob("*.parquet")):
        t = pq.read_table(f, columns=[c for c in ("id", "source", "use_tool") if c in pq.read_schema(f).names])
        for row in t.to_pylist():
            src[row["id"]] = row["source"]
            if "use_tool" in row:
                key = ("needs_high" if row["use_tool"] else "low_ok", row["source"])
                labels[key] = labels.get(key, 0) + 1
    rolls = [json.loads(x) for x in (run_dir / "rollouts.jsonl").read_text().splitlines() if x.strip()]
    groups: dict = {}
    for r in rolls:
        if r["step"] <= steps:
            groups.setdefault((r["step"], r["group"]), []).append(r)
    push = {s: 0.0 for s in SOURCES}
    rs, over = [], 0
    for g in groups.values():
        source = src.get(g[0]["id"], "?")
        rewards = [x["reward"] for x in g if x["reward"] is not None]
        if len(rewards) < 2:
            continue
        mean, std = statistics.fmean(rewards), statistics.stdev(rewards)
        q = sum(x["attempted"] for x in g) / len(g)
        for x in g:
            if x["reward"] is not None and source in push:
                push[source] += (x["reward"] - mean) / (std + 1e-4) * (float(x["attempted"]) - q)
        if source == "fine":
            cd = sum(1 for x in g if (x["score"] or 0) >= 0.5 and not x["used_high"])
            ch = sum(1 for x in g if (x["score"] or 0) >= 0.5 and x["used_high"])
            if cd + ch:
                rs.append(cd / (cd + ch))
                over += cd / (cd + ch) >= theta
    return {"push": push, "fine_r_mean": statistics.fmean(rs) if rs else math.nan,
            "fine_r_over_theta": over / len(rs) if rs else math.nan, "fine_groups": len(rs), "labels": labels}


def print_diagnosis(name: str, d: dict) -> None:
    lab = ", ".join(f"{k[0]}/{k[1]} {v}" for k, v in sorted(d["labels"].items()))
    print(f"{name}: push at the decision (first 50 steps) " + ", ".join(f"{s} {v:+.1f}" for s, v in d["push"].items())
          + f"; fine groups: mean r {d['fine_r_mean']:.2f}, r >= theta in {d['fine_r_over_theta']:.0%} of "
            f"{d['fine_groups']}; curated: {lab}")


# -------------------------------------------------------------------------------------- curation's effect
def random_set(demo: Path, n: int, seed: int) -> Path:
    """`n` rows drawn at random from the SCORED training samples of a finished demo (labels ignored): the curated
    set's size and pool without its selection, as a dataset directory `vt train` reads."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq
    from vtdata.db import connect
    con = connect(demo / "vt.duckdb", read_only=True)
    try:
        scored = {r[0] for r in con.execute("SELECT sample_id FROM sufficiency").fetchall()}
    finally:
        con.close()
    table = pa.concat_tables([pq.read_table(f) for f in sorted((demo / "data" / "data").glob("train-*.parquet"))])
    rows = [i for i, x in enumerate(table.column("id").to_pylist()) if x in scored]
    pick = sorted(random.Random(seed).sample(rows, min(n, len(rows))))
    out = demo / "random-set"
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table.take(pick), out / "data" / "train-00000.parquet")
    shutil.copy2(demo / "curated" / "build.json", out / "build.json")  # a dataset directory's marker (same columns)
    return out


def curation(demos: list[Path], seed: int = 0) -> None:
    """issue 28: the same GRPO (train-mini.yaml, `seed`) from each demo's warm start on (a) its curated set, (b) the
    whole uncurated training split, (c) a random set of the curated set's size from the same scored pool; think eval
    on the demo's held-out questions; one row per run and a split count per set."""
    from vtdata.shipped import shipped
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    tally: dict = {}
    print("| warm start (demo) | set | rows | fine: acc / resize | coarse: acc / resize | general: acc / resize | split |")
    print("|---|---|---|---|---|---|---|")
    for demo in demos:
        import pyarrow.parquet as pq
        n = sum(pq.read_metadata(f).num_rows for f in (demo / "curated" / "data").glob("train-*.parquet"))
        sets = {"curated": (demo / "curated", n), "uncurated": (demo / "data", None),
                "random": (random_set(demo, n, seed), n)}
        for name, (data, rows) in sets.items():
            run = demo / f"train-{name}"
            if name != "curated" or not (demo / "train" / "final").is_dir():
                if not (run / "final").is_dir():
                    subprocess.run([sys.executable, "-m", "vt", "-q", "train", str(shipped("train-mini.yaml")), "--model",
                                    str(demo / "model"), "--data_dir", str(data), "--output_dir", str(run), "--seed",
                                    str(seed)], check=True, env=env, stdout=subprocess.DEVNULL)
            else:
                run = demo / "train"
            ev = f"curation-{name}"
            subprocess.run([sys.executable, "-m", "vt", "-q", "eval", "--model", str(run / "final"), "--data",
                            str(demo / "data"), "--mode", "think", "--limit", "64", "--name", ev, "--max-new-tokens", "16",
                            "--db", str(demo / "vt.duckdb"), "--out", str(demo / "evals")],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            think, ok = split_row(figures(demo / "vt.duckdb", [ev, "demo-full"]), ev, "demo-full")
            size = rows if rows is not None else sum(pq.read_metadata(f).num_rows
                                                     for f in (demo / "data" / "data").glob("train-*.parquet"))
            tally.setdefault(name, []).append(ok)
            print(f"| {demo.name} | {name} | {size} | " + " | ".join(
                f"{think[x]['accuracy']:.2f} / {think[x]['resize_ratio']:.2f}" for x in ("fine", "coarse", "general"))
                  + f" | {'yes' if ok else 'NO'} |", flush=True)
    print("\n" + ", ".join(f"{k}: split {sum(v)}/{len(v)}" for k, v in tally.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench-science")
    ap.add_argument("--matrix", action="store_true", help="warm-start builds x GRPO seeds (issue 28) instead of --seeds")
    ap.add_argument("--no-science", action="store_true", help="with --matrix: the demo-settings runs only")
    ap.add_argument("--workers", type=int, default=2, help="with --matrix: runs at once (1 torch thread each)")
    ap.add_argument("--diagnose", nargs="+", metavar="DEMO_OUT", help="print the decision push, fine groups' r and "
                    "the curated set of each finished `vt demo` directory, then exit")
    ap.add_argument("--curation", nargs="+", metavar="DEMO_OUT", help="GRPO from each finished `vt demo` directory's "
                    "warm start on its curated set, the uncurated split and a random set of the same size, then exit")
    ap.add_argument("extra", nargs="*", help="extra `vt demo` flags (after --)")
    a = ap.parse_args()
    if a.curation:
        curation([Path(d) for d in a.curation])
        return
    if a.diagnose:
        for d in map(Path, a.diagnose):
            for run in sorted(d.glob("train*")):
                print_diagnosis(str(run), diagnose(run, d / "curated"))
        return
    if a.matrix:
        sys.exit(1 if matrix(Path(a.out), a.workers, a.extra, science=not a.no_science) else 0)
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
