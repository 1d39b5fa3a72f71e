"""Shared helpers of the score-judge / curate tests: a small built dataset, scripted policies."""
from __future__ import annotations

import base64
import io
import tempfile
from functools import lru_cache
from pathlib import Path

from vttrain.rollout.policy import Generation, Policy, as_request

MANIFEST = """name: {name}
seed: 0
val_fraction: {val_fraction}
shard_rows: 8
resolution: {{min_pixels: 12544, max_pixels: 50176, multiple: 56, low_factor: 2}}
sources:
  - {{name: synth-general, kind: synthetic, task: general, take: {n_general}}}
  - {{name: synth-ocr, kind: synthetic, task: ocr, take: {n_ocr}}}
"""


@lru_cache(maxsize=None)
def built_data(n_general: int, n_ocr: int, val_fraction: float = 0.0, name: str = "score-test") -> Path:
    """A built dataset (vt build-data on vt's synthetic source), once per process and arguments."""
    from vtdata.build import BuildDataConfig, build
    root = Path(tempfile.mkdtemp(prefix=f"vt-{name}-"))
    (root / "m.yaml").write_text(MANIFEST.format(name=name, val_fraction=val_fraction, n_general=n_general,
                                                 n_ocr=n_ocr))
    build(BuildDataConfig(manifest=str(root / "m.yaml"), out=str(root / "data"), db=str(root / "build.duckdb")))
    return root / "data"


def small_data(n_general: int = 6, n_ocr: int = 6) -> Path:
    """The score-judge / curate tests' set: train split only."""
    return built_data(n_general, n_ocr)


def samples(data: Path) -> list[dict]:
    from vtdata.dataset import iter_samples
    return list(iter_samples(data, columns=["id", "source", "question", "answers", "answer_type", "choices",
                                             "low_width", "low_height", "high_width", "high_height"]))


def rollout_keys(cfg, policy, data: Path) -> tuple[str, dict]:
    """(the protocol hash score-judge uses for cfg and policy, {sample id: input_sha}) of a dataset."""
    from vtdata import provenance
    from vtdata.dataset import iter_samples
    from vttrain.rollout.engine import view_image
    from vttrain.score import protocol_settings
    proto = provenance.digest(protocol_settings(cfg, policy))
    return proto, {s["id"]: provenance.input_sha(s, view_image) for s in iter_samples(data)}


class NoCallPolicy(Policy):
    """A policy that must not be asked (every rollout is already stored)."""
    identity = "scripted:none"

    async def agenerate(self, requests):
        raise AssertionError(f"policy called for {len(requests)} requests")


class CountingPolicy(Policy):
    """Wraps a policy and counts the rollouts it produced."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.identity, self.rollouts = inner, inner.identity, 0

    async def agenerate(self, requests):
        gens = await self.inner.agenerate(requests)
        self.rollouts += len(gens)
        return gens


class ScriptedPolicy(Policy):
    """Answers `answer_for(question, (w, h), index)` for each sample; no model."""
    identity = "scripted:answers"

    def __init__(self, answer_for) -> None:
        self.answer_for = answer_for

    async def agenerate(self, requests):
        out = []
        for i, r in enumerate(as_request(x) for x in requests):
            user = r.messages[-1]["content"]
            image = next(p["image"] for p in user if p.get("type") == "image")
            question = next(p["text"] for p in user if p.get("type") == "text")
            for j in range(r.n):
                text = self.answer_for(question, image.size, j)
                out.append(Generation(text or "", len((text or "").split()), (image.size[0] // 28) * (image.size[1] // 28),
                                      0.0, "stop", i, j, error=None if text is not None else "scripted failure"))
        return out


def decode_data_url(url: str):
    from PIL import Image
    head, b64 = url.split(",", 1)
    assert head == "data:image/png;base64", head
    return Image.open(io.BytesIO(base64.b64decode(b64)))
