"""Writing parquet: the one writer of build-data's and curate's shards and export's verl files, and
the spill file that lets rows be written in one order and read back in another with bounded memory.

Encoded image bytes (any binary column, e.g. `image.bytes`) are written uncompressed and kept out of
dictionary encoding and min/max statistics: they are already compressed (JPEG/PNG), so compressing
them again costs time and saves nothing (the README's build benchmark has the figures). Every other
column is zstd-compressed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 256  # rows per parquet row group of the written files


class RowSpill:
    """Rows written in one order and read back in any other with bounded memory: an Arrow IPC file of
    one row per record batch (its footer indexes them), read with plain file reads, never whole."""

    def __init__(self, path: Path, schema):
        self.path, self.schema, self.rows = path, schema, 0
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self._reader = None

    def write(self, table) -> None:
        self._writer.write_table(table, max_chunksize=1)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def take(self, idx: list[int]):
        """The rows at these positions, in this order, as one table."""
        if self._reader is None:
            self.close()
            self._reader = pa.ipc.open_file(pa.OSFile(str(self.path)))
        return pa.Table.from_batches([self._reader.get_batch(i) for i in idx], schema=self.schema)

    def remove(self) -> None:
        self.close()
        self._reader = None
        self.path.unlink(missing_ok=True)


def _leaves(field, prefix: str = "") -> list[tuple[str, pa.DataType]]:
    """(parquet column path, type) of every leaf under an Arrow field."""
    path = prefix + field.name
    if pa.types.is_struct(field.type):
        return [leaf for child in field.type for leaf in _leaves(child, path + ".")]
    if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
        return _leaves(field.type.value_field.with_name("element"), path + ".list.")
    return [(path, field.type)]


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def writer_options(schema) -> dict:
    """ParquetWriter options: binary leaves uncompressed and their columns without dictionary or
    statistics (see the module docstring); everything else zstd."""
    compression, small = {}, []
    for field in schema:
        leaves = _leaves(field)
        compression |= {p: "none" if _is_bytes(t) else "zstd" for p, t in leaves}
        if not any(_is_bytes(t) for _, t in leaves):
            small.append(field.name)
    return {"compression": compression, "use_dictionary": small, "write_statistics": small}


def write_shard(path: Path, schema, parts: Iterable, digest: bool = True) -> dict:
    """One parquet file from an iterator of tables (written as they come, ROW_GROUP rows per row group);
    returns its shards entry (file name, rows, and its sha256 when `digest`)."""
    rows = 0
    with pq.ParquetWriter(path, schema, **writer_options(schema)) as w:
        for part in parts:
            w.write_table(part, row_group_size=ROW_GROUP)
            rows += part.num_rows
    if not digest:
        return {"file": f"data/{path.name}", "rows": rows}
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"file": f"data/{path.name}", "rows": rows, "sha256": h.hexdigest()}


def write_shards(data: Path, split: str, spill: RowSpill, order: list[int], shard_rows: int, schema, *,
                 finish: Callable = lambda t: t, digest: bool = True, at_least_one: bool = False) -> list[dict]:
    """`data/{split}-NNNNN.parquet`, `shard_rows` rows each, from the spill's rows in `order`, a row
    group at a time (memory does not grow with the data); `finish` turns a spilled part into the
    shard's columns. No rows: no file, or one empty file with `at_least_one`. Returns the shards entries."""
    shards = []
    for n, start in enumerate(range(0, max(len(order), int(at_least_one)), shard_rows)):
        idx = order[start:start + shard_rows]
        parts = (finish(spill.take(idx[j:j + ROW_GROUP])) for j in range(0, len(idx), ROW_GROUP))
        shards.append(write_shard(data / f"{split}-{n:05d}.parquet", schema,
                                  parts if idx else iter([schema.empty_table()]), digest))
    return shards
