"""Class 9 of the hostile-input issue: bounded memory per image.

A high-bit image (float or 16/32-bit integer TIFF) is rescaled to 8 bits by PIL in its own mode: no
float64 copies of the whole image (a 79 Mpx float TIFF cost 2.15 GB for one view that way). numpy's
allocations are traced by tracemalloc, PIL's are not: the old path shows up as >= 24 bytes per pixel."""
import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from vtdata.resolution import to_rgb, view


def _tiff(a: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode).save(buf, "TIFF", compression="tiff_deflate")
    return buf.getvalue()


@pytest.mark.parametrize("dtype,mode", [(np.float32, "F"), (np.int32, "I"), (np.uint16, None)])
def test_a_high_bit_view_makes_no_whole_image_copies(dtype, mode):
    side = 2000                                               # 4 Mpx
    a = np.tile(np.linspace(0, 4000, side, dtype=np.float64), (side, 1)).astype(dtype)
    data = _tiff(a, mode)
    del a
    tracemalloc.start()
    try:
        out = view(data, (200, 200))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.size == (200, 200) and out.mode == "RGB"
    assert peak < side * side, f"{peak / side / side:.1f} bytes per input pixel traced"


@pytest.mark.parametrize("mode,dtype,top", [("F", np.float32, None), ("I;16", np.uint16, 65535.0)])
def test_high_bit_conversion_matches_the_reference(mode, dtype, top):
    rng = np.random.default_rng(0)
    a = (rng.random((37, 53)) * (900 if mode == "F" else 65535)).astype(dtype)
    if mode == "F":
        a[0, 0], a[0, 1] = -3.0, 2000.0                          # clipped below 0, the max sets the scale
    img = Image.fromarray(a) if mode == "I;16" else Image.fromarray(a, "F")
    top = top or max(float(a.max()), 255.0)
    ref = np.clip(a.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
    got = np.asarray(to_rgb(img))
    assert got.shape == (37, 53, 3) and (got[..., 0] == ref).all()
