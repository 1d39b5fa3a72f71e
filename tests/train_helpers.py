"""Shared fixtures of the train/reward/protocol tests: a tiny model, a small built-format dataset, a
scripted stand-in for the random policy (so the tool path is exercised), and a config builder."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_image(seed: int, size=(224, 168)):
    from PIL import Image, ImageDraw
    img = Image.new("RGB", size, (seed * 40 % 255, 120, 200 - seed * 30 % 200))
    d = ImageDraw.Draw(img)
    d.rectangle([10 + seed, 10, 60 + 3 * seed, 50], fill=(255, 255, 0))
    d.text((20, 80), f"{seed * 7}", fill=(0, 0, 0))
    return img


def write_dataset(out: Path, n: int = 4, low=(56, 56), high=(112, 112), split: str = "train") -> Path:
    """A curated-format dataset dir (contract 1 + `use_tool`) with n rows; answers are the digits drawn in the
    image; even rows are marked as needing the high-res view."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import datasets

    from vtdata.schema import COLUMNS, arrow_schema

    rows = []
    for i in range(n):
        buf = io.BytesIO()
        make_image(i).save(buf, format="PNG")
        b = buf.getvalue()
        rows.append({"id": f"s{i}", "source": "test", "task": "ocr", "question": f"What number is written? ({i})",
                     "answers": [str(i * 7)], "answer_type": "number", "choices": None,
                     "image": {"bytes": b, "path": None}, "image_sha256": hashlib.sha256(b).hexdigest(),
                     "width": 224, "height": 168, "low_width": low[0], "low_height": low[1],
                     "high_width": high[0], "high_height": high[1], "split": split, "meta": "{}",
                     "use_tool": i % 2 == 0})
    (out / "data").mkdir(parents=True, exist_ok=True)
    cols = COLUMNS + ["use_tool"]
    table = pa.Table.from_pylist([{c: r[c] for c in cols} for r in rows],
                                 schema=arrow_schema({"use_tool": datasets.Value("bool")}))
    pq.write_table(table, out / "data" / f"{split}-00000.parquet")
    (out / "build.json").write_text(json.dumps({"rows": n}))
    return out


_TINY = {}


def tiny_model(tmp_root: Path) -> Path:
    from vttrain.models.build import init_tiny
    key = str(tmp_root)
    if key not in _TINY:
        _TINY[key] = init_tiny(tmp_root / "tiny", seed=0)
    return _TINY[key]


def config(model: Path, data: Path, out: Path, **kw):
    from vttrain.grpo.config import parse_config
    base = dict(model=str(model), data_dir=str(data), output_dir=str(out), num_generations=4,
                per_device_train_batch_size=4, max_steps=2, max_completion_length=256, learning_rate=1e-3,
                logging_steps=1, save_strategy="no", report_to="none", seed=0, temperature=1.0,
                use_cpu=True, dataloader_num_workers=0, beta=0.0)
    base.update(kw)
    args = []
    for k, v in base.items():
        args += [f"--{k}", str(v)]
    return parse_config(None, args)
