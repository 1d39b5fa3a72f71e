"""The image-decision task family of `kind: synthetic` (`family: sufficiency`): ONE detail question whose
answer the low view keeps on some images and loses on others, so that whether to ask for the high view can
only be read from the pixels.

Every image (112 x 112 by default) has a background of one of six colours and one grey box, a quarter of
the image (56 x 56: exactly one visual token of the 56 x 56 low view, 2 x 2 of the high view), at one of
the four quadrant positions, filled with a pattern of a dark and a light grey:
- task general: "What colour is the background?" (the low view shows it plainly);
- task ocr: "What pattern fills the grey box?" -> horizontal | vertical | checkered, stripes (or squares) of
  `period / 2` pixels. The scale is the source's `scale`:
  - `fine`, period 2 (1-px stripes): halving each side averages every 2 x 2 block, so the three patterns'
    low views agree within a few grey levels; only the high view answers;
  - `coarse`, period 8 (4-px stripes, phase a multiple of 4 px): the low view still shows 2-px stripes and
    the three patterns differ plainly;
  - any even period in 2..16 (`scale: 4`, `scale: 6`, ...): the resolvability curve's intermediate scales,
    with a random phase (period 4 keeps or loses its stripes at the low view depending on it).
The box's mean grey is (dark + light) / 2 for every pattern and scale up to its pixel noise (stripes are
balanced, the contrast taper at the box's edge is symmetric), so brightness gives nothing away. The question
text is identical for every scale. The taper and the noise keep the fine low views from carrying the answer
in the filter's edge residue (see TAPER).

With `cue` (the source option `location_cue`, manifests/sufficiency-zoom.yaml): location made visible in
content. A faint fixed tint per quadrant (red -CUE/2 on the left half, +CUE/2 on the right; blue the same from
top to bottom), the same for every pattern and colour, so it tells which quadrant a pixel is in and nothing about
the answer. The miniature's 2-layer vision tower on a uniform background does not encode where a token sits
(issue 19's probes, bench/location_probe.py); the tint puts it in the tokens' content so that the zoom tool's
box (a quadrant of the low view) is learnable. The box is one quadrant, so its tint is uniform: the grey-level
spread inside it is unchanged and the fine low views still look flat. (Issue 19's cue was a ramp, red and blue
+-16 levels across the image: with it the default warm-start seed never learnt where the box is in 1,650 SFT
steps, 7 of 8 seeds did; a +-16 tint had the box first and the patterns late, at up to 1,650 steps; this +-8 tint
learnt the patterns first and the box at step 600-1,400 in 8 of 8 seeds: docs/miniature.md.)

Deterministic by (seed, task, scale, index). The warm start (`vt init-model mini`) draws its SFT rows from
the same generator under its own seed namespace.
"""
from __future__ import annotations

import io
import math
import random

from PIL import Image

COLORS = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
          "purple": (140, 60, 180), "orange": (245, 130, 30)}
PATTERNS = ("horizontal", "vertical", "checkered")
QUESTIONS = {"general": "What colour is the background?", "ocr": "What pattern fills the grey box?"}
ANSWERS = {"general": tuple(COLORS), "ocr": PATTERNS}
SCALES = {"fine": 2, "coarse": 8}  # named scales -> period in pixels of the original image
# The shipped manifest's three sources (manifests/sufficiency.yaml): name -> (task, scale).
SOURCES = {"general": ("general", "fine"), "coarse": ("ocr", "coarse"), "fine": ("ocr", "fine")}
# Halving erases a 1-px pattern exactly only where its contrast is constant: wherever the contrast changes
# (the box's edge) the LANCZOS filter leaves a residue that differs by orientation. With a 3-px linear ramp
# that residue was 1-2 grey levels along whole edges, and a small MLP read the fine pattern off the low view on
# 100 % of held-out images; GRPO learnt the same and answered fine boxes directly (95 % right) instead of
# resizing. So the contrast ramps up over 14 px (raised cosine), which shrinks the residue several times, and
# every box pixel carries Gaussian grey noise (sd NOISE, the same for every pattern of an image), which buries
# what is left: the same MLP then reads 44 % (chance 33 %) after overfitting its training set. Symmetric, so the
# box's mean is (dark + light) / 2 up to the noise.
TAPER = tuple(0.5 - 0.5 * math.cos(math.pi * (k + 0.5) / 14) for k in range(14))
NOISE = 8.0
CUE = 16.0  # the location tint's swing between the halves, in levels of red (x) and blue (y); see the docstring


def period_of(scale) -> int:
    """A source's `scale` (fine | coarse | an even period of 2..16 pixels) as a period in pixels."""
    p = SCALES.get(scale, scale)
    if isinstance(p, bool) or not isinstance(p, int) or p < 2 or p > 16 or p % 2:
        raise ValueError(f"scale must be fine, coarse or an even period of 2..16 pixels, got {scale!r}")
    return p


def sample(task: str, seed, i: int, size: int = 112, scale="fine", cue: bool = False) -> dict:
    """The spec of row `i`: question, answer and everything `render` draws (`scale` matters for ocr only; `cue`
    adds the location tint, drawing nothing else differently)."""
    period = period_of(scale) if task == "ocr" else 2
    rng = random.Random(f"vt-sufficiency:{seed}:{task}:{scale if task == 'ocr' else ''}:{i}")
    half = size // 2
    box = (half * rng.randrange(2), half * rng.randrange(2))
    dark = rng.randrange(24, 48)  # 3 noise sds inside 0..255 (clipping would shift the mean)
    light = rng.randrange(208, 232, 2) + dark % 2  # dark + light even: the mean grey is a whole level
    # named scales keep the stripes on the low view's pixel grid (phase a multiple of period/2): the coarse
    # patterns then differ at the low view on every image, and the box mean is exact before the pixel noise (NOISE) is added
    phase = rng.randrange(0, period, period // 2) if scale in SCALES else rng.randrange(period)
    spec = {"size": size, "color": rng.choice(sorted(COLORS)), "box": box, "box_size": half,
            "pattern": rng.choice(PATTERNS), "period": period, "phase": phase, "grey": (dark, light),
            "noise": rng.getrandbits(32)}
    if cue:
        spec["cue"] = CUE
    answer = spec["color"] if task == "general" else spec["pattern"]
    return {"question": QUESTIONS[task], "answer": answer, "spec": spec}


def _box_levels(spec: dict):
    """The box's grey level before noise, mid + taper * amp * sign, per pixel (float64, rows = y)."""
    import numpy as np
    n, period, phase = spec["box_size"], spec["period"], spec["phase"]
    dark, light = spec["grey"]
    mid, amp = (dark + light) / 2, (light - dark) / 2
    i = np.arange(n)
    edge = np.minimum(np.minimum(i[None, :], i[:, None]), np.minimum(n - 1 - i[None, :], n - 1 - i[:, None]))
    taper = np.array(TAPER + (1.0,))[np.minimum(edge, len(TAPER))]
    h = np.broadcast_to((((i + phase) % period) < period // 2)[:, None], (n, n))
    v = np.broadcast_to((((i + phase) % period) < period // 2)[None, :], (n, n))
    on = {"horizontal": h, "vertical": v, "checkered": h != v}[spec["pattern"]]
    return mid + (amp * taper) * np.where(on, 1.0, -1.0)


def image(spec: dict) -> Image.Image:
    """The row's image: the background colour, the grey box (pattern, taper, noise drawn pixel by pixel in row
    order from the image's own generator), the location tint when the spec has one."""
    import numpy as np
    s, n = spec["size"], spec["box_size"]
    x0, y0 = spec["box"]
    gauss = random.Random(spec["noise"]).gauss  # drawn per image, not per pattern: it tells nothing about the answer
    noise = np.array([gauss(0.0, NOISE) for _ in range(n * n)]).reshape(n, n)
    grey = np.clip(np.round(_box_levels(spec) + noise), 0, 255).astype(np.uint8)
    a = np.empty((s, s, 3), dtype=np.uint8)
    a[:, :] = COLORS[spec["color"]]
    a[y0:y0 + n, x0:x0 + n] = grey[:, :, None]
    img = Image.fromarray(a)
    return _tint(img, spec["cue"]) if spec.get("cue") else img


def _tint(img: Image.Image, swing: float) -> Image.Image:
    """The location cue: red += swing / 2 on the right half (- on the left), blue the same by the bottom half."""
    import numpy as np
    a = np.asarray(img).astype(np.float32)
    s = a.shape[0]
    half = np.where(np.arange(s) < s // 2, -0.5, 0.5) * swing
    a[:, :, 0] += half[None, :]
    a[:, :, 2] += half[:, None]
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def render(spec: dict) -> bytes:
    buf = io.BytesIO()
    image(spec).save(buf, format="PNG")  # lossless: JPEG would blur the 1-px stripes
    return buf.getvalue()


def box_contrast(img, spec: dict) -> float:
    """What a view (a PIL image of any size, e.g. vt's LANCZOS low view) shows of the pattern: the standard
    deviation of the grey levels inside the box, its outer taper ring left out. ~0 where the view erased it."""
    k = img.size[0] / spec["size"]
    grey = img.convert("L")
    x0, y0, n = round(spec["box"][0] * k), round(spec["box"][1] * k), round(spec["box_size"] * k)
    m = max(1, round(4 * k))
    import numpy as np
    vals = np.asarray(grey.crop((x0 + m, y0 + m, x0 + n - m, y0 + n - m))).reshape(-1).tolist()  # row by row
    mean = sum(vals) / len(vals)
    return (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5


def low_view_contrast(data: bytes, spec: dict) -> float:
    """`box_contrast` of the half-size view (the low view vt's stages show)."""
    from vtdata.resolution import view
    s = spec["size"] // 2
    return box_contrast(view(data, (s, s)), spec)
