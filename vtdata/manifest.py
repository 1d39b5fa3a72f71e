"""Build manifests (`manifests/*.yaml`): which sources to mix, how many rows of each, the view policy.

    seed: 0                      # sampling, shuffling and the val split
    val_fraction: 0.1            # share of each task held out as `val`
    total: 20000                 # only with `weight:` sources: rows to draw in all
    shard_rows: 2000             # rows per parquet shard
    resolution: {min_pixels: 262144, max_pixels: 4194304, multiple: 56, low_factor: 2}
    sources:
      - name: chartqa            # unique; part of every sample id
        kind: hf                 # synthetic | hf | parquet | jsonl | llava | visionthink
        task: ocr                # general | ocr
        take: 5000               # rows to keep (or weight: 0.3 of `total`; neither = all)
        answer_type: anls        # default answer type when the source has none (else inferred)
        filters: {min_side: 28, max_question_chars: 1000}
        columns: {question: query, answers: label}   # hf/parquet/jsonl: vt field -> source column
        path: HuggingFaceM4/ChartQA                  # kind-specific keys (see vtdata/sources/<kind>.py)
        split: train

Unknown keys are errors naming the key, so a typo never silently changes a build. A manifest over
MAX_BYTES, or one the shared reader refuses (vtdata/safeload.py: YAML aliases expanding to more than
MAX_VALUES values or referring to themselves, deep nesting), is refused before anything else reads it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path


from vtdata.console import VtError
from vtdata.resolution import ResolutionPolicy
from vtdata.safeload import read_bytes, yaml_bytes
from vtdata.schema import ANSWER_TYPES, TASKS
from vtdata.sources import KINDS, module

MAX_BYTES = 1 << 20          # a manifest is a few hundred bytes; a bigger one is a mistake or an attack
TOP_KEYS = {"name", "description", "license", "seed", "val_fraction", "total", "shard_rows", "resolution", "sources"}
SOURCE_KEYS = {"name", "kind", "task", "take", "weight", "filters", "answer_type"}  # + the kind's own KEYS
FILTER_KEYS = {"min_side": "drop images whose shorter side is below this (pixels)",
               "max_question_chars": "drop longer questions (default 8000)", "max_answer_chars": "drop longer canonical answers",
               "answer_types": "keep only these answer types",
               "meta": "mapping meta key -> allowed values, e.g. {data_source: [open_source_require_high]}"}


@dataclass
class Manifest:
    """A validated manifest (see the module docstring for the YAML)."""

    path: Path
    """The YAML file; relative source paths start from its directory."""
    seed: int
    """Seeds sampling (`take`/`weight`), the mix order, the val split and the synthetic generator."""
    val_fraction: float
    """Share of each task held out as `val`, in [0, 1)."""
    policy: ResolutionPolicy
    """How the low and high views are sized (`resolution:`)."""
    sources: list[dict]
    """The validated `sources:` entries, with defaults filled in (name, task, filters)."""
    total: int | None = None
    """Rows to draw over the `weight:` sources."""
    shard_rows: int = 2000
    """Rows per parquet shard."""
    name: str = ""
    """The dataset's name (default: the file's stem)."""
    data: dict = field(default_factory=dict)
    """The parsed YAML as written."""
    hash: str = ""
    """sha256 of the file's bytes: identifies the build (recorded in build.json)."""


def _fail(path, msg) -> VtError:
    return VtError(f"manifest {path}: {msg}")


def _unknown(path, where, keys, known) -> None:
    bad = sorted(set(keys) - set(known))
    if bad:
        raise _fail(path, f"unknown key {where}{bad[0]} (known: {', '.join(sorted(known))})")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_filters(path, where, f: dict) -> None:
    for key in ("min_side", "max_question_chars", "max_answer_chars"):
        if key in f and (not _is_int(f[key]) or f[key] < 0):
            raise _fail(path, f"{where}{key} must be a non-negative integer, got {f[key]!r}")
    if "answer_types" in f:
        at = f["answer_types"]
        if not isinstance(at, list) or not at or any(a not in ANSWER_TYPES for a in at):
            raise _fail(path, f"{where}answer_types must be a list of {', '.join(ANSWER_TYPES)}, got {at!r}")
    if "meta" in f and not isinstance(f["meta"], dict):
        raise _fail(path, f"{where}meta must be a mapping of meta key -> allowed values")


def load(path: str | Path) -> Manifest:
    from vtdata.shipped import find  # a shipped manifest by name (`demo.yaml`) from any directory
    path = find(path)
    raw = read_bytes(path, "manifest", MAX_BYTES)
    data = yaml_bytes(raw, path, "manifest")
    if not isinstance(data, dict):
        raise _fail(path, "must be a mapping with a `sources:` list")
    _unknown(path, "", data, TOP_KEYS)
    if data.get("license") is not None and not isinstance(data["license"], str):
        raise _fail(path, f"license must be a string (an SPDX id such as cc-by-4.0), got {data['license']!r}")
    seed = data.get("seed", 0)
    if not _is_int(seed):
        raise _fail(path, f"seed must be an integer, got {seed!r}")
    vf = data.get("val_fraction", 0.1)
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 <= vf < 1:
        raise _fail(path, f"val_fraction must be in [0, 1), got {vf!r}")
    total = data.get("total")
    if total is not None and (not _is_int(total) or total <= 0):
        raise _fail(path, f"total must be a positive integer, got {total!r}")
    shard_rows = data.get("shard_rows", 2000)
    if not _is_int(shard_rows) or shard_rows <= 0:
        raise _fail(path, f"shard_rows must be a positive integer, got {shard_rows!r}")
    res = data.get("resolution") or {}
    if not isinstance(res, dict):
        raise _fail(path, "resolution must be a mapping")
    try:
        policy = ResolutionPolicy.from_dict(res)
    except VtError as err:
        raise _fail(path, str(err)) from None
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        raise _fail(path, "needs a non-empty `sources:` list")
    names, out = set(), []
    for k, src in enumerate(sources):
        out.append(_source(path, k, src, total))
        if out[-1]["name"] in names:
            raise _fail(path, f"sources[{k}].name {out[-1]['name']!r} is used twice")
        names.add(out[-1]["name"])
    if total is not None and not any("weight" in s for s in out):
        raise _fail(path, "total is only used with `weight:` sources (with `take:` each source says its own count)")
    return Manifest(path=path, seed=seed, val_fraction=float(vf), policy=policy, sources=out, total=total,
                    shard_rows=shard_rows, name=str(data.get("name") or path.stem), data=data,
                    hash=hashlib.sha256(raw).hexdigest())


def _source(path, k, src, total) -> dict:
    where = f"sources[{k}]."
    if not isinstance(src, dict):
        raise _fail(path, f"sources[{k}] must be a mapping")
    kind = src.get("kind")
    if kind not in KINDS:
        raise _fail(path, f"{where}kind must be one of {', '.join(KINDS)}, got {kind!r}")
    mod = module(kind)
    _unknown(path, where, src, SOURCE_KEYS | set(mod.KEYS))
    for key in mod.REQUIRED:
        if key not in src:
            raise _fail(path, f"{where}{key} is required for kind {kind}")
        if not isinstance(src[key], str) or not src[key]:
            raise _fail(path, f"{where}{key} must be a non-empty string, got {src[key]!r}")
    src = dict(src)
    src.setdefault("name", f"{kind}{k}")
    if not isinstance(src["name"], str) or not src["name"]:
        raise _fail(path, f"{where}name must be a non-empty string")
    src.setdefault("task", "general")
    if src["task"] not in TASKS:
        raise _fail(path, f"{where}task must be one of {', '.join(TASKS)}, got {src['task']!r}")
    if "take" in src and "weight" in src:
        raise _fail(path, f"{where}take and weight are exclusive")
    if "take" in src and (not _is_int(src["take"]) or src["take"] < 0):
        raise _fail(path, f"{where}take must be a non-negative integer, got {src['take']!r}")
    if "weight" in src:
        w = src["weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise _fail(path, f"{where}weight must be a positive number, got {src['weight']!r}")
        if total is None:
            raise _fail(path, f"{where}weight needs a top-level `total:` (rows to draw in all)")
    if src.get("answer_type") is not None and src["answer_type"] not in ANSWER_TYPES:
        raise _fail(path, f"{where}answer_type must be one of {', '.join(ANSWER_TYPES)}")
    filters = src.get("filters") or {}
    if not isinstance(filters, dict):
        raise _fail(path, f"{where}filters must be a mapping")
    _unknown(path, f"{where}filters.", filters, FILTER_KEYS)
    _check_filters(path, f"{where}filters.", filters)
    src["filters"] = filters
    if "allow_outside_image_root" in src and not isinstance(src["allow_outside_image_root"], bool):
        raise _fail(path, f"{where}allow_outside_image_root must be true or false")
    if src.get("columns") is not None and not isinstance(src["columns"], dict):
        raise _fail(path, f"{where}columns must be a mapping of vt field -> source column")
    return src


def targets(m: Manifest) -> dict[str, int | None]:
    """Rows to keep per source: `take`, or its share of `total` by weight, or None (= all).

    Weighted shares are rounded by largest remainder (ties: manifest order), so they add up to `total`."""
    out = {s["name"]: s.get("take") for s in m.sources}
    weighted = [s for s in m.sources if "weight" in s]
    if weighted:
        top = max(s["weight"] for s in weighted)  # scaled first: huge weights must not sum to inf
        wsum = sum(s["weight"] / top for s in weighted)
        exact = [m.total * (s["weight"] / top) / wsum for s in weighted]
        share = [math.floor(x) for x in exact]
        by_remainder = sorted(range(len(weighted)), key=lambda k: -(exact[k] - share[k]))
        for k in by_remainder[:m.total - sum(share)]:
            share[k] += 1
        out.update({s["name"]: n for s, n in zip(weighted, share)})
    return out


def manifest_inputs(m: Manifest) -> tuple[Path, ...]:
    """The local files and folders a manifest's sources read (path, image_root; a glob's folder), those that
    exist: what no output of `vt build-data` may be or contain."""
    import glob as _glob
    import os
    from vtdata.sources import resolve_path
    base = Path(m.path).resolve().parent
    out = []
    for src in m.sources:
        for key in ("path", "image_root"):
            v = src.get(key)
            if not isinstance(v, str) or not v:
                continue
            p = str(resolve_path(v, base))
            if _glob.has_magic(p):
                p = os.path.dirname(p[:min(p.index(c) for c in "*?[" if c in p)])
            if os.path.exists(p):
                out.append(Path(p))
    return tuple(out)
