"""Shared helpers of the eval / report / demo tests: a small built set, the tiny model, a scripted
policy served over the loopback OpenAI-compatible server (real HTTP, the real `openai` policy backend)."""
from __future__ import annotations

import re
import tempfile
from functools import lru_cache
from pathlib import Path

from vtdata import protocol


def eval_data(n_general: int = 6, n_ocr: int = 6) -> Path:
    """A built dataset with a val split (vt build-data on the synthetic source), once per process."""
    from score_helpers import built_data
    return built_data(n_general, n_ocr, val_fraction=0.5, name="eval-test")


@lru_cache(maxsize=None)
def tiny_model() -> Path:
    from vttrain.models.build import init_tiny
    return init_tiny(Path(tempfile.mkdtemp(prefix="vt-eval-model-")) / "tiny", seed=0)


def val_rows(data: Path) -> list[dict]:
    from vtdata.dataset import iter_samples
    return list(iter_samples(data, split="val"))


def answer(text: str) -> str:
    return f"<think>I can read it.</think>\n<answer>{text}</answer>"


CALL = f"<think>Too small to read.</think>\n{protocol.CALL_EXAMPLE}"
BAD_CALL = '<think>Let me zoom.</think>\n<tool_call>{"name": "zoom_in", "arguments": {}}</tool_call>'


def _images(request: dict) -> list[str]:
    return [p["image_url"]["url"] for m in request["messages"] if isinstance(m.get("content"), list)
            for p in m["content"] if p.get("type") == "image_url"]


def _text(request: dict) -> str:
    out = []
    for m in request["messages"]:
        c = m.get("content")
        out += [c] if isinstance(c, str) else [p.get("text", "") for p in c if p.get("type") == "text"]
    return "\n".join(out)


class ScriptedThink:
    """A fake policy behind the loopback server. Each sample (found by its low view's exact PNG) gets a plan:
      'call'   valid resize call, then the right answer on the high view;
      'direct' the right answer at once;
      'bad'    an invalid tool call, then a wrong answer after the error turn;
      'full'   (for full/low modes) the right answer at once.
    Requests are recorded per sample for the assertions."""

    def __init__(self, rows: list[dict], plan: dict[str, str]):
        from vtdata.resolution import view_of
        from vttrain.rollout.policy import image_data_url
        self.rows = {r["id"]: r for r in rows}
        self.plan = plan
        self.by_image = {}
        for r in rows:
            for view in ("low", "high"):
                self.by_image[image_data_url(view_of(r, view))] = (r["id"], view)
        self.seen: dict[str, list[dict]] = {}

    def __call__(self, request: dict) -> str:
        images = _images(request)
        sid, view = self.by_image[images[0]]
        self.seen.setdefault(sid, []).append({"views": [self.by_image[u][1] for u in images],
                                             "text": _text(request), "request": request})
        gold = self.rows[sid]["answers"][0]
        plan = self.plan.get(sid, "direct")
        n_turn = len(self.seen[sid])
        if plan in ("direct", "full"):
            return answer(gold)
        if plan == "call":
            return CALL if len(images) == 1 else answer(gold)
        if plan == "bad":
            return BAD_CALL if n_turn == 1 else answer("definitely wrong")
        raise AssertionError(plan)


def first_number(text: str) -> int:
    return int(re.search(r"\d+", text).group())


class ScriptedScoring(ScriptedThink):
    """A fake scoring policy: right on the high view always, right on the low view only for the sources
    in `low_ok_sources` (so their samples label low_ok and the others needs_high)."""

    def __init__(self, rows: list[dict], low_ok_sources: set[str]):
        super().__init__(rows, {})
        self.low_ok_sources = low_ok_sources

    def __call__(self, request: dict) -> str:
        sid, view = self.by_image[_images(request)[0]]
        row = self.rows[sid]
        right = view == "high" or row["source"] in self.low_ok_sources
        return answer(row["answers"][0] if right else "no idea")
