"""Row access over tabular inputs shared by the hf, parquet and visionthink sources."""
from __future__ import annotations

import bisect
import glob
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vtdata.console import VtError
from vtdata.shards import RowSpill
from vtdata.sources import resolve_path


class ParquetRows:
    """len() and row(i) -> dict over parquet files without loading them: rows are decoded WINDOW at a
    time from a streaming reader (column chunks are read in pieces, not whole), so memory stays bounded
    whatever the file and row-group sizes. Reading forward is one sequential pass; a row behind the
    reader's position restarts its row group (build-data fetches each chunk of rows in index order)."""

    WINDOW = 64

    def __init__(self, files: list[str]):
        self.files = files
        self.groups: list[tuple[int, int]] = []   # (file index, row group) in row order
        self.starts: list[int] = [0]
        self.columns: list[str] = []
        for k, f in enumerate(files):
            meta = pq.read_metadata(f)
            names = meta.schema.to_arrow_schema().names
            if k == 0:
                self.columns = names
            elif names != self.columns:
                raise VtError(f"parquet files disagree on columns: {files[0]} has {', '.join(self.columns)}; "
                              f"{f} has {', '.join(names)}")
            for g in range(meta.num_row_groups):
                self.groups.append((k, g))
                self.starts.append(self.starts[-1] + meta.row_group(g).num_rows)
        self._group = -1        # row group the reader is in
        self._batches = None    # its batch iterator
        self._window: list[dict] = []
        self._first = 0         # global index of _window[0]

    def __len__(self) -> int:
        return self.starts[-1]

    def row(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        g = bisect.bisect_right(self.starts, i) - 1
        if g != self._group or i < self._first:
            self._open(g)
        while i >= self._first + len(self._window):
            self._first += len(self._window)
            try:
                self._window = next(self._batches).to_pylist()
            except StopIteration:
                raise VtError(f"parquet {self.files[self.groups[g][0]]}: row group {self.groups[g][1]} "
                              f"is shorter than its metadata says") from None
            except Exception as err:  # a corrupt page
                raise VtError(f"cannot read parquet {self.files[self.groups[g][0]]}: {type(err).__name__}: "
                              f"{str(err)[:200]}") from None
        return self._window[i - self._first]

    def spilled(self, path: Path) -> "SpilledRows":
        """The same rows with cheap random access: one sequential pass copies them into an Arrow IPC
        file at `path` (one row per record batch); a row is then one read. For sampled sources, whose
        rows are visited in a random order that would otherwise re-read row groups again and again."""
        schema = pq.read_schema(self.files[0])
        spill = RowSpill(path, schema)
        try:
            for f in self.files:
                for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=self.WINDOW, use_threads=False):
                    spill.write(pa.Table.from_batches([batch]).cast(schema))
        except Exception as err:
            spill.remove()
            raise VtError(f"cannot read parquet {f}: {type(err).__name__}: {str(err)[:200]}") from None
        spill.close()
        return SpilledRows(spill, self.columns)

    def _open(self, g: int) -> None:
        k, rg = self.groups[g]
        pf = pq.ParquetFile(self.files[k], buffer_size=1 << 20, pre_buffer=False)
        self._group, self._first, self._window = g, self.starts[g], []
        self._batches = pf.iter_batches(batch_size=self.WINDOW, row_groups=[rg], use_threads=False)


class SpilledRows:
    """len() and row(i) over a RowSpill (see ParquetRows.spilled)."""

    def __init__(self, spill, columns: list[str]):
        self.spill, self.columns = spill, columns

    def __len__(self) -> int:
        return self.spill.rows

    def row(self, i: int) -> dict:
        return self.spill.take([i]).to_pylist()[0]


def parquet_rows(path, base: Path) -> ParquetRows:
    """A parquet file, a directory of them (recursively) or a glob, read lazily (see ParquetRows)."""
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
        return ParquetRows(files)
    except VtError:
        raise
    except Exception as err:  # ArrowInvalid on a corrupt footer, a file that is not parquet...
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

    def random_access(self, path: Path) -> None:
        """Prepare for rows read in random order (a sampled source): see ParquetRows.spilled."""
        if isinstance(self.rows, ParquetRows):
            self.rows = self.rows.spilled(path)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.to_raw(self.rows.row(i), i)
