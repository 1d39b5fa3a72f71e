"""Shared helpers for the data tests (build-data, sql, export)."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "manifests" / "demo.yaml"
SMALL_POLICY = {"min_pixels": 112 * 112, "max_pixels": 224 * 224}


def image_bytes(size=(96, 64), fmt="PNG", mode="RGB", color=(200, 30, 30), **save) -> bytes:
    c = color if mode in ("RGB", "RGBA", "CMYK") or isinstance(color, int) else 128
    if mode == "CMYK" and len(color) == 3:
        c = (0, 200, 200, 0)
    if mode == "RGBA" and len(color) == 3:
        c = (*color, 255)
    buf = io.BytesIO()
    Image.new(mode, size, c).save(buf, format=fmt, **save)
    return buf.getvalue()


def write_manifest(dirpath: Path, sources: list[dict], **top) -> Path:
    top.setdefault("seed", 0)
    top.setdefault("val_fraction", 0.25)
    top.setdefault("resolution", dict(SMALL_POLICY))
    path = Path(dirpath) / "manifest.yaml"
    path.write_text(yaml.safe_dump({**top, "sources": sources}, sort_keys=False))
    return path


def build(manifest, out, num_proc=1, db=None) -> dict:
    from vtdata.build import BuildDataConfig, build as _build

    return _build(BuildDataConfig(manifest=str(manifest), out=str(out), num_proc=num_proc,
                                  db=str(db) if db else None))


def vt(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-c", "from vt.cli import main; main()", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)
