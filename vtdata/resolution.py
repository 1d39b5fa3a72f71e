"""The two views of every image (VisionThink: low-res first, high-res on request).

high = the original, scaled by one sqrt factor so its area lies in [min_pixels, max_pixels], each side
       snapped to a multiple of `multiple` (56 = Qwen2.5-VL patch 14 x merge 2 x low_factor 2), >= 56.
low  = high / low_factor per side. With the defaults the low view has exactly 1/4 of the visual
       tokens of the high view for a Qwen2.5-VL processor ((H/28)*(W/28) tokens).

Views are resampled from the ORIGINAL bytes with LANCZOS after applying the EXIF orientation, and
every mode (RGBA, LA, P, L, 1, CMYK, I;16, I, F, ...) is converted to RGB (transparency onto white).
"""
from __future__ import annotations

import io
import math
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageOps

from vtdata.console import VtError

# Refuse images with more pixels than this before decoding them (decompression bombs).
PIXEL_CAP = 80_000_000
# Refuse images whose encoded bytes are larger than this, before reading them all (`/dev/zero`, huge files).
MAX_IMAGE_BYTES = 64 * 2**20
MAX_ASPECT = 200  # Qwen2.5-VL refuses images more elongated than this


@dataclass(frozen=True)
class ResolutionPolicy:
    """How the low and high views of an image are sized."""

    min_pixels: int = 512 * 512
    """Smallest area of the high view (the original is upscaled to reach it)."""
    max_pixels: int = 2048 * 2048
    """Largest area of the high view (the original is downscaled to fit)."""
    multiple: int = 56
    """Both sides of the high view are multiples of this."""
    low_factor: int = 2
    """The low view divides each side of the high view by this (2 -> 1/4 of the visual tokens)."""
    pixel_cap: int = PIXEL_CAP
    """Source images with more pixels are rejected as decompression bombs."""
    max_image_bytes: int = MAX_IMAGE_BYTES
    """Source images larger than this (encoded) are rejected; no more than this is read of any file."""

    def __post_init__(self) -> None:
        for name in ("min_pixels", "max_pixels", "multiple", "low_factor", "pixel_cap", "max_image_bytes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise VtError(f"resolution.{name} must be a positive integer, got {v!r}")
        if self.min_pixels > self.max_pixels:
            raise VtError(f"resolution.min_pixels ({self.min_pixels}) > max_pixels ({self.max_pixels})")
        if self.multiple % self.low_factor:
            raise VtError(f"resolution.multiple ({self.multiple}) must be divisible by low_factor ({self.low_factor})")
        if self.max_pixels < self.multiple ** 2:
            raise VtError(f"resolution.max_pixels ({self.max_pixels}) is below one {self.multiple}x{self.multiple} tile")

    @classmethod
    def from_dict(cls, d: dict | None) -> "ResolutionPolicy":
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise VtError(f"unknown key resolution.{bad[0]} (known: {', '.join(sorted(known))})")
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def high_size(width: int, height: int, policy: ResolutionPolicy = ResolutionPolicy()) -> tuple[int, int]:
    """The high view of a width x height original (see the module docstring)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"zero-size image {width}x{height}")
    m, area = policy.multiple, width * height
    scale = 1.0
    if area > policy.max_pixels:
        scale = math.sqrt(policy.max_pixels / area)
    elif area < policy.min_pixels:
        scale = math.sqrt(policy.min_pixels / area)
    tw, th = width * scale, height * scale  # the ideal (unsnapped) size
    snaps = lambda x: {max(m, math.floor(x / m) * m), max(m, math.ceil(x / m) * m)}  # noqa: E731
    cands = {(cw, ch) for cw in snaps(tw) for ch in snaps(th)}
    for ch in snaps(th):  # one side snapped: the other refitted to the ideal area
        cands |= {(cw, ch) for cw in snaps(tw * th / ch)}
    for cw in snaps(tw):
        cands |= {(cw, ch) for ch in snaps(tw * th / cw)}

    def cost(c):  # prefer: inside the bounds, then the closest aspect ratio and area to the ideal
        cw, ch = c
        outside = cw * ch > policy.max_pixels or cw * ch < policy.min_pixels
        return (outside, 2 * abs(math.log((cw / ch) / (tw / th))) + abs(math.log(cw * ch / (tw * th))), c)

    w, h = min(cands, key=cost)
    while w * h > policy.max_pixels and max(w, h) > m:  # very elongated: the 56-px floor overshot
        w, h = (w - m, h) if w >= h else (w, h - m)
    return int(w), int(h)


def view_sizes(width: int, height: int, policy: ResolutionPolicy = ResolutionPolicy()
               ) -> tuple[tuple[int, int], tuple[int, int]]:
    """((low_w, low_h), (high_w, high_h)) for an original of width x height."""
    hw, hh = high_size(width, height, policy)
    return (hw // policy.low_factor, hh // policy.low_factor), (hw, hh)


def visual_tokens(width: int, height: int, patch: int = 14, merge: int = 2,
                  min_pixels: int | None = None, max_pixels: int | None = None) -> int:
    """Visual tokens a Qwen2-VL/2.5-VL vision tower spends on a width x height image: each side rounded
    to a multiple of patch x merge (28 px), one token per 28 x 28 tile. Given the processor's pixel
    bounds, an image outside them is first rescaled as the processor does (its `smart_resize`); without
    bounds it is taken as it is. The one count behind every visual-token figure of vt."""
    f = patch * merge
    h, w = round(height / f) * f, round(width / f) * f
    if max_pixels is not None and h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(f, math.floor(height / beta / f) * f), max(f, math.floor(width / beta / f) * f)
    elif min_pixels is not None and h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return max(1, h // f) * max(1, w // f)


def open_image(data: bytes, pixel_cap: int = PIXEL_CAP) -> Image.Image:
    """Open encoded bytes lazily (header only), refusing decompression bombs. Raises ValueError."""
    if not data:
        raise ValueError("empty image file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ValueError(f"decompression bomb: {err}") from None
    except Exception as err:  # PIL raises UnidentifiedImageError, SyntaxError, struct.error, ...
        if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:  # PIL refuses 0-sized PNGs unhelpfully
            w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            if w == 0 or h == 0:
                raise ValueError(f"zero-size image ({w}x{h})") from None
        raise ValueError(f"not a readable image ({type(err).__name__}: {err})") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ValueError(f"zero-size image ({w}x{h})")
    if w * h > pixel_cap:
        raise ValueError(f"decompression bomb: {w}x{h} = {w * h} pixels > cap {pixel_cap}")
    return img


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """Size after applying the EXIF orientation (5-8 swap the sides)."""
    w, h = img.size
    try:
        o = img.getexif().get(0x0112, 1)
    except Exception:
        o = 1
    return (h, w) if o in (5, 6, 7, 8) else (w, h)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparency is composited onto white; 16/32-bit and float are rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # rescaled by PIL in the image's own 4-byte mode (no float64 copies: a 79 Mpx float TIFF took
        # 2 GB that way); +0.5 then the clipping conversion to L rounds like numpy's round()
        top = 65535.0 if img.mode.startswith("I;16") else max(float(img.getextrema()[1]), 255.0)
        if img.mode != "F":
            img = img.convert("I")
        img = img.point(lambda x: x * (255.0 / top) + 0.5).convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def decode(data: bytes, size_hint: tuple[int, int] | None = None, pixel_cap: int = PIXEL_CAP) -> Image.Image:
    """Decode fully to an upright RGB image. With `size_hint`, JPEGs decode at the smallest DCT scale
    that is still at least that large (PIL draft), which is much faster for big photos."""
    img = open_image(data, pixel_cap)
    if size_hint is not None and img.format == "JPEG":
        tw, th = size_hint
        if oriented_size(img) != img.size:
            tw, th = th, tw
        img.draft(img.mode if img.mode in ("RGB", "L") else None, (tw, th))
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except Exception as err:
        raise ValueError(f"corrupt or truncated image ({type(err).__name__}: {err})") from None
    return to_rgb(img)


def view(image_bytes: bytes, size: tuple[int, int], pixel_cap: int = PIXEL_CAP) -> Image.Image:
    """The view of encoded image bytes at `size` = (w, h): RGB, EXIF applied, LANCZOS."""
    w, h = int(size[0]), int(size[1])
    return fit(decode(image_bytes, (w, h), pixel_cap), (w, h))


def fit(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` at `size` (w, h): itself when it is that size already, else LANCZOS-resized."""
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


def load_bytes(image, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The encoded bytes of any image value a source or a row holds (bytes, {bytes, path}, a path, a
    one-element list, a Lazy renderer, a PIL image), at most `max_bytes` of them. Only regular files
    are read (a FIFO or a device is refused without blocking). Raises ValueError(reason)."""
    from vtdata.sources import Lazy

    if isinstance(image, Lazy):
        return _capped(image(), max_bytes)
    if isinstance(image, (list, tuple)) and len(image) == 1:  # e.g. an `images` column of one image
        return load_bytes(image[0], max_bytes)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _capped(bytes(image), max_bytes)
    if isinstance(image, dict):
        if image.get("bytes"):
            return _capped(bytes(image["bytes"]), max_bytes)
        if image.get("path"):
            image = image["path"]
        else:
            raise ValueError("image struct has neither bytes nor path")
    if isinstance(image, (str, os.PathLike)):
        return _read_file(image, max_bytes)
    if hasattr(image, "save"):  # a decoded PIL image (e.g. from a dataset without an Image feature)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    if image is None:
        raise ValueError("missing image")
    if isinstance(image, list):
        raise ValueError(f"several images in one row ({len(image)}; vt rows have exactly one)")
    raise ValueError(f"unsupported image value ({type(image).__name__})")


def _capped(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise ValueError(f"image larger than max_image_bytes ({len(data)} > {max_bytes} bytes)")
    return data


def _read_file(path, max_bytes: int) -> bytes:
    """A regular file's bytes; opened non-blocking so that a FIFO cannot hang the build."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ValueError(f"image file not found: {path}") from None
    except OSError as err:
        raise ValueError(f"cannot read image file ({err.strerror}: {path})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"image path is not a regular file: {path}")
        if st.st_size > max_bytes:
            raise ValueError(f"image larger than max_image_bytes ({st.st_size} > {max_bytes} bytes)")
        try:
            return _capped(f.read(max_bytes + 1), max_bytes)  # the file may have grown since fstat
        except OSError as err:
            raise ValueError(f"cannot read image file ({err.strerror}: {path})") from None


VIEW_CACHE_BYTES = 512 << 20  # views kept for the life of a command (least recently used dropped beyond)
_VIEWS: "OrderedDict[tuple, Image.Image]" = OrderedDict()
_views_bytes = 0


def view_of(row: dict, which: str = "low") -> Image.Image:
    """The `low` or `high` view of a built-set row (uses the row's low_/high_ sizes).

    Cached for the life of the process (a command) by row id, image hash, view and size, up to
    VIEW_CACHE_BYTES: no command decodes and resizes the same view twice (score-judge, eval in each
    mode, training's prompts and tool turns). Callers must not modify the image they get.
    Pass the encoded bytes (iter_samples) where pixels must match across commands: an already decoded
    image (load_hf) skips the JPEG draft decode, so views of JPEGs over 2x the view size differ slightly."""
    global _views_bytes
    if which not in ("low", "high"):
        raise VtError(f"view must be 'low' or 'high', got {which!r}")
    size = (int(row[f"{which}_width"]), int(row[f"{which}_height"]))
    decoded = isinstance(row.get("image"), Image.Image)
    key = (row.get("id"), row.get("image_sha256"), which, size, decoded)
    if key[0] is None or key[1] is None:
        return _make_view(row, size)
    img = _VIEWS.get(key)
    if img is not None:
        _VIEWS.move_to_end(key)
        return img
    img = _VIEWS[key] = _make_view(row, size)
    _views_bytes += size[0] * size[1] * 3
    while _views_bytes > VIEW_CACHE_BYTES and len(_VIEWS) > 1:
        _, old = _VIEWS.popitem(last=False)
        _views_bytes -= old.size[0] * old.size[1] * 3
    return img


def clear_views() -> None:
    """Forget the cached views (view_of)."""
    global _views_bytes
    _VIEWS.clear()
    _views_bytes = 0
    _LAST_DECODED[:] = [None, None]


_LAST_DECODED: list = [None, None]  # [(id, image_sha256), the decoded image]: a sample's other view reuses it


def _make_view(row: dict, size: tuple[int, int]) -> Image.Image:
    image = row["image"]
    if isinstance(image, Image.Image):  # a row decoded by `datasets`
        return fit(to_rgb(ImageOps.exif_transpose(image)), size)
    try:
        data = load_bytes(image)
    except ValueError as err:
        raise VtError(f"row {row.get('id', '?')} has no usable image: {err}") from None
    if data[:3] == b"\xff\xd8\xff":  # a JPEG decodes at a scale that depends on the view's size (draft)
        return view(data, size)
    # other formats decode the same for either view: the sample's two views (asked for one after the
    # other: score-judge's input hash, the two modes of eval) share one decode
    key = (row.get("id"), row.get("image_sha256"))
    if _LAST_DECODED[0] == key and None not in key:
        img = _LAST_DECODED[1]
    else:
        img = decode(data)
        _LAST_DECODED[:] = [key, img]
    return fit(img, size)
