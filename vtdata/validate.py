"""Checking one raw row of a source (build-data's load/validate pass): normalised text, the image
read once (sha256, header, full decode; JPEGs decode at 1/8 scale, which still reads every byte),
the manifest's filters. Each row becomes a staged sample dict or the reason it is rejected. The image
work runs in worker processes (`Pool`); the rest in the build process.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import unicodedata

from vtdata.resolution import MAX_ASPECT, ResolutionPolicy, load_bytes, open_image, oriented_size, view_sizes
from vtdata.schema import ANSWER_TYPES, sample_id

# ---- per image work (runs in worker processes) ----------------------------------------------------
def _kind(image) -> str:
    """'bytes' (already in memory), 'file' (a path), or 'made' (rendered or decoded in the worker)."""
    if isinstance(image, (list, tuple)) and len(image) == 1:
        return _kind(image[0])
    if isinstance(image, (bytes, bytearray, memoryview)) or (isinstance(image, dict) and image.get("bytes")):
        return "bytes"
    if isinstance(image, (str, os.PathLike)) or (isinstance(image, dict) and image.get("path")):
        return "file"
    return "made"


def probe(job: tuple) -> tuple:
    """(image, pixel_cap, max_bytes, return_bytes) -> ("ok", sha256, width, height, bytes|None) or ("error", reason)."""
    image, pixel_cap, max_bytes, return_bytes = job
    try:
        data = load_bytes(image, max_bytes)
        sha = hashlib.sha256(data).hexdigest()
        img = open_image(data, pixel_cap)
        w, h = oriented_size(img)
        if max(w, h) > MAX_ASPECT * min(w, h):
            raise ValueError(f"aspect ratio over {MAX_ASPECT} ({w}x{h})")
        if img.format == "JPEG":  # decode at 1/8 scale: every byte is still read, so truncation shows
            img.draft(None, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
        try:
            img.load()
        except Exception as err:
            raise ValueError(f"corrupt or truncated image ({type(err).__name__}: {err})") from None
        return ("ok", sha, w, h, data if return_bytes else None)
    except ValueError as err:
        return ("error", _stable(str(err)))
    except Exception as err:  # anything else PIL throws at a broken file
        return ("error", _stable(f"unreadable image ({type(err).__name__}: {err})"))


def _stable(reason: str) -> str:
    """A reject reason without the memory addresses of object reprs (PIL says 'cannot identify image
    file <_io.BytesIO object at 0x7f...>'), so the rejects table is the same on every run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", reason)


# ---- text normalisation ---------------------------------------------------------------------------
_NUM = re.compile(r"^[-+]?(\d+(,\d{3})*|\d*)(\.\d+)?%?$")


def _text(v, what: str) -> str:
    if isinstance(v, (bytes, bytearray)):
        try:
            v = bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"non-UTF-8 text in {what}") from None
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ValueError(f"{what} is not text ({type(v).__name__})")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{what} is not a finite number ({v})")
    v = unicodedata.normalize("NFC", str(v)).strip()
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"non-UTF-8 text in {what} (lone surrogate)") from None
    return v


def normalise(raw: dict, default_type: str | None) -> dict:
    """Checked, normalised text fields of a raw row; raises ValueError(reason)."""
    if raw.get("error"):
        raise ValueError(raw["error"])
    if raw.get("question") is None:
        raise ValueError("missing question")
    q = _text(raw["question"], "question").replace("<image>", "").strip()  # vt adds the image itself
    if not q:
        raise ValueError("empty question")
    a = raw.get("answers")
    if a is None:
        raise ValueError("missing answer")
    answers = [_text(x, "answer") for x in (a if isinstance(a, (list, tuple)) else [a])]
    answers = [x for x in answers if x]
    if not answers:
        raise ValueError("empty answer")
    choices = raw.get("choices")
    if choices is not None:
        choices = [_text(x, "choice") for x in (choices if isinstance(choices, (list, tuple)) else [choices])]
        choices = choices or None
    at = raw.get("answer_type") or default_type
    if at is None:
        at = "mc" if choices else ("number" if all(_NUM.match(x) and any(c.isdigit() for c in x) for x in answers)
                                   else "open")
    if at not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type: {at!r}")
    meta = raw.get("meta") or {}
    return {"question": q, "answers": answers, "choices": choices, "answer_type": at,
            "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str)}


def question_key(q: str) -> str:
    return " ".join(q.casefold().split())


MAX_QUESTION_CHARS = 8000  # default of filters.max_question_chars


def check_filters(f: dict, row: dict, meta: dict) -> str | None:
    """The reason a row fails the source's `filters`, or None."""
    limit = f.get("max_question_chars", MAX_QUESTION_CHARS)
    if len(row["question"]) > limit:
        return f"filter: question longer than {limit} chars"
    if "max_answer_chars" in f and len(row["answers"][0]) > f["max_answer_chars"]:
        return f"filter: answer longer than {f['max_answer_chars']} chars"
    if "answer_types" in f and row["answer_type"] not in f["answer_types"]:
        return f"filter: answer_type {row['answer_type']} not in {f['answer_types']}"
    for k, allowed in (f.get("meta") or {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if meta.get(k) not in allowed:
            return f"filter: meta.{k}={meta.get(k)!r} not in {allowed}"
    return None


class Pool:
    """imap over jobs: inline for one process, a fork pool otherwise."""

    def __init__(self, n: int):
        self.n = n
        self.pool = None
        if n > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self.pool = ctx.Pool(n)

    def map(self, jobs: list):
        """Results in job order, as they arrive (the caller works on row k while workers probe k+1...)."""
        if self.pool is None:
            return (probe(j) for j in jobs)
        return self.pool.imap(probe, jobs, chunksize=max(1, min(16, len(jobs) // (self.n * 4))))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def prepare(raws: list[dict], default_type: str | None, policy: ResolutionPolicy) -> tuple[list, list]:
    """Normalised text (a dict, or the reason it is unusable) per raw row, and the image probe jobs of
    the usable ones, in order."""
    texts, jobs = [], []
    for raw in raws:
        try:
            texts.append(normalise(raw, default_type))
        except ValueError as err:
            texts.append(str(err))
            continue
        # workers send back only bytes that exist nowhere else (rendered images);
        # files are re-read here from the page cache, cheaper than a pipe
        jobs.append((raw.get("image"), policy.pixel_cap, policy.max_image_bytes, _kind(raw.get("image")) == "made"))
    return texts, jobs


def check_row(src: dict, srow: str, raw: dict, text: dict, probed: tuple, ids: set,
              policy: ResolutionPolicy) -> tuple[dict | None, str | None]:
    """(the staged row, None), or (None, the reason to reject it): image, filters, duplicate id."""
    if probed[0] == "error":
        return None, probed[1]
    _, sha, w, h, data = probed
    if data is None:  # the worker read a file or in-memory bytes: take them here again, unchanged
        try:
            data = load_bytes(raw["image"], policy.max_image_bytes)
        except ValueError as err:
            return None, f"image file changed during the build ({err})"
        if hashlib.sha256(data).hexdigest() != sha:
            return None, "image file changed during the build"
    f = src["filters"]
    if "min_side" in f and min(w, h) < f["min_side"]:
        return None, f"filter: shorter side {min(w, h)} < min_side {f['min_side']}"
    reason = check_filters(f, text, json.loads(text["meta"]))
    if reason is not None:
        return None, reason
    sid = sample_id(src["name"], srow)
    if sid in ids:
        return None, f"duplicate id: source row {srow} appears twice (id {sid})"
    (lw, lh), (hw, hh) = raw.get("views") or view_sizes(w, h, policy)  # a source may size them (visionthink)
    return {"id": sid, "source": src["name"], "task": src["task"], **text, "image": {"bytes": data, "path": None},
            "image_sha256": sha, "width": w, "height": h, "low_width": lw, "low_height": lh, "high_width": hw,
            "high_height": hh}, None

