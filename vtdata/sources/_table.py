"""Row access over tabular inputs shared by the hf, parquet and visionthink sources."""
from __future__ import annotations

import glob
from pathlib import Path

from vtdata.console import VtError
from vtdata.sources import resolve_path


class ArrowRows:
    """len() and row(i) -> dict over a pyarrow Table (image structs stay encoded bytes)."""

    def __init__(self, table):
        self.table = table
        self.columns = list(table.column_names)

    def __len__(self) -> int:
        return self.table.num_rows

    def row(self, i: int) -> dict:
        return self.table.slice(i, 1).to_pylist()[0]


def parquet_rows(path, base: Path) -> ArrowRows:
    """A parquet file, a directory of them (recursively) or a glob, read memory-mapped."""
    import pyarrow.dataset as pds

    p = resolve_path(path, base)
    if any(ch in str(path) for ch in "*?["):
        files = sorted(glob.glob(str(p), recursive=True))
    elif p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
    elif p.exists():
        files = [str(p)]
    else:
        raise VtError(f"parquet input not found: {p}")
    if not files:
        raise VtError(f"no parquet files at {p}")
    try:
        return ArrowRows(pds.dataset(files, format="parquet").to_table())
    except Exception as err:  # ArrowInvalid on a corrupt file, schema mismatch between files...
        raise VtError(f"cannot read parquet {p}: {type(err).__name__}: {err}") from None


def hf_rows(path: str, base: Path, name=None, split=None, data_files=None, from_disk=None) -> "HFRows":
    import datasets

    local = resolve_path(path, base)
    if from_disk is None:
        from_disk = local.is_dir() and ((local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
                                        or (local / "state.json").exists())
    try:
        if from_disk:
            ds = datasets.load_from_disk(str(local))
        else:
            ds = datasets.load_dataset(str(local) if local.exists() else path, name, split=split, data_files=data_files)
    except Exception as err:
        raise VtError(f"cannot load HF dataset {path!r}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise VtError(f"HF dataset {path!r} has splits {', '.join(ds)}: choose one with `split:`")
            split = next(iter(ds))
        if split not in ds:
            raise VtError(f"HF dataset {path!r} has no split {split!r} (has: {', '.join(ds)})")
        ds = ds[split]
    # keep images encoded: decoding them here would waste time and lose the original bytes
    for col, feat in ds.features.items():
        if isinstance(feat, datasets.Image):
            ds = ds.cast_column(col, datasets.Image(decode=False))
        elif isinstance(feat, (datasets.Sequence, datasets.List)) and isinstance(feat.feature, datasets.Image):
            ds = ds.cast_column(col, datasets.List(datasets.Image(decode=False)))
    return HFRows(ds)


class HFRows:
    def __init__(self, ds):
        self.ds, self.columns = ds, list(ds.column_names)

    def __len__(self) -> int:
        return len(self.ds)

    def row(self, i: int) -> dict:
        return self.ds[int(i)]


class Mapped:
    """A source: raw rows from table rows through a column map (see vtdata.sources.mapped_row)."""

    def __init__(self, rows, to_raw):
        self.rows, self.to_raw = rows, to_raw

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.to_raw(self.rows.row(i), i)
