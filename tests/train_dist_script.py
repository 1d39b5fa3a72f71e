"""Run by tests/test_train_distributed.py under `accelerate launch`: one scripted VisionThink step."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_helpers as h  # noqa: E402

from vttrain.grpo.scripted import ScriptedGRPOTrainer  # noqa: E402
from vttrain.grpo.train import build_trainer  # noqa: E402

model, data, out, per_device, mode = sys.argv[1:6]
cfg = h.config(Path(model), Path(data), Path(out), per_device_train_batch_size=int(per_device), max_steps=1,
               penalty_mode=mode)
trainer, _ = build_trainer(cfg, ScriptedGRPOTrainer)
trainer.train()
# Tear the process group down before exit: left to interpreter shutdown, gloo's threads were seen to abort
# a rank ("terminate called without an active exception", exit -6) under load.
trainer.accelerator.wait_for_everyone()
import torch.distributed as dist  # noqa: E402
if dist.is_initialized():
    dist.destroy_process_group()
