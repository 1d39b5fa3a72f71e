"""`kind: hf` — a Hugging Face dataset: `datasets.load_dataset(path, name, split)` or, for a directory
written by `save_to_disk`, `datasets.load_from_disk(path)`; columns mapped with `columns:`."""
from __future__ import annotations

from vtdata.sources import OUTSIDE_KEY, column_map, image_root, mapped_row
from vtdata.sources._table import Mapped, hf_rows

KEYS = {"columns": "vt field -> source column (question, answers, image, id, choices, answer_type)",
        "path": "hub id, local loading script/dir, or a save_to_disk directory",
        "config": "dataset config name (`name` is the vt source's own name)", "split": "split to read (required when there are several)",
        "data_files": "data_files passed to load_dataset", "from_disk": "force load_from_disk (default: auto)",
        "image_root": "directory that relative image paths start from"} | OUTSIDE_KEY
REQUIRED = ("path",)


def open(spec: dict, ctx):  # noqa: A001
    rows = hf_rows(spec["path"], ctx.base_dir, spec.get("config"), spec.get("split"), spec.get("data_files"),
                   spec.get("from_disk"))
    cmap = column_map(spec.get("columns"), rows.columns)
    root = image_root(spec, ctx)
    return Mapped(rows, lambda rec, i: mapped_row(rec, cmap, i, root))
