"""Benchmark: vt's GRPO step against a plain `trl.GRPOTrainer` step, and two-turn rollouts against direct answers.

Default (`python bench/train_step.py [--rounds 5] [--steps 2] [--learning-rate 1e-12] [--before]`): the miniature's
config (manifests/train-mini.yaml: G = 8, 32 rollouts a step, 96 completion tokens, 16 a turn, beta 0.04) on the
warm start (`vt init-model mini`, cached) and the sufficiency data, in one process, arms interleaved
round by round (each round: --steps optimiser steps of each arm):
  plain TRL   trl.GRPOTrainer with TRL's defaults: the same model, prompts (the low view), G, token budget
              and optimiser; no tools, a trivial reward
  vt          VtGRPOTrainer as `vt train` builds it: the resize tool, the rule judge, the penalty, metrics
  vt before   (--before) vt with its speed-ups off: TRL's full-sequence LM head on CPU, gradient
              checkpointing on, turn-1 prompts rendered one by one, none of vttrain.models.fastpath's
  vt 26b3a6c  vt at commit 26b3a6c (before issue 29's speed-ups; `git archive` of it into a temp dir, or
              --old-tree DIR), built the same way in a worker process that trains when told, so its steps
              interleave with the others (--no-old: skip)
Figures: median process CPU seconds per step (single-threaded, so robust to other jobs on a shared
machine; the first step of each arm dropped). Last lines: `ratio_vs_plain_trl=X.XX` (vt / plain TRL) and
`step_vs_26b3a6c=X.XX` (vt / vt at 26b3a6c).

`--protocol [--turn-tokens 32]`: the tiny model on the demo data, two-turn VisionThink rollouts (50 % resize,
scripted text) vs low-only vs direct full-resolution answers: seconds per step and visual tokens per sample.
CPU only: no GPU is lent to this workstream, so GPU figures are not measured.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
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
    from vttrain.grpo import scripted
    from vttrain.grpo.train import build_trainer
    from vttrain.grpo.config import parse_config

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


class CpuClock:
    """Process CPU seconds of each optimiser step (generation, scoring, forward, backward, optimiser)."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self
        self.steps: list[float] = []

        class Cb(TrainerCallback):
            def on_step_begin(self, *a, **k):
                clock.t0 = time.process_time()

            def on_step_end(self, *a, **k):
                clock.steps.append(time.process_time() - clock.t0)
        self.callback = Cb()


def plain_trl(model: Path, data: Path, out: Path, cfg):
    """trl.GRPOTrainer with TRL's defaults on the same model, prompts, G, budget and optimiser as `cfg`."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from vttrain.models import build as models
    from vttrain.grpo.env import make_transform
    from vttrain.grpo.train import load_rows

    def reward(completions, **_):  # trivial but not constant, so the advantages are not all zero
        return [float(len(str(c)) % 3) for c in completions]

    ds = load_rows(str(data), "train").with_transform(make_transform(cfg.system_prompt, cfg.user_prompt))
    args = GRPOConfig(output_dir=str(out), num_generations=cfg.num_generations,
                      per_device_train_batch_size=cfg.per_device_train_batch_size, max_steps=cfg.max_steps,
                      max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                      generation_kwargs={"max_new_tokens": cfg.max_turn_tokens}, beta=cfg.beta,
                      loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards, learning_rate=cfg.learning_rate,
                      lr_scheduler_type=cfg.lr_scheduler_type, use_cpu=True, bf16=False, seed=cfg.seed,
                      logging_strategy="no", disable_tqdm=True, save_strategy="no", report_to="none",
                      dataloader_num_workers=0,
                      model_init_kwargs={"dtype": torch.float32})
    return GRPOTrainer(model=str(model), reward_funcs=reward, args=args, train_dataset=ds,
                       processing_class=models.load_processor(str(model)))


FROZEN_LR = 1e-12  # > 0 (vt's config refuses 0); the policy does not move: each arm's work per step is the same
FAST = ("distinct_prompts", "suffix_cache", "image_cache", "matmul_patch_embed", "dedupe_vision", "length_buckets",
        "shared_prompts", "memo_rope", "shared_generation", "scored_only")


def vt_trainer(model: Path, data: Path, out: Path, steps: int, before: bool = False, without: str | None = None,
               lr: float = FROZEN_LR):
    from vttrain.grpo.train import build_trainer
    from vttrain.grpo.config import parse_config
    from vttrain.grpo.trainer import VtGRPOTrainer

    class Before(VtGRPOTrainer):
        compact_head = batched_render = distinct_prompts = suffix_cache = image_cache = False
        matmul_patch_embed = dedupe_vision = length_buckets = shared_prompts = memo_rope = shared_generation = False
        scored_only = False

    flags = ["--model", str(model), "--data_dir", str(data), "--output_dir", str(out), "--max_steps", str(steps),
             "--save_strategy", "no", "--learning_rate", str(lr)]
    flags += ["--gradient_checkpointing", "true"] if before else []
    cfg = parse_config(str(ROOT / "manifests" / "train-mini.yaml"), flags)
    cls = Before if before else type(f"Without_{without}", (VtGRPOTrainer,), {without: False}) if without else None
    return build_trainer(cfg, cls)[0], cfg


OLD = "26b3a6c"
WORKER = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["VT_OLD_TREE"])
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import torch
torch.set_num_threads(1)
from pathlib import Path
from transformers import TrainerCallback
from vtdata.console import set_verbosity
from vttrain.train import build_trainer  # 26b3a6c's module paths (before vttrain's subpackages)
from vttrain.train_config import parse_config
set_verbosity(quiet=True)
model, data, out, steps, lr = sys.argv[1:6]
steps_cpu = []
class Clock(TrainerCallback):
    def on_step_begin(self, *a, **k):
        self.t0 = time.process_time()
    def on_step_end(self, *a, **k):
        steps_cpu.append(time.process_time() - self.t0)
cfg = parse_config(str(Path(os.environ["VT_OLD_TREE"]) / "manifests" / "train-mini.yaml"),
                   ["--model", model, "--data_dir", data, "--output_dir", out, "--max_steps", steps,
                    "--save_strategy", "no", "--learning_rate", lr])
trainer = build_trainer(cfg)[0]
trainer.add_callback(Clock())
print("VTSTEPS " + json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    n = len(steps_cpu)
    trainer.train()
    print("VTSTEPS " + json.dumps({"steps": steps_cpu[n:]}), flush=True)
"""


class OldVt:
    """vt at commit OLD in a worker process (its own sys.path); `train()` runs one round there."""

    def __init__(self, tree: Path, model: Path, data: Path, out: Path, steps: int, lr: float):
        env = {**os.environ, "VT_OLD_TREE": str(tree), "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(model), str(data), str(out), str(steps),
                                      str(lr)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree)
        self.steps: list[float] = []
        self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("VTSTEPS "):
                return json.loads(line[8:])
        raise RuntimeError(f"the {OLD} worker stopped (exit {self.proc.wait()})")

    def train(self) -> None:
        self.proc.stdin.write("train\n")
        self.proc.stdin.flush()
        self.steps += self._read()["steps"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def old_tree(tmp: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    dst = tmp / "old"
    dst.mkdir()
    tar = subprocess.run(["git", "archive", OLD], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=tar, check=True)
    return dst


def vs_plain_trl(rounds: int, steps: int, before: bool, old: bool = True, old_dir: str | None = None,
                 ablate: bool = False, lr: float = FROZEN_LR) -> None:
    from vtdata.console import set_verbosity
    from vttrain.models.warmstart import init_mini
    set_verbosity(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = init_mini(tmp / "model")
        subprocess.run([sys.executable, "-m", "vt", "-q", "build-data", str(ROOT / "manifests" / "sufficiency.yaml"),
                        "--out", str(tmp / "data"), "--db", str(tmp / "b.duckdb")], check=True, cwd=ROOT)
        vt, cfg = vt_trainer(model, tmp / "data", tmp / "vt", steps, lr=lr)
        arms = {"plain TRL": plain_trl(model, tmp / "data", tmp / "plain", cfg), "vt": vt}
        if before:
            arms["vt before"] = vt_trainer(model, tmp / "data", tmp / "before", steps, before=True, lr=lr)[0]
        for flag in FAST if ablate else ():
            arms[f"-{flag}"] = vt_trainer(model, tmp / "data", tmp / flag, steps, without=flag, lr=lr)[0]
        clocks = {}
        for name, trainer in arms.items():
            clocks[name] = CpuClock()
            trainer.add_callback(clocks[name].callback)
        if old:
            arms[f"vt {OLD}"] = clocks[f"vt {OLD}"] = OldVt(old_tree(tmp, old_dir), model, tmp / "data",
                                                            tmp / "old-run", steps, lr)
        try:
            for _ in range(rounds):  # interleaved: each arm sees the same share of the machine's load
                for trainer in arms.values():
                    trainer.train()
        finally:
            if old:
                arms[f"vt {OLD}"].close()
    med = {name: statistics.median(c.steps[1:]) for name, c in clocks.items()}
    print(f"miniature config (train-mini.yaml), warm start, CPU, 1 thread, {rounds} rounds x {steps} steps per arm, "
          f"learning rate {lr:g}")
    for name, c in clocks.items():
        print(f"{name:<22} {med[name]:6.3f} CPU s/step (median of {len(c.steps) - 1}; "
              f"{med[name] / med['plain TRL']:.2f}x plain TRL)")
    print(f"ratio_vs_plain_trl={med['vt'] / med['plain TRL']:.2f}")
    if old:
        print(f"step_vs_{OLD}={med['vt'] / med[f'vt {OLD}']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds (vs plain TRL): the median of 9 steps per arm")
    ap.add_argument("--steps", type=int, default=2, help="optimiser steps per arm per round (--protocol: per arm)")
    ap.add_argument("--before", action="store_true", help="also time vt with its speed-ups off")
    ap.add_argument("--ablate", action="store_true", help="also time vt with each fastpath speed-up off in turn")
    ap.add_argument("--no-old", action="store_true", help=f"skip the vt-at-{OLD} arm")
    ap.add_argument("--learning-rate", type=float, default=FROZEN_LR,
                    help="every arm's learning rate (vs plain TRL). Default ~0: each arm samples from the warm start "
                         "at every step, so all arms do the same work (a step's cost depends on how many rollouts "
                         "call the tool, and at train-mini's 1e-4 each arm's policy drifts its own way within a "
                         "few steps); 1e-4 measures the drifting runs")
    ap.add_argument("--old-tree", help=f"a checkout of {OLD} (default: git archive into a temp dir)")
    ap.add_argument("--protocol", action="store_true", help="two-turn rollouts vs direct answers (tiny model)")
    ap.add_argument("--turn-tokens", type=int, default=32)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)  # one thread: CPU time per step is then the work done, whatever else runs
    if not a.protocol:
        return vs_plain_trl(a.rounds, a.steps, a.before, not a.no_old, a.old_tree, a.ablate, a.learning_rate)
    from vtdata.console import set_verbosity
    from vttrain.models.build import init_tiny
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
