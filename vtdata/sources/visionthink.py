"""`kind: visionthink` — the VisionThink-Smart/General release (parquet files or a save_to_disk dir):
`images` (list of one {bytes, path}), `problem` with `<image>`, `original_answer`, `solution`,
`data_source`, `doc_id`, `info` {tgt_width, tgt_height, use_tool}. The release's labels (data_source,
doc_id, info, solution) are kept in `meta`; the question is `problem` without `<image>`."""
from __future__ import annotations

from vtdata.console import VtError
from vtdata.sources import OUTSIDE_KEY, _jsonable, image_root, image_value, resolve_path
from vtdata.sources._table import Mapped, hf_rows, parquet_rows

KEYS = {"path": "release parquet file/dir/glob, or a save_to_disk dir", "split": "split of a DatasetDict dir",
        "image_root": "directory relative image paths start from"} | OUTSIDE_KEY
REQUIRED = ("path",)
NEEDED = ("images", "problem", "original_answer")


def open(spec: dict, ctx):  # noqa: A001
    p = resolve_path(spec["path"], ctx.base_dir)
    if p.is_dir() and not any(p.rglob("*.parquet")):
        rows = hf_rows(spec["path"], ctx.base_dir, split=spec.get("split"), from_disk=True)
    else:
        rows = parquet_rows(spec["path"], ctx.base_dir)
    missing = [c for c in NEEDED if c not in rows.columns]
    if missing:
        raise VtError(f"{p} is not in the VisionThink release schema: missing column(s) {', '.join(missing)}")
    root = image_root(spec, ctx)

    def raw(rec: dict, i: int) -> dict:
        try:
            img = image_value(rec.get("images"), root)
        except ValueError as err:
            return {"source_row": i, "error": str(err)}
        ans = rec.get("original_answer")
        meta = {k: v for k, v in rec.items() if k not in ("images", "problem", "original_answer", "prompt")
                and _jsonable(v)}
        return {"source_row": i, "question": rec.get("problem"), "answers": ans, "image": img, "meta": meta,
                "answer_type": rec.get("answer_type")}

    return Mapped(rows, raw)
