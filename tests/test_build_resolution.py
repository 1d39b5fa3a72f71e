"""The two views: size arithmetic (1/4 of the visual tokens), EXIF, modes, LANCZOS, policy checks."""
import io
import random

import pytest
from PIL import Image

from build_helpers import image_bytes
from vtdata.console import VtError
from vtdata.resolution import ResolutionPolicy, decode, high_size, view, view_of, view_sizes


def tokens(w, h):  # Qwen2.5-VL: patch 14, 2x2 merge -> one token per 28x28
    assert w % 28 == 0 and h % 28 == 0
    return (w // 28) * (h // 28)


@pytest.mark.parametrize("policy", [ResolutionPolicy(), ResolutionPolicy(224 * 224, 448 * 448)])
def test_view_sizes_snap_clamp_and_quarter_tokens(policy):
    rng = random.Random(0)
    sizes = [(rng.randint(20, 6000), rng.randint(20, 6000)) for _ in range(3000)] + [(640, 480), (4000, 3000), (30, 30)]
    for w, h in sizes:
        if max(w, h) > 50 * min(w, h):
            continue
        (lw, lh), (hw, hh) = view_sizes(w, h, policy)
        assert hw % 56 == 0 and hh % 56 == 0 and hw >= 56 and hh >= 56
        assert (lw * 2, lh * 2) == (hw, hh)
        assert tokens(lw, lh) * 4 == tokens(hw, hh)
        assert hw * hh <= policy.max_pixels
        if max(w, h) < 8 * min(w, h):  # the 56-px floor only distorts very elongated images
            assert hw * hh >= policy.min_pixels * 0.75
            if min(hw, hh) >= 168:  # with 3+ tiles on the short side the aspect ratio is kept closely
                assert abs(hw / hh - w / h) / (w / h) < 0.3


def test_high_size_known_values():
    # inside the bounds: only snapped to 56-multiples, choosing the snap that keeps 4:3 exactly
    assert high_size(640, 480) == (672, 504)
    assert high_size(1120, 560) == (1120, 560)  # already on the grid and inside: unchanged
    # too big: sqrt scale to fit 2048^2 then snap (aspect kept)
    w, h = high_size(8000, 6000)
    assert w * h <= 2048 * 2048 and w * h > 0.9 * 2048 * 2048 and abs(w / h - 4 / 3) < 0.05
    # too small: upscaled to at least 512^2
    w, h = high_size(100, 100)
    assert w == h and w * h >= 512 * 512
    assert view_sizes(3000, 2000, ResolutionPolicy(low_factor=4, multiple=112))[0][0] * 4 == high_size(
        3000, 2000, ResolutionPolicy(low_factor=4, multiple=112))[0]


def test_policy_validation_names_the_bad_key():
    with pytest.raises(VtError, match="resolution.max_pixel"):
        ResolutionPolicy.from_dict({"max_pixel": 5})
    with pytest.raises(VtError, match="min_pixels"):
        ResolutionPolicy(min_pixels=10 ** 7, max_pixels=10 ** 6)
    with pytest.raises(VtError, match="divisible"):
        ResolutionPolicy(multiple=56, low_factor=3)


def test_view_is_lanczos_of_the_original():
    img = Image.effect_noise((300, 200), 60).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    v = view(buf.getvalue(), (112, 56))
    assert v.mode == "RGB" and v.size == (112, 56)
    assert v.tobytes() == img.resize((112, 56), Image.Resampling.LANCZOS).tobytes()
    assert v.tobytes() != img.resize((112, 56), Image.Resampling.NEAREST).tobytes()


def test_exif_orientation_applied():
    img = Image.new("RGB", (120, 60), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))  # red block top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    v = view(buf.getvalue(), (60, 120))
    assert v.size == (60, 120)
    r, g, b = v.getpixel((55, 5))  # after a 90 deg clockwise turn the block is top-right
    assert r > 200 and g < 60
    assert v.getpixel((5, 5))[1] > 200  # top-left is white now


@pytest.mark.parametrize("mode,expect", [
    ("RGBA", (255, 255, 255)),  # fully transparent -> white background
    ("LA", (255, 255, 255)),
    ("L", (128, 128, 128)),
    ("CMYK", None),
    ("P", None),
    ("1", None),
])
def test_every_mode_becomes_rgb(mode, expect):
    color = {"RGBA": (10, 20, 30, 0), "LA": (0, 0), "L": 128, "CMYK": (0, 255, 255, 0), "P": 3, "1": 1}[mode]
    buf = io.BytesIO()
    Image.new(mode, (64, 64), color).save(buf, "TIFF" if mode == "CMYK" else "PNG")
    v = view(buf.getvalue(), (56, 56))
    assert v.mode == "RGB" and v.size == (56, 56)
    if expect:
        assert v.getpixel((10, 10)) == expect
    if mode == "CMYK":
        r, g, b = v.getpixel((10, 10))
        assert r > 200 and g < 50 and b < 50  # magenta+yellow = red


def test_16_bit_is_rescaled_not_clipped():
    img = Image.new("I;16", (64, 64), 0)
    img.paste(65535, (0, 0, 32, 64))
    img.paste(32896, (32, 0, 64, 64))  # ~ half
    buf = io.BytesIO()
    img.save(buf, "PNG")
    rgb = decode(buf.getvalue())
    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert abs(rgb.getpixel((50, 5))[0] - 128) <= 1


def test_view_of_row_uses_row_sizes_and_accepts_decoded_images():
    buf = io.BytesIO()
    Image.effect_noise((300, 150), 60).convert("RGB").save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    (lw, lh), (hw, hh) = view_sizes(300, 150, ResolutionPolicy(112 * 112, 224 * 224))
    row = {"image": data, "low_width": lw, "low_height": lh, "high_width": hw, "high_height": hh}
    assert view_of(row, "low").size == (lw, lh) and view_of(row, "high").size == (hw, hh)
    row_dec = dict(row, image=Image.open(io.BytesIO(data)))  # what `datasets` hands over: a decoded image
    for which in ("low", "high"):
        assert view_of(row_dec, which).tobytes() == view_of(row, which).tobytes()
    with pytest.raises(VtError):
        view_of(row, "medium")
    for bad in ({"bytes": None, "path": None}, "/nonexistent/x.png", None):
        with pytest.raises(VtError, match="no usable image"):
            view_of(dict(row, image=bad), "low")


def test_view_of_makes_each_view_of_a_sample_once(monkeypatch):
    """A command asks for the same views again (score-judge per view, eval per mode, training per step):
    each (sample, view) is decoded and resized once; another image under the same id is not confused."""
    from vtdata import resolution
    made = []
    real = resolution._make_view
    monkeypatch.setattr(resolution, "_make_view", lambda row, size: made.append(size) or real(row, size))
    monkeypatch.setattr(resolution, "_VIEWS", type(resolution._VIEWS)())
    a, b = image_bytes((300, 150), color=(200, 30, 30)), image_bytes((300, 150), color=(10, 200, 30))
    (lw, lh), (hw, hh) = view_sizes(300, 150, ResolutionPolicy(112 * 112, 224 * 224))
    row = {"id": "s0", "image_sha256": "a", "image": a, "low_width": lw, "low_height": lh, "high_width": hw,
           "high_height": hh}
    first = view_of(row, "low")
    for _ in range(3):
        assert view_of(dict(row), "low") is first
    assert view_of(row, "high").size == (hw, hh) and len(made) == 2
    other = view_of(dict(row, image_sha256="b", image=b), "low")
    assert other.tobytes() == view(b, (lw, lh)).tobytes() != first.tobytes() and len(made) == 3
    unkeyed = dict(row, id=None)  # no id: nothing to key a cache on, made each time
    view_of(unkeyed, "low"), view_of(unkeyed, "low")
    assert len(made) == 5


def test_a_samples_two_views_share_one_decode_with_the_same_pixels(monkeypatch):
    """A PNG decodes the same for either view, so the sample's low and high views share one decode; a JPEG
    decodes at a scale that depends on the view (draft), so each view decodes its own. Either way the pixels
    are exactly those of view(bytes, size)."""
    from vtdata import resolution
    decodes = []
    real = resolution.decode
    monkeypatch.setattr(resolution, "decode", lambda *a, **k: decodes.append(a[1:]) or real(*a, **k))
    resolution.clear_views()
    (lw, lh), (hw, hh) = view_sizes(900, 600, ResolutionPolicy(56 * 56, 112 * 112))
    for fmt, n_decodes in (("PNG", 1), ("JPEG", 2)):
        buf = io.BytesIO()  # noise: a view made at another decode scale would differ
        Image.frombytes("RGB", (900, 600), random.Random(0).randbytes(900 * 600 * 3)).save(buf, format=fmt)
        data = buf.getvalue()
        row = {"id": fmt, "image_sha256": fmt, "image": data, "low_width": lw, "low_height": lh,
               "high_width": hw, "high_height": hh}
        decodes.clear()
        got = {w: view_of(row, w).tobytes() for w in ("low", "high")}
        assert len(decodes) == n_decodes, (fmt, decodes)
        assert got == {"low": view(data, (lw, lh)).tobytes(), "high": view(data, (hw, hh)).tobytes()}
    resolution.clear_views()


def test_bomb_and_garbage_are_value_errors():
    with pytest.raises(ValueError, match="decompression bomb"):
        view(image_bytes((400, 400)), (56, 56), pixel_cap=100_000)
    with pytest.raises(ValueError, match="empty image"):
        view(b"", (56, 56))
    with pytest.raises(ValueError, match="not a readable image"):
        view(b"not an image at all", (56, 56))
    jpg = image_bytes((300, 300), "JPEG")
    with pytest.raises(ValueError, match="truncated"):
        view(jpg[: len(jpg) // 2], (56, 56))
