"""The miniature task family of `kind: synthetic` (`family: miniature`): small images, small answer
spaces, and a detail class that the low view provably loses.

Every image (112 x 112 by default) has a coloured background (6 colours), one big black or white shape
and one small grey box (28 x 28, on the 28-pixel grid: exactly one visual token of the high view) filled
with a period-2 pattern of two greys:
- task general: "What colour is the background?". The low view (56 x 56) still shows it plainly. (A
  question about the shape's colour was tried first: a ~1 M-parameter model trained from scratch had not
  learned it after 1,000 SFT steps, while the background's colour reaches every visual token.)
- task ocr ("detail"): "What pattern fills the small box?" -> horizontal | vertical | checkered | plain.
  horizontal/vertical stripes and the checkerboard alternate a dark and a light grey every pixel; plain is
  their exact mean. Halving each side averages every 2 x 2 block, so all four become the same flat grey:
  the four classes' low views agree within a few grey levels (tests/test_miniature.py bounds it), while
  the high view shows them plainly.

Deterministic by (seed, task, index). The same generator makes `vt init-model mini`'s warm-start data
(`sample()`, under its own seed namespace, so it never overlaps a built dataset's rows).
"""
from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
          "purple": (140, 60, 180), "orange": (245, 130, 30)}
PATTERNS = ("horizontal", "vertical", "checkered", "plain")
SHAPES = ("circle", "square", "triangle")
QUESTIONS = {"general": "What colour is the background?", "ocr": "What pattern fills the small box?"}
ANSWERS = {"general": tuple(COLORS), "ocr": PATTERNS}
BOX = 28  # side of the pattern box in the original image (one 28 x 28 visual token at the high view)
# The pattern's contrast ramps up over the box's outer 3 pixels: a hard edge would let the LANCZOS
# filter's ringing differ by class at the border (up to ~25 grey levels); the ramp keeps the four classes'
# low views within a few levels of each other everywhere, at full contrast inside.
TAPER = (0.2, 0.5, 0.8)


def sample(task: str, seed, i: int, size: int = 112) -> dict:
    """The spec of row `i`: question, answer and everything `render` draws."""
    rng = random.Random(f"vt-miniature:{seed}:{task}:{i}")
    cells = size // BOX
    box_x, box_y = BOX * rng.randrange(cells), BOX * rng.randrange(cells)
    r = rng.randint(size // 5, size // 4)  # a big shape: its colour reaches many visual tokens
    cx = cy = None
    while cx is None:  # a centre whose disc stays in the image and off the box (shrink when none fits)
        for _ in range(200):
            x, y = rng.randint(r + 1, size - r - 2), rng.randint(r + 1, size - r - 2)
            if x + r < box_x - 2 or x - r > box_x + BOX + 1 or y + r < box_y - 2 or y - r > box_y + BOX + 1:
                cx, cy = x, y
                break
        else:
            r -= 2
    dark = rng.randrange(0, 40, 2)
    light = rng.randrange(216, 256, 2)
    spec = {"size": size, "color": rng.choice(sorted(COLORS)), "ink": rng.choice(((250, 250, 250), (15, 15, 15))),
            "shape": rng.choice(SHAPES), "cx": cx, "cy": cy, "r": r,
            "box": (box_x, box_y), "pattern": rng.choice(PATTERNS), "grey": (dark, light)}
    answer = spec["color"] if task == "general" else spec["pattern"]
    return {"question": QUESTIONS[task], "answer": answer, "spec": spec}


def draw_shape(d: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, fill) -> None:
    """A circle, square or triangle of radius r around (cx, cy) (also the `shapes` family's)."""
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def image(spec: dict) -> Image.Image:
    s = spec["size"]
    img = Image.new("RGB", (s, s), COLORS[spec["color"]])
    d = ImageDraw.Draw(img)
    draw_shape(d, spec["shape"], spec["cx"], spec["cy"], spec["r"], spec["ink"])
    x0, y0 = spec["box"]
    dark, light = spec["grey"]
    px = img.load()
    mid, amp = (dark + light) / 2, (light - dark) / 2
    for y in range(BOX):
        for x in range(BOX):
            sign = {"horizontal": y % 2, "vertical": x % 2, "checkered": (x + y) % 2, "plain": 0.5}[spec["pattern"]]
            taper = TAPER[min(x, y, BOX - 1 - x, BOX - 1 - y)] if min(x, y, BOX - 1 - x, BOX - 1 - y) < len(TAPER) else 1.0
            g = round(mid + amp * taper * (2 * sign - 1))
            px[x0 + x, y0 + y] = (g, g, g)
    return img


def render(spec: dict) -> bytes:
    buf = io.BytesIO()
    image(spec).save(buf, format="PNG")  # lossless: JPEG would blur the period-2 pattern
    return buf.getvalue()
