"""`JsonlMetrics`: the trainer's logged metrics as JSON lines (a callback of vttrain.grpo.train's trainer)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback


class JsonlMetrics(TrainerCallback):
    """Every logging step's metrics as one JSON line in RUN/metrics.jsonl (main process)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        rec = {"step": state.global_step, "epoch": state.epoch, "time": time.time()}
        for k, v in logs.items():
            if isinstance(v, float) and math.isnan(v):
                v = None
            rec[k] = v
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")
