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
