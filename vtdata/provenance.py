"""What a stored score-judge result was made from, as keys (issue 30, class 2).

A stored rollout is reused only by a run that would have made it: the same policy, the same protocol
(`protocol`: a hash of the policy's identity and weights fingerprint, the rendered system prompt, the
message layout, temperature, top_p, seed and token budget; its settings are kept in `score_protocols`) and
the same input (`input_sha`: the question, the gold answers, the answer type, the choices and the pixels of
the low and the high view actually sent). A label is reused only within one dataset (`dataset_sha`: a
content hash of every row of the dataset, all splits) and one protocol: a dataset rebuilt at another
resolution into the same directory, or built with another seed, is another dataset.

Databases written before these keys (rollouts and sufficiency without a `protocol` column) cannot tell
which protocol made their rows; `set_aside` renames those tables to `<table>_v1` (kept for `vt sql`, never
resumed from), and readers refuse them with `legacy_error`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vtdata import tables
from vtdata.console import VtError

KEYED = ("rollouts", "sufficiency")  # the tables whose rows carry a protocol since issue 30
VIEWS = ("label_counts", "low_vs_high_accuracy", "tokens_saved")  # views over sufficiency
DATASET_COLUMNS = ["id", "split", "source", "task", "question", "answers", "answer_type", "choices", "image_sha256",
                   "low_width", "low_height", "high_width", "high_height"]


@dataclass(frozen=True)
class LabelSet:
    """Which rows of `sufficiency` a run reads or writes: one policy, protocol and dataset (score-judge
    writes one; vt curate reads one)."""
    policy: str
    protocol: str
    dataset_sha: str

    def where(self, alias: str = "") -> str:
        a = f"{alias}." if alias else ""
        return f"{a}policy = ? AND {a}protocol = ? AND {a}dataset_sha = ?"

    @property
    def params(self) -> list:
        return [self.policy, self.protocol, self.dataset_sha]


def digest(value) -> str:
    """A short, stable hash of a JSON-able value (128 bits)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def pixels_sha(image) -> str:
    """sha256 of an image's pixels (mode, size and raw bytes): what a view sends, whatever its encoding."""
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}\0".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def input_sha(sample: dict, view) -> str:
    """What one sample puts before the policy and the judge: question, gold answers, answer type, choices
    and the pixels of both views (`view(sample, 'low'|'high')` makes them)."""
    return digest({"question": sample.get("question"), "answers": [str(a) for a in sample.get("answers") or []],
                   "answer_type": sample.get("answer_type"), "choices": sample.get("choices"),
                   "low": pixels_sha(view(sample, "low")), "high": pixels_sha(view(sample, "high"))})


def dataset_sha(data_dir: str | os.PathLike) -> str:
    """Content hash of a built dataset: every row (all splits, in file order) without the image bytes, which
    `image_sha256` stands for. Equal for a rebuild of the same content; another seed or resolution differs."""
    from vtdata.dataset import iter_samples
    h = hashlib.sha256()
    for row in iter_samples(data_dir, None, list(DATASET_COLUMNS)):
        h.update(json.dumps([row.get(c) for c in DATASET_COLUMNS], default=str).encode() + b"\n")
    return h.hexdigest()[:32]


def legacy(con) -> list[str]:
    """The tables of KEYED that exist in the format from before provenance keys (no `protocol` column)."""
    have = tables.existing(con)
    return [t for t in KEYED if t in have and "protocol" not in tables.columns(con, t)]


def _free_name(have: set[str], table: str) -> str:
    name, n = f"{table}_v1", 1
    while name in have:
        n += 1
        name = f"{table}_v1_{n}"
    return name


def set_aside(con) -> list[tuple[str, str]]:
    """Rename legacy rollouts/sufficiency tables to `<table>_v1` (their views are dropped, to be recreated
    over the new tables); returns [(old, new)]. Nothing is deleted."""
    old = legacy(con)
    if not old:
        return []
    have = tables.existing(con)
    moved = []
    for v in VIEWS:
        con.execute(f"DROP VIEW IF EXISTS {v}")
    for t in old:
        new = _free_name(have, t)
        con.execute(f"ALTER TABLE {t} RENAME TO {new}")
        have.add(new)
        moved.append((t, new))
    return moved


def legacy_error(db: str | os.PathLike) -> VtError:
    return VtError(f"{db} holds labels from a vt before issue 30 that do not record which dataset and protocol made "
                   f"them; rerun `vt score-judge` on it (it keeps the old tables as sufficiency_v1/rollouts_v1 and "
                   f"scores anew), or curate with the vt that wrote them")


def describe(con, protocol: str) -> str:
    """The settings of a protocol, for messages: `temperature=1.0 max_new_tokens=64 ...`."""
    row = con.execute("SELECT settings FROM score_protocols WHERE protocol = ?", [protocol]).fetchone() \
        if "score_protocols" in tables.existing(con) else None
    if row is None:
        return protocol[:12]
    s = json.loads(row[0])
    shown = " ".join(f"{k}={s[k]}" for k in ("temperature", "top_p", "max_new_tokens", "seed") if k in s)
    prompt = s.get("system_prompt") or ""
    return f"{protocol[:12]} ({shown}, system prompt {hashlib.sha256(prompt.encode()).hexdigest()[:8]})"


def same_dataset(path: Path, recorded: str) -> bool:
    """Whether the dataset at `path` still has the content hash recorded with its labels."""
    try:
        return dataset_sha(path) == recorded
    except (VtError, OSError):
        return False
