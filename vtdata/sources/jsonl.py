"""`kind: jsonl` — one JSON object per line. `image` is a path relative to `image_root` (default: the
JSONL file's directory), or inline bytes as a `data:image/...;base64,...` string. A line that is not
UTF-8 or not JSON becomes a `rejects` row naming its line number."""
from __future__ import annotations

import base64
import os
import weakref

from vtdata.console import VtError
from vtdata.safeload import BadInput, json_value
from vtdata.sources import OUTSIDE_KEY, column_map, image_root, mapped_row, require_file

KEYS = {"columns": "vt field -> source column (question, answers, image, id, choices, answer_type)",
        "path": "the .jsonl file", "image_root": "directory relative image paths start from"} | OUTSIDE_KEY
REQUIRED = ("path",)


def open(spec: dict, ctx):  # noqa: A001
    path = require_file(spec["path"], ctx.base_dir, "jsonl file")
    root = image_root(spec, ctx, default=path.parent)
    # one pass for the column names and bad lines; rows keep only where their line is (the file is
    # read again row by row), so memory does not grow with inline images
    index: list[tuple[int, int, int] | tuple[int, str]] = []  # (line, offset, length) | (line, error)
    keys: dict[str, None] = {}
    pos = 0
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            start, pos = pos, pos + len(line)
            if not line.strip():
                continue
            rec = _parse(line, n)
            if isinstance(rec, str):
                index.append((n, rec))
                continue
            index.append((n, start, len(line)))
            keys.update(dict.fromkeys(rec))
    if not index:
        raise VtError(f"jsonl file {path} has no rows")
    cmap = column_map(spec.get("columns"), list(keys))
    fd = os.open(path, os.O_RDONLY)

    def raw(i: int) -> dict:
        entry = index[i]
        line = entry[0]
        rec = entry[1] if len(entry) == 2 else _parse(os.pread(fd, entry[2], entry[1]), line)
        if isinstance(rec, str):
            return {"source_row": f"line{line}", "error": rec}
        img = rec.get(cmap["image"])
        if isinstance(img, str) and img.startswith("data:"):
            try:
                rec[cmap["image"]] = base64.b64decode(img.split(",", 1)[1], validate=True)
            except Exception:
                return {"source_row": f"line{line}", "error": "image is a data: URI that is not valid base64"}
        out = mapped_row(rec, cmap, i, root)
        if out["source_row"] == i:  # no id column: the line number identifies the row
            out["source_row"] = f"line{line}"
        return out

    rows = _Rows(len(index), raw)
    weakref.finalize(rows, os.close, fd)
    return rows


def _parse(line: bytes, n: int) -> dict | str:
    """A line's JSON object, or the reason it is not one."""
    try:
        rec = json_value(line)
    except BadInput as err:
        kind = "not valid UTF-8" if str(err).startswith("not valid UTF-8") else "not a JSON object"
        return f"{kind} (line {n}: {err})"
    return rec if isinstance(rec, dict) else f"not a JSON object (line {n})"


class _Rows:
    def __init__(self, n, fn):
        self.n, self.fn = n, fn

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.fn(i)
