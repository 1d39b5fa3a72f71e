"""Run by tests/test_train_sharded.py, alone or under `accelerate launch` (FSDP, gloo on CPU): a few scripted
VisionThink steps with dynamic sampling and refill, a checkpoint at every `save_steps`, optionally resumed.

    python tests/train_shard_script.py MODEL DATA OUT PER_DEVICE MAX_STEPS SAVE_STEPS RESUME(0|1)

VT_TEST_FSDP_ON_CPU=1 (with an FSDP accelerate config) makes accelerate shard on CPU (see below). Writes
OUT/final_norm.json: the trained weights' norm, gathered, and whether FSDP was on.
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # this checkout's vt, not an installed one

import train_helpers as h  # noqa: E402

if os.environ.get("VT_TEST_FSDP_ON_CPU") == "1":
    # accelerate (1.16) takes its FSDP path only for accelerator devices (state.py: the FSDP branch is under
    # `distributed_type in [MULTI_GPU, MULTI_XPU, ...]`): with `use_cpu` an FSDP config silently runs plain
    # DDP on MULTI_CPU. torch's FSDP2 itself runs on CPU with gloo, so make accelerate take that path.
    from accelerate import state as _state
    from accelerate.utils import DistributedType
    _init = _state.AcceleratorState.__init__

    _plugin = []

    def _init_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
        _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None:
            _plugin[:] = [fsdp_plugin]
        if self.distributed_type == DistributedType.MULTI_CPU and _plugin:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = _plugin[0]
    _state.AcceleratorState.__init__ = _init_fsdp_on_cpu

from vttrain.grpo import scripted  # noqa: E402
from vttrain.grpo.scripted import ScriptedGRPOTrainer  # noqa: E402
from vttrain.grpo.train import build_trainer  # noqa: E402


def script(turn, index, prompt_text):
    """Rows with an odd number in the question: every rollout wrong (a zero-variance group, refilled);
    the others: scripted.mixed_script (two call the tool, two answer directly; half right)."""
    n = scripted.re.findall(r"\((\d+)\)", prompt_text)
    if n and int(n[-1]) % 2:
        return scripted.answer("wrong")
    return scripted.mixed_script(turn, index, prompt_text)


class Trainer(ScriptedGRPOTrainer):
    script = staticmethod(script)


model, data, out, per_device, max_steps, save_steps, resume = sys.argv[1:8]
cfg = h.config(Path(model), Path(data), Path(out), per_device_train_batch_size=int(per_device),
               max_steps=int(max_steps), save_strategy="steps", save_steps=int(save_steps), dynamic_sampling=True,
               max_refill_rounds=2, learning_rate=1e-2)
trainer, _ = build_trainer(cfg, Trainer)
ckpt = None
if resume == "1":
    ckpt = max(Path(out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
if trainer.accelerator.is_main_process:
    import torch
    # the trained weights, gathered (FSDP: a full state dict) -> a digest and norm to compare across launches
    state = trainer.accelerator.get_state_dict(trainer.model)
    total = float(sum(v.float().pow(2).sum() for v in state.values()) ** 0.5)
    emb = next((v for k, v in state.items() if k.endswith("embed_tokens.weight")), None)
    head = state.get("lm_head.weight")
    tied = None if emb is None or head is None else bool(torch.equal(emb, head))
    (Path(out) / "final_norm.json").write_text(json.dumps({"norm": total, "keys": len(state), "tied": tied,
                                                           "fsdp": bool(trainer.is_fsdp_enabled),
                                                           "world": trainer.accelerator.num_processes}))
else:
    trainer.accelerator.get_state_dict(trainer.model)   # a collective under FSDP: every rank joins
trainer.accelerator.wait_for_everyone()
# Leave without tearing gloo down: a 2-process DDP run was seen to hang for 15 min after its last step (its
# results written) under load, and interpreter shutdown with gloo's threads alive can abort a rank.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
