"""Sources: each kind of input is one small module selected by `kind:` in a manifest.

A source module defines
    KEYS: dict[str, str]   its own manifest keys (name -> help); `REQUIRED` the mandatory ones
    open(spec, ctx) -> a sequence (len + indexing) of RAW ROWS, cheap to index (images are read later).

A raw row is a dict: `source_row` (the row's id inside the source: a column value or its index),
`question`, `answers` (str or list), `image` (bytes | {"bytes", "path"} | an absolute path str |
a PIL image | a `Lazy` renderer | a list of those), optional `answer_type`, `choices`, `meta` (dict),
`views` (((low_w, low_h), (high_w, high_h)) instead of the resolution policy's),
or `error` (a reason: the row is recorded in `rejects` as unreadable).
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vtdata.console import VtError

KINDS = ("synthetic", "hf", "parquet", "jsonl", "llava", "visionthink")


def module(kind: str):
    if kind not in KINDS:
        raise VtError(f"unknown source kind {kind!r} (known: {', '.join(KINDS)})")
    return importlib.import_module(f"vtdata.sources.{kind}")


@dataclass
class Context:
    """What a source needs from the manifest: where relative paths start, the seed, the view policy."""

    base_dir: Path
    seed: int = 0
    policy: Any = None
    task: str = "general"


@dataclass(frozen=True)
class Lazy:
    """An image produced on demand in a worker process: `fn(*args)` -> encoded bytes."""

    fn: Callable[..., bytes]
    args: tuple = field(default_factory=tuple)

    def __call__(self) -> bytes:
        return self.fn(*self.args)


def resolve_path(p: str | os.PathLike, base: Path) -> Path:
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else (base / p)


OUTSIDE_KEY = {"allow_outside_image_root": "let image paths leave image_root (`../`, absolute paths, symlinks)"}


@dataclass(frozen=True)
class ImageRoot:
    """Where a source's image paths start, and the only place they may lead (after resolving symlinks)
    unless the manifest says `allow_outside_image_root: true`."""

    path: Path
    allow_outside: bool = False

    def file(self, p) -> str:
        """The image file a row names; ValueError(reason) when it leaves the root."""
        path = resolve_path(p, self.path)
        if self.allow_outside:
            return str(path)
        real, root = Path(os.path.realpath(path)), Path(os.path.realpath(self.path))
        if real != root and root not in real.parents:
            raise ValueError(f"image path leaves image_root: {str(p)[:200]} (allow_outside_image_root: true "
                             f"permits it)")
        return str(real)


def image_root(spec: dict, ctx: Context, default: Path | None = None) -> ImageRoot:
    """Where the source's relative image paths start: `image_root:` (relative to the manifest), else
    `default`, else the manifest's directory."""
    if spec.get("image_root"):
        path = resolve_path(spec["image_root"], ctx.base_dir)
    else:
        path = default if default is not None else ctx.base_dir
    return ImageRoot(path, spec.get("allow_outside_image_root") is True)


def require_file(p: str | os.PathLike, base: Path, what: str) -> Path:
    from vtdata.safeload import regular_file
    return regular_file(resolve_path(p, base), what)


DEFAULT_COLUMNS = {"id": "id", "question": "question", "answers": "answers", "image": "image",
                   "choices": "choices", "answer_type": "answer_type"}
FALLBACK_COLUMNS = {"answers": ("answer", "label", "ground_truth"), "question": ("query", "prompt"),
                    "image": ("images", "image_path")}


def column_map(columns: dict | None, available: list[str]) -> dict:
    """vt field -> source column, from the manifest's `columns:` plus defaults and common fallbacks."""
    columns = dict(columns or {})
    bad = sorted(set(columns) - set(DEFAULT_COLUMNS) - {"meta"})
    if bad:
        raise VtError(f"unknown key columns.{bad[0]} (known: {', '.join(sorted(DEFAULT_COLUMNS))}, meta)")
    out = {}
    for f, default in DEFAULT_COLUMNS.items():
        if f in columns:
            if columns[f] not in available:
                raise VtError(f"columns.{f}: column {columns[f]!r} not in the source (has: {', '.join(available)})")
            out[f] = columns[f]
        elif default in available:
            out[f] = default
        else:
            out[f] = next((c for c in FALLBACK_COLUMNS.get(f, ()) if c in available), None)
    for f in ("question", "answers", "image"):
        if out[f] is None:
            raise VtError(f"source has no {f} column (has: {', '.join(available)}); map it with columns.{f}")
    return out


def image_value(image, root: ImageRoot):
    """A row's image with any file path it names resolved under `root` (ValueError when it leaves it),
    whatever its shape: one-element lists and {path: ...} mappings are unwrapped at any depth, so a path
    nested in them is checked like a plain one; several images in one row are refused."""
    for _ in range(16):
        if isinstance(image, (list, tuple)) and len(image) == 1:
            image = image[0]
        elif isinstance(image, dict) and not image.get("bytes") and image.get("path") is not None:
            image = image["path"]
        else:
            break
    if isinstance(image, (str, os.PathLike)):
        return root.file(os.fspath(image))
    if isinstance(image, (list, tuple, dict)) and image and not (isinstance(image, dict) and image.get("bytes")):
        raise ValueError("image must be one path or image bytes (got a list of several or a nested value)")
    return image


def mapped_row(rec: dict, cmap: dict, index: int, root: ImageRoot) -> dict:
    """A raw row from a record (dict of columns) through the column map; other columns go to meta."""
    used = {v for v in cmap.values() if v}
    sid = rec.get(cmap["id"]) if cmap.get("id") else None
    try:
        image = image_value(rec.get(cmap["image"]), root)
    except ValueError as err:
        return {"source_row": index if sid is None else sid, "error": str(err)}
    meta = {k: v for k, v in rec.items() if k not in used and _jsonable(v)}
    return {"source_row": index if sid is None else sid, "question": rec.get(cmap["question"]),
            "answers": rec.get(cmap["answers"]), "image": image,
            "choices": rec.get(cmap["choices"]) if cmap.get("choices") else None,
            "answer_type": rec.get(cmap["answer_type"]) if cmap.get("answer_type") else None, "meta": meta}


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
