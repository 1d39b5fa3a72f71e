"""`kind: visionthink` — the VisionThink-Smart/General release (parquet files or a save_to_disk dir):
`images` (list of one {bytes, path}), `problem` with `<image>`, `original_answer`, `solution`,
`data_source`, `doc_id`, `info` {tgt_width, tgt_height, use_tool}. The release's labels (data_source,
doc_id, info, solution) are kept in `meta`; the question is `problem` without `<image>`.

Views (`views: release`, the default): the release's efficient run shows low = (info.tgt_width,
info.tgt_height) and high = 2 x that per side, both resampled from the original, and its `data_source`
labels were assigned for those views. vt snaps low to the nearest multiple of 28 per side (>= 28) and
doubles it, so low is exactly 1/4 of high's Qwen2.5-VL visual tokens, as the processor would round the
release's low view anyway. A row without a usable tgt size gets the manifest's resolution policy, as the
release falls back to its min/max pixel rule. `views: policy` always uses the resolution policy."""
from __future__ import annotations

from vtdata.console import VtError
from vtdata.sources import OUTSIDE_KEY, _jsonable, image_root, image_value, resolve_path
from vtdata.sources._table import Mapped, hf_rows, parquet_rows

KEYS = {"path": "release parquet file/dir/glob, or a save_to_disk dir", "split": "split of a DatasetDict dir",
        "image_root": "directory relative image paths start from",
        "views": "release (default: low = info.tgt_width x tgt_height snapped to 28, high = 2 x low) | policy"} | OUTSIDE_KEY
VIEWS = ("release", "policy")
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
    views = spec.get("views", "release")
    if views not in VIEWS:
        raise VtError(f"source {spec.get('name')}: views must be one of {', '.join(VIEWS)}, got {views!r}")

    def raw(rec: dict, i: int) -> dict:
        try:
            img = image_value(rec.get("images"), root)
        except ValueError as err:
            return {"source_row": i, "error": str(err)}
        ans = rec.get("original_answer")
        meta = {k: v for k, v in rec.items() if k not in ("images", "problem", "original_answer", "prompt")
                and _jsonable(v)}
        out = {"source_row": i, "question": rec.get("problem"), "answers": ans, "image": img, "meta": meta,
               "answer_type": rec.get("answer_type")}
        if views == "release":
            out["views"] = release_views(rec.get("info"))
        return out

    return Mapped(rows, raw)


def release_views(info) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((low_w, low_h), (high_w, high_h)) from a release row's info, or None (use the policy)."""
    if not isinstance(info, dict):
        return None
    w, h = info.get("tgt_width"), info.get("tgt_height")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in (w, h)):
        return None
    snap = lambda x: max(28, int(x / 28 + 0.5) * 28)  # noqa: E731 - the nearest multiple of 28
    low = (snap(w), snap(h))
    return low, (2 * low[0], 2 * low[1])
