"""Where dynamic sampling's refill rows come from: the epoch's next prompts, as the release reads them.

The release (verl's DAPO loop) keeps reading its data loader when a batch has too few informative groups,
so refill prompts are the epoch's next ones and are not seen again in that epoch. `EpochSampler` is TRL's
`RepeatSampler` (same shuffled order, same chunks, same repeats) whose prompts not yet handed to the data
loader wait in a queue; `take(k)` hands the next k of them to a refill instead, so the loader skips them.

Every process iterates the whole sampler (accelerate shards batches, not the sampler), and refill rounds
run in lockstep on all processes, so every process takes the same prompts and uses its own slice.
Takes are logged as (epoch, chunks handed out before the take, k): a checkpoint stores the log
(`refill_taken.json`) and a resumed run replays it while it skips the batches already trained.
"""
from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import torch
from accelerate.utils import gather
from trl.trainer.utils import RepeatSampler

LOG_FILE = "refill_taken.json"


class EpochSampler(RepeatSampler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch = 0
        self.taken: list[list[int]] = []   # [epoch, chunks handed out, k] per take, this run's and replayed
        self.replay: list[list[int]] = []  # takes of a resumed run's checkpoint, re-applied as the loader skips
        self._queue: deque = deque()
        self._chunks = 0

    @classmethod
    def like(cls, s: RepeatSampler) -> "EpochSampler":
        return cls(s.data_source, s.mini_repeat_count, s.batch_size, s.repeat_count, s.shuffle, s.seed)

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it before each epoch
        self.epoch = int(epoch)

    def __iter__(self):
        order = (torch.randperm(self.num_samples, generator=self.generator).tolist() if self.shuffle
                 else list(range(self.num_samples)))
        self._queue, self._chunks = deque(order), 0
        while True:
            for e, at, k in self.replay:
                if e == self.epoch and at == self._chunks:
                    self.take(k)
            if len(self._queue) < self.batch_size:  # RepeatSampler drops the last incomplete chunk too
                return
            chunk = [self._queue.popleft() for _ in range(self.batch_size)]
            self._chunks += 1
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def take(self, k: int) -> list[int]:
        """The epoch's next k prompts not yet handed to the loader (fewer at the epoch's end)."""
        out = [self._queue.popleft() for _ in range(min(k, len(self._queue)))]
        self.taken.append([self.epoch, self._chunks, k])
        return out

    def save(self, checkpoint: Path) -> None:
        (Path(checkpoint) / LOG_FILE).write_text(json.dumps(self.taken))


def load_log(checkpoint: Path) -> list[list[int]]:
    f = Path(checkpoint) / LOG_FILE
    return [list(map(int, t)) for t in json.loads(f.read_text())] if f.is_file() else []


# -- batch helpers of the trainer's dynamic sampling (vttrain.grpo.trainer) --------------------------------------
def _masked(out: dict, keep: torch.Tensor) -> dict:
    """Rows whose keep is False leave the loss (tool_mask zeroed); num_items_in_batch counts what is left."""
    mask = out["completion_mask"]
    k = keep.int().to(mask.device).unsqueeze(1)
    out["tool_mask"] = (out["tool_mask"] if "tool_mask" in out else torch.ones_like(mask)) * k
    out["num_items_in_batch"] = torch.clamp(gather((mask * out["tool_mask"]).sum()).sum(), min=1)
    return out


def _take(batch: dict, idx: list[int]) -> dict:
    """The rows `idx` of a TRL batch (tensors and per-row lists along dim 0; scalars kept)."""
    size = len(batch["completion_ids"])

    def one(v):
        if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.size(0) == size:
            return v[idx]
        if isinstance(v, list) and len(v) == size:
            return [v[i] for i in idx]
        return v
    return {k: one(v) for k, v in batch.items()}


def _cat(parts: list[dict], pad_id: int) -> dict:
    """Concatenate TRL batches row-wise; per-token tensors are padded to the longest (prompt_* on the left,
    as TRL pads prompts, the rest on the right). num_items_in_batch is recomputed by the caller."""
    out = {}
    for key in parts[0]:
        vals = [p[key] for p in parts]
        v0 = vals[0]
        if isinstance(v0, list):
            out[key] = [x for v in vals for x in v]
        elif isinstance(v0, torch.Tensor) and v0.ndim >= 2:
            width = max(v.size(1) for v in vals)
            fill = pad_id if key.endswith("_ids") else 0
            left = key.startswith("prompt")
            padded = []
            for v in vals:
                pad = v.new_full((v.size(0), width - v.size(1), *v.shape[2:]), fill)
                padded.append(torch.cat([pad, v] if left else [v, pad], dim=1))
            out[key] = torch.cat(padded)
        elif isinstance(v0, torch.Tensor) and v0.ndim == 1:
            out[key] = torch.cat(vals)
        else:
            out[key] = v0
    return out
