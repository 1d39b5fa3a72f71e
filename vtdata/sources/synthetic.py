"""`kind: synthetic` — a procedural PIL generator of VQA rows, deterministic by (seed, task, index).

task general: big coloured shapes; questions about colours, shapes, counts and positions, which the
    low view (half width and height) still answers.
task ocr: small printed text: serial labels, tiny chart value labels, document lines, words. The text
    is sized from the resolution policy so that its font size is ~9 px in the HIGH view and so ~4.5 px in
    the low view: readable at high res, unreadable at low res by construction.
"""
from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFont

from vtdata.console import VtError
from vtdata.resolution import ResolutionPolicy, view_sizes
from vtdata.sources import Lazy, miniature, sufficiency

KEYS = {"count": "how many rows to generate (default: the source's take)",
        "size": "[min_side, max_side] of the generated images (default [560, 880]; miniature: [112, 112])",
        "family": "`shapes` (default: shapes, charts, documents, words), `sufficiency` (one box-pattern question "
                  "whose answer the low view keeps or loses by the pattern's scale; vtdata/sources/sufficiency.py) "
                  "or `miniature` (colour vs box-pattern questions on 112 px images; vtdata/sources/miniature.py)",
        "scale": "family sufficiency, task ocr: the pattern's scale, `fine` (1-px stripes: only the high view "
                 "shows them), `coarse` (4-px stripes: the low view shows them too) or an even period of 2..16 px",
        "location_cue": "family sufficiency: true draws a faint fixed tint per quadrant of the image (location made "
                        "visible in content, for the miniature's zoom tool; manifests/sufficiency-zoom.yaml)"}
FAMILIES = ("shapes", "miniature", "sufficiency")
REQUIRED: tuple[str, ...] = ()

COLORS = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
          "purple": (140, 60, 180), "orange": (245, 130, 30), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")
WORDS = ("amber", "bridge", "canyon", "delta", "ember", "falcon", "garnet", "harbor", "island", "jasper",
         "kernel", "lantern", "meadow", "nectar", "orbit", "pepper", "quartz", "raven", "saddle", "timber",
         "umbra", "velvet", "walnut", "xenon", "yonder", "zephyr", "marble", "copper", "silver", "basil")
FIELDS = ("invoice number", "order date", "total amount", "account code", "customer id", "due date")
HIGH_TEXT_PX = 9  # font size of OCR text in the high view (4.5 px in the low view)


def open(spec: dict, ctx):  # noqa: A001 - the source interface
    count = spec.get("count", spec.get("take"))
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise VtError(f"source {spec['name']}: synthetic needs an integer `count` (or `take`)")
    family = spec.get("family", "shapes")
    if family not in FAMILIES:
        raise VtError(f"source {spec['name']}: unknown synthetic family {family!r} (known: {', '.join(FAMILIES)})")
    for key in ("scale", "location_cue"):
        if key in spec and family != "sufficiency":
            raise VtError(f"source {spec['name']}: `{key}` applies to `family: sufficiency` only")
    cue = spec.get("location_cue", False)
    if not isinstance(cue, bool):
        raise VtError(f"source {spec['name']}: `location_cue` must be true or false, got {cue!r}")
    if family in ("miniature", "sufficiency"):
        size = spec.get("size", [112, 112])
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]
                and isinstance(size[0], int) and 84 <= size[0] <= 1024 and size[0] % 4 == 0):
            raise VtError(f"source {spec['name']}: {family} size must be [n, n] with n a multiple of 4 in 84..1024, "
                          f"got {size!r}")
        if family == "miniature":
            return Miniature(ctx.task, ctx.seed, count, size[0])
        scale = spec.get("scale", "fine")
        try:
            sufficiency.period_of(scale)
        except ValueError as err:
            raise VtError(f"source {spec['name']}: {err}") from None
        return Sufficiency(ctx.task, ctx.seed, count, size[0], scale, cue)
    size = spec.get("size", [560, 880])
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(x, int) for x in size)
            and 28 <= size[0] <= size[1] <= 8192):
        raise VtError(f"source {spec['name']}: size must be [min_side, max_side] in pixels (28..8192), got {size!r}")
    size = tuple(size)
    return Synthetic(ctx.task, ctx.seed, count, size, ctx.policy or ResolutionPolicy())


class Synthetic:
    def __init__(self, task, seed, count, size, policy):
        self.task, self.seed, self.count, self.size, self.policy = task, seed, count, size, policy

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        rng = random.Random(f"vt-synthetic:{self.seed}:{self.task}:{i}")
        w, h = rng.randint(*self.size), rng.randint(*self.size)
        if self.task == "ocr":
            (_, _), (hw, _) = view_sizes(w, h, self.policy)
            font_px = max(6, round(HIGH_TEXT_PX * w / hw))
            spec = rng.choice((_label, _chart, _document, _word))(rng, w, h, font_px)
        else:
            spec = rng.choice((_count, _color, _shape, _position))(rng, w, h)
        spec.update(w=w, h=h, bg=tuple(rng.randint(225, 250) for _ in range(3)))
        return {"source_row": i, "question": spec.pop("question"), "answers": spec.pop("answers"),
                "answer_type": spec.pop("answer_type"), "choices": spec.pop("choices", None),
                "meta": {"template": spec["template"], "generator": "vt-synthetic-1"},
                "image": Lazy(render, (spec,))}


class Miniature:
    """`family: miniature` rows (vtdata/sources/miniature.py)."""

    def __init__(self, task, seed, count, size):
        self.task, self.seed, self.count, self.size = task, seed, count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        s = miniature.sample(self.task, self.seed, i, self.size)
        return {"source_row": i, "question": s["question"], "answers": [s["answer"]], "answer_type": "open",
                "choices": None, "meta": {"template": "colour" if self.task == "general" else "pattern",
                                          "generator": "vt-miniature-1"},
                "image": Lazy(miniature.render, (s["spec"],))}


class Sufficiency(Miniature):
    """`family: sufficiency` rows (vtdata/sources/sufficiency.py)."""

    def __init__(self, task, seed, count, size, scale, cue=False):
        super().__init__(task, seed, count, size)
        self.scale, self.cue = scale, cue

    def __getitem__(self, i: int) -> dict:
        s = sufficiency.sample(self.task, self.seed, i, self.size, self.scale, self.cue)
        meta = {"template": "colour" if self.task == "general" else "pattern", "generator": "vt-sufficiency-1"}
        if self.task == "ocr":
            meta |= {"period": s["spec"]["period"], "phase": s["spec"]["phase"]}
        return {"source_row": i, "question": s["question"], "answers": [s["answer"]], "answer_type": "open",
                "choices": None, "meta": meta, "image": Lazy(sufficiency.render, (s["spec"],))}


# ---- general: layouts of big shapes on a grid ---------------------------------------------------
def _objects(rng, w, h, n, shapes=None):
    cols, rows = 3, 2
    cells = rng.sample([(c, r) for c in range(cols) for r in range(rows)], n)
    colors = rng.sample(sorted(COLORS), n)
    r = int(min(w / cols, h / rows) * rng.uniform(0.25, 0.35))
    out = []
    for k, (c, row) in enumerate(cells):
        cx = int((c + 0.5) * w / cols + rng.uniform(-0.1, 0.1) * w / cols)
        cy = int((row + 0.5) * h / rows + rng.uniform(-0.1, 0.1) * h / rows)
        out.append({"shape": shapes[k] if shapes else rng.choice(SHAPES), "color": colors[k],
                    "cx": cx, "cy": cy, "r": r, "col": c})
    return out


def _count(rng, w, h):
    objs = _objects(rng, w, h, rng.randint(2, 6))
    shape = rng.choice(SHAPES)
    n = sum(o["shape"] == shape for o in objs)
    return {"template": "count", "objects": objs, "question": f"How many {shape}s are in the image?",
            "answers": [str(n)], "answer_type": "number"}


def _color(rng, w, h):
    n = rng.randint(1, 4)
    target = rng.choice(SHAPES)
    others = [s for s in SHAPES if s != target]
    objs = _objects(rng, w, h, n, [target] + [rng.choice(others) for _ in range(n - 1)])
    return {"template": "color", "objects": objs, "question": f"What color is the {target}?",
            "answers": [objs[0]["color"]], "answer_type": "open"}


def _shape(rng, w, h):
    objs = _objects(rng, w, h, rng.randint(1, 4))
    t = rng.choice(objs)
    return {"template": "shape", "objects": objs, "question": f"What shape is the {t['color']} object?",
            "answers": [t["shape"]], "answer_type": "open"}


def _position(rng, w, h):
    while True:
        objs = _objects(rng, w, h, rng.randint(2, 4))
        a, b = rng.sample(objs, 2)
        if a["col"] != b["col"]:
            break
    side = "left" if a["cx"] < b["cx"] else "right"
    q = f"Is the {a['color']} {a['shape']} to the left or to the right of the {b['color']} {b['shape']}?"
    return {"template": "position", "objects": objs, "question": q, "answers": [side],
            "choices": ["left", "right"], "answer_type": "mc"}


# ---- ocr: small text, sized for the policy's high view -------------------------------------------
def _code(rng):
    return f"{rng.choice('ABCDEFGHKMNPRSTUVWXYZ')}{rng.randint(2, 9)}-{rng.randint(1000, 9999)}"


def _label(rng, w, h, fp):
    code = _code(rng)
    objs = _objects(rng, w, h, rng.randint(1, 3))
    return {"template": "label", "objects": objs, "texts": [(rng.randint(10, w // 2), rng.randint(10, h - 4 * fp),
            f"SN {code}", fp, True)], "question": "What is the serial number (SN) printed on the small label?",
            "answers": [code], "answer_type": "anls"}


def _chart(rng, w, h, fp):
    n = rng.randint(3, 6)
    colors = rng.sample(sorted(COLORS), n)
    vals = [rng.randint(10, 99) for _ in range(n)]
    top, base, left = int(h * 0.15), int(h * 0.85), int(w * 0.1)
    bw = (w * 0.8) / n
    bars, texts = [], []
    for k, (c, v) in enumerate(zip(colors, vals)):
        x0 = int(left + k * bw + bw * 0.15)
        y0 = int(base - (base - top) * v / 100)
        bars.append((x0, y0, int(x0 + bw * 0.7), base, c))
        texts.append((x0 + int(bw * 0.2), y0 - int(fp * 1.4), str(v), fp, False))
    k = rng.randrange(n)
    return {"template": "chart", "bars": bars, "texts": texts,
            "question": f"What value is written above the {colors[k]} bar?", "answers": [str(vals[k])],
            "answer_type": "number"}


def _document(rng, w, h, fp):
    values = {"invoice number": str(rng.randint(10000, 99999)), "order date":
              f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
              "total amount": f"{rng.randint(10, 9999)}.{rng.randint(0, 99):02d}", "account code": _code(rng),
              "customer id": f"C{rng.randint(100000, 999999)}",
              "due date": f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
    fields = rng.sample(FIELDS, rng.randint(3, len(FIELDS)))
    y, texts = int(h * 0.1), []
    for f in fields:
        texts.append((int(w * 0.1), y, f"{f.capitalize()}: {values[f]}", fp, False))
        y += int(fp * rng.uniform(1.8, 3.0))
    f = rng.choice(fields)
    return {"template": "document", "page": True, "texts": texts,
            "question": f"What is the {f} written on the document?", "answers": [values[f]], "answer_type": "anls"}


def _word(rng, w, h, fp):
    word = rng.choice(WORDS)
    objs = _objects(rng, w, h, rng.randint(1, 2))
    return {"template": "word", "objects": objs, "texts": [(rng.randint(10, w // 2), h - 3 * fp, word, fp, False)],
            "question": "Which word is printed in small letters near the bottom of the image?",
            "answers": [word], "answer_type": "open"}


def render(spec: dict) -> bytes:
    """Draw a spec made by the templates above; OCR images are PNG, general ones JPEG (both occur)."""
    img = Image.new("RGB", (spec["w"], spec["h"]), spec["bg"])
    d = ImageDraw.Draw(img)
    if spec.get("page"):
        d.rectangle((int(spec["w"] * 0.05), int(spec["h"] * 0.05), int(spec["w"] * 0.95), int(spec["h"] * 0.95)),
                    fill=(255, 255, 255), outline=(120, 120, 120))
    for o in spec.get("objects", ()):
        miniature.draw_shape(d, o["shape"], o["cx"], o["cy"], o["r"], COLORS[o["color"]])
    for x0, y0, x1, y1, c in spec.get("bars", ()):
        d.rectangle((x0, y0, x1, y1), fill=COLORS[c])
    for x, y, text, fp, boxed in spec.get("texts", ()):
        font = ImageFont.load_default(size=fp)
        if boxed:
            bx = d.textbbox((x, y), text, font=font)
            d.rectangle((bx[0] - 3, bx[1] - 3, bx[2] + 3, bx[3] + 3), fill=(255, 255, 255), outline=(0, 0, 0))
        d.text((x, y), text, fill=(40, 40, 40), font=font)
    buf = io.BytesIO()
    if spec["template"] in ("count", "color", "shape", "position"):
        img.save(buf, format="JPEG", quality=90)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()
