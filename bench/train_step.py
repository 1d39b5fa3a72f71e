"""Benchmark: seconds per GRPO step and visual tokens per sample of VisionThink two-turn rollouts against
a direct-answer-only run at full resolution, same tiny model, same data, same process.

Arms (each: 1 warm-up step, then --steps measured optimiser steps; G=4, one prompt group per step):
  visionthink   low-res first; half the rollouts call resize_image and get the high-res view
  low-only      low-res first; no rollout calls the tool (the floor of the two-turn protocol)
  full-res      the baseline: the high-res view in the prompt, one turn, no tool
A random tiny model never writes a valid tool call, so the text of each turn is scripted
(vttrain.scripted, after real sampling of --turn-tokens tokens); generation, the tool loop, the
environment, the vision tower, the forward/backward and the optimiser run for real.

    python bench/train_step.py [--steps 3] [--turn-tokens 32]

CPU only: no GPU is lent to this workstream, so the 3B random-weight GPU figures are not measured.
The machine is shared: the arms run single-threaded and each figure is the median per-step process CPU
time (robust to other jobs) next to TRL's wall-clock step time (not robust).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def full_res_copy(src: Path, dst: Path) -> Path:
    """The same rows with the low view set to the high view (the direct full-resolution baseline)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    (dst / "data").mkdir(parents=True, exist_ok=True)
    for f in sorted((src / "data").glob("train-*.parquet")):
        t = pq.read_table(f)
        for side in ("width", "height"):
            t = t.set_column(t.schema.get_field_index(f"low_{side}"), f"low_{side}", pc.cast(t[f"high_{side}"], t.schema.field(f"low_{side}").type))
        pq.write_table(t, dst / "data" / f.name)
    (dst / "build.json").write_text((src / "build.json").read_text())
    return dst


def run_arm(name, model, data, out, steps, turn_tokens, call_share, max_turns):
    from vttrain import scripted
    from vttrain.train import build_trainer
    from vttrain.train_config import parse_config

    def script(turn, index, prompt):
        if turn == 1 and (index % 4) < round(4 * call_share):
            return scripted.CALL
        return scripted.answer("42")

    import time

    from transformers import TrainerCallback

    cpu = []

    class CpuClock(TrainerCallback):  # process CPU time: robust to other jobs on a shared machine
        def on_step_begin(self, *a, **k):
            self.t0 = time.process_time()

        def on_step_end(self, *a, **k):
            cpu.append(time.process_time() - self.t0)

    class Arm(scripted.ScriptedGRPOTrainer):
        generate = True

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.add_callback(CpuClock())

    Arm.script = staticmethod(script)
    args = dict(model=model, data_dir=data, output_dir=out, num_generations=4, per_device_train_batch_size=4,
                max_steps=steps + 1, max_completion_length=640, max_turn_tokens=turn_tokens, max_turns=max_turns,
                learning_rate=1e-5, logging_steps=1, save_strategy="no", report_to="none", seed=0, use_cpu=True,
                bf16=False, beta=0.0, dataloader_num_workers=0)
    cfg = parse_config(None, [x for k, v in args.items() for x in (f"--{k}", str(v))])
    trainer, _ = build_trainer(cfg, Arm)
    trainer.train()
    rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step_time" in r][1:]  # drop the warm-up step
    return {"name": name, "s_per_step": statistics.median(r["step_time"] for r in rows),
            "cpu_per_step": statistics.median(cpu[1:]),
            "visual_tokens": statistics.mean(r["visual_tokens_per_sample"] for r in rows),
            "resize_ratio": statistics.mean(r["resize_ratio"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--turn-tokens", type=int, default=32)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)  # one thread: CPU time per step is then the work done, whatever else runs
    from vtdata.console import set_verbosity
    from vttrain.models import init_tiny
    set_verbosity(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = init_tiny(tmp / "model", seed=0)
        subprocess.run([sys.executable, "-m", "vt", "-q", "build-data", str(ROOT / "manifests" / "demo.yaml"),
                        "--out", str(tmp / "data")], check=True, cwd=ROOT)
        full = full_res_copy(tmp / "data", tmp / "data-full")
        arms = [run_arm("visionthink (50% resize)", model, tmp / "data", tmp / "a", a.steps, a.turn_tokens, 0.5, 2),
                run_arm("low-only (0% resize)", model, tmp / "data", tmp / "b", a.steps, a.turn_tokens, 0.0, 2),
                run_arm("full-res direct", model, full, tmp / "c", a.steps, a.turn_tokens, 0.0, 1)]
    base = arms[-1]
    print(f"tiny Qwen2.5-VL, CPU, G=4, {a.steps} steps per arm, demo data (high views 392-504 px)")
    for r in arms:
        print(f"{r['name']:<26} {r['cpu_per_step']:6.2f} CPU s/step ({r['cpu_per_step'] / base['cpu_per_step']:.2f}x)  "
              f"{r['s_per_step']:6.2f} wall s/step ({r['s_per_step'] / base['s_per_step']:.2f}x)  "
              f"{r['visual_tokens']:7.1f} visual tokens/sample ({r['visual_tokens'] / base['visual_tokens']:.2f}x)  "
              f"resize ratio {r['resize_ratio']:.2f}")


if __name__ == "__main__":
    main()
