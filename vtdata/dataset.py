"""Reading a vt dataset: the directory `vt build-data` or `vt curate` writes (DIR/build.json +
DIR/data/{train,val}-NNNNN.parquet, columns in vtdata.schema). Every stage that reads samples
(score-judge, curate, train, eval, export) reads them through these functions.
"""
from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from vtdata.console import VtError

SPLITS = ("train", "val")


def shard_files(data_dir: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The parquet files of a split (None: train then val); a directory without build.json is a VtError."""
    d = Path(data_dir)
    if not (d / "build.json").exists():
        raise VtError(f"{d} is not a built vt dataset (no build.json); run `vt build-data` first")
    splits = [split] if split else list(SPLITS)
    for sp in splits:
        if sp not in SPLITS:
            raise VtError(f"split must be train or val, got {sp!r}")
    return [f for sp in splits for f in sorted((d / "data").glob(f"{sp}-*.parquet"))]


def iter_samples(data_dir: str | os.PathLike, split: str | None = None,
                 columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a built set as dicts, in shard order; `image` is the original encoded bytes."""
    for f in shard_files(data_dir, split):
        pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering keeps every row group read until the end
        names = pf.schema_arrow.names
        cols = [c for c in columns if c in names] if columns else None
        for batch in pf.iter_batches(batch_size=64, columns=cols):
            for row in batch.to_pylist():
                if isinstance(row.get("image"), dict):
                    row["image"] = row["image"]["bytes"]
                yield row


def read_split(data_dir: str | os.PathLike, split: str = "train", limit: int | None = None,
               columns: list[str] | None = None) -> list[dict]:
    """The first `limit` rows of a split (`all` = train then val) as `iter_samples` dicts; none is a VtError."""
    rows = list(islice(iter_samples(data_dir, None if split == "all" else split, columns), limit))
    if not rows:
        raise VtError(f"{data_dir} has no {split} samples")
    return rows


def count_rows(data_dir: str | os.PathLike, split: str | None = None) -> int:
    """Rows of a split (None: all), from the parquet footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in shard_files(data_dir, split))


def load_hf(data_dir: str | os.PathLike, split: str = "train"):
    """A built split as a `datasets.Dataset` (`image` decodes to PIL images)."""
    import datasets  # slow to import: see vtdata/__init__.py

    files = [str(f) for f in shard_files(data_dir, split)]
    if not files:
        raise VtError(f"{data_dir} has no {split} rows")
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)
