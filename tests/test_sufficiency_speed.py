"""vtdata.sources.sufficiency draws its images with numpy and reads the box contrast from a crop: the same bytes and
the same floats as the per-pixel loops they replace (written out here as the reference)."""
import random

from PIL import Image

from vtdata.sources import sufficiency as s


def _image_by_pixel(spec):
    size, n = spec["size"], spec["box_size"]
    img = Image.new("RGB", (size, size), s.COLORS[spec["color"]])
    x0, y0 = spec["box"]
    dark, light = spec["grey"]
    mid, amp = (dark + light) / 2, (light - dark) / 2
    noise = random.Random(spec["noise"])
    px = img.load()
    period, phase = spec["period"], spec["phase"]
    for y in range(n):
        for x in range(n):
            edge = min(x, y, n - 1 - x, n - 1 - y)
            a = amp * (s.TAPER[edge] if edge < len(s.TAPER) else 1.0)
            h, v = ((y + phase) % period) < period // 2, ((x + phase) % period) < period // 2
            on = {"horizontal": h, "vertical": v, "checkered": h != v}[spec["pattern"]]
            g = mid + a * (1 if on else -1) + noise.gauss(0.0, s.NOISE)
            px[x0 + x, y0 + y] = (min(255, max(0, round(g))),) * 3
    return s._tint(img, spec["cue"]) if spec.get("cue") else img


def _contrast_by_pixel(img, spec):
    k = img.size[0] / spec["size"]
    grey = img.convert("L")
    x0, y0, n = round(spec["box"][0] * k), round(spec["box"][1] * k), round(spec["box_size"] * k)
    m = max(1, round(4 * k))
    vals = [grey.getpixel((x, y)) for y in range(y0 + m, y0 + n - m) for x in range(x0 + m, x0 + n - m)]
    mean = sum(vals) / len(vals)
    return (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5


def test_images_and_contrast_match_the_per_pixel_reference():
    import io
    for i in range(24):
        task = ("general", "ocr")[i % 2]
        scale = ("fine", "coarse", 6)[i % 3]
        spec = s.sample(task, "speed", i, 112 if i % 4 else 64, scale, cue=(i % 5 == 0))["spec"]
        want = _image_by_pixel(spec)
        got = s.image(spec)
        assert got.mode == want.mode and got.tobytes() == want.tobytes(), (i, spec)
        buf = io.BytesIO()
        want.save(buf, format="PNG")
        assert s.render(spec) == buf.getvalue()
        for side in (spec["size"], spec["size"] // 2):
            view = got.resize((side, side), Image.LANCZOS)
            assert s.box_contrast(view, spec) == _contrast_by_pixel(view, spec)
