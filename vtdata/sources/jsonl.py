"""`kind: jsonl` — one JSON object per line. `image` is a path relative to `image_root` (default: the
JSONL file's directory), or inline bytes as a `data:image/...;base64,...` string. A line that is not
UTF-8 or not JSON becomes a `rejects` row naming its line number."""
from __future__ import annotations

import base64
import json

from vtdata.console import VtError
from vtdata.sources import OUTSIDE_KEY, column_map, image_root, mapped_row, require_file

KEYS = {"columns": "vt field -> source column (question, answers, image, id, choices, answer_type)",
        "path": "the .jsonl file", "image_root": "directory relative image paths start from"} | OUTSIDE_KEY
REQUIRED = ("path",)


def open(spec: dict, ctx):  # noqa: A001
    path = require_file(spec["path"], ctx.base_dir, "jsonl file")
    root = image_root(spec, ctx, default=path.parent)
    recs, keys = [], []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except UnicodeDecodeError as err:
                rec = {"__error__": f"not valid UTF-8 (line {n}: {err.reason} at byte {err.start})"}
            except ValueError as err:
                rec = {"__error__": f"not a JSON object (line {n}: {err})"}
            rec["__line__"] = n
            recs.append(rec)
            keys.extend(k for k in rec if k not in keys)
    if not recs:
        raise VtError(f"jsonl file {path} has no rows")
    cmap = column_map(spec.get("columns"), [k for k in keys if not k.startswith("__")])

    def raw(i: int) -> dict:
        rec = dict(recs[i])
        line = rec.pop("__line__")
        if "__error__" in rec:
            return {"source_row": f"line{line}", "error": rec["__error__"]}
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

    return _Rows(len(recs), raw)


class _Rows:
    def __init__(self, n, fn):
        self.n, self.fn = n, fn

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.fn(i)
