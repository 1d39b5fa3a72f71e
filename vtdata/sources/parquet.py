"""`kind: parquet` — parquet file(s): a file, a directory or a glob. The image column holds encoded
bytes, an HF image struct {bytes, path}, or a path relative to `image_root`."""
from __future__ import annotations

from vtdata.sources import OUTSIDE_KEY, column_map, image_root, mapped_row
from vtdata.sources._table import Mapped, parquet_rows

KEYS = {"columns": "vt field -> source column (question, answers, image, id, choices, answer_type)",
        "path": "parquet file, directory or glob", "image_root": "directory relative image paths start from "
        "(default: the manifest's directory)"} | OUTSIDE_KEY
REQUIRED = ("path",)


def open(spec: dict, ctx):  # noqa: A001
    rows = parquet_rows(spec["path"], ctx.base_dir)
    cmap = column_map(spec.get("columns"), rows.columns)
    root = image_root(spec, ctx)
    return Mapped(rows, lambda rec, i: mapped_row(rec, cmap, i, root))
