"""Reading a vt dataset: the directory `vt build-data` or `vt curate` writes (DIR/build.json +
DIR/data/{train,val}-NNNNN.parquet, columns in vtdata.schema). Every stage that reads samples
(score-judge, curate, train, eval, export) reads them through these functions.
"""
from __future__ import annotations

import hashlib
import os
from itertools import islice
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from vtdata.console import VtError

SPLITS = ("train", "val")


def shard_files(data_dir: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The parquet files of a split (None: train then val); a directory without build.json is a VtError,
    and so is a shard that build.json lists but the directory lacks (never scored with fewer rows)."""
    from vtdata.safeload import load_json, regular_file
    d = Path(data_dir)
    if not (d / "build.json").exists():
        raise VtError(f"{d} is not a built vt dataset (no build.json); run `vt build-data` first")
    splits = [split] if split else list(SPLITS)
    for sp in splits:
        if sp not in SPLITS:
            raise VtError(f"split must be train or val, got {sp!r}")
    meta = load_json(d / "build.json", "dataset record", 1 << 26)
    listed = [s.get("file") for s in meta.get("shards") or [] if isinstance(s, dict)] if isinstance(meta, dict) else []
    for name in listed:
        if isinstance(name, str) and not (d / name).exists():
            raise VtError(f"{d}: shard {name} listed in build.json is missing; restore it or rebuild the set")
    files = [f for sp in splits for f in sorted((d / "data").glob(f"{sp}-*.parquet"))]
    return [regular_file(f, "shard") for f in files]


def _parquet(f: Path) -> pq.ParquetFile:
    """A shard opened for reading; a truncated, empty or foreign file is a one-line VtError."""
    try:
        return pq.ParquetFile(f, pre_buffer=False)  # pre-buffering keeps every row group read until the end
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise VtError(f"shard {f} is not a readable parquet file (truncated or corrupt?): "
                      f"{str(err).splitlines()[0][:160]}") from None


def iter_samples(data_dir: str | os.PathLike, split: str | None = None,
                 columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a built set as dicts, in shard order; `image` is the original encoded bytes, checked
    against the row's recorded `image_sha256` (check_image: a swapped or damaged image is a VtError)."""
    for f in shard_files(data_dir, split):
        pf = _parquet(f)
        names = pf.schema_arrow.names
        cols = [c for c in columns if c in names] if columns else None
        extra = cols is not None and "image" in cols and "image_sha256" in names and "image_sha256" not in cols
        if extra:
            cols.append("image_sha256")
        batches = pf.iter_batches(batch_size=64, columns=cols)
        while True:
            try:
                batch = next(batches, None)
            except (OSError, ValueError) as err:
                raise VtError(f"shard {f} is corrupt: {str(err).splitlines()[0][:160]}") from None
            if batch is None:
                break
            for row in batch.to_pylist():
                if isinstance(row.get("image"), dict):
                    row["image"] = row["image"]["bytes"]
                check_image(row, f)
                if extra:
                    del row["image_sha256"]
                yield row


def check_image(row: dict, where) -> None:
    """A row's image bytes must hash to its recorded `image_sha256` (build-data hashed them): a shard
    altered or damaged since is a one-line VtError naming the sample, never a silently used image. One
    sha256 per image read (~1.5 ms per MB, ~1 % of decoding it); rows without bytes or hash pass."""
    data, want = row.get("image"), row.get("image_sha256")
    if isinstance(data, dict):
        data = data.get("bytes")
    if isinstance(data, (bytes, bytearray)) and isinstance(want, str) and hashlib.sha256(data).hexdigest() != want:
        raise VtError(f"{where}: sample {row.get('id', '?')}: image bytes do not match the image_sha256 recorded "
                      f"at build (the set was altered or damaged since); rebuild it with `vt build-data`")


def read_split(data_dir: str | os.PathLike, split: str = "train", limit: int | None = None,
               columns: list[str] | None = None) -> list[dict]:
    """The first `limit` rows of a split (`all` = train then val) as `iter_samples` dicts; none is a VtError."""
    rows = list(islice(iter_samples(data_dir, None if split == "all" else split, columns), limit))
    if not rows:
        raise VtError(f"{data_dir} has no {split} samples")
    return rows


def count_rows(data_dir: str | os.PathLike, split: str | None = None) -> int:
    """Rows of a split (None: all), from the parquet footers."""
    return sum(_parquet(f).metadata.num_rows for f in shard_files(data_dir, split))


def load_hf(data_dir: str | os.PathLike, split: str = "train"):
    """A built split as a `datasets.Dataset` (`image` decodes to PIL images)."""
    import datasets  # slow to import: see vtdata/__init__.py

    files = [str(f) for f in shard_files(data_dir, split)]
    if not files:
        raise VtError(f"{data_dir} has no {split} rows")
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)
