"""Run a list of stages once, resuming after an interruption or a change (the executor of `vt demo`).

A stage is identified by its command line and the content of its input files. When it finishes, a
completion marker `MARKS/<name>.json` records that identity, the time taken and a one-line summary.
`run_stages` then skips every stage whose marker matches its identity and whose outputs all exist;
the first stage that does not match (new arguments, an edited input file, a deleted output, no marker)
runs, and so does every stage after it, since their inputs may have changed with it.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vtdata.console import info


@dataclass
class Stage:
    name: str
    args: list[str]
    """The command line: part of the identity."""
    outputs: list[Path]
    """Files or directories that must all exist for a marker to count."""
    inputs: list[Path] = field(default_factory=list)
    """Files whose content is part of the identity."""

    def identity(self) -> dict:
        return {"args": [str(a) for a in self.args],
                "inputs": {str(p): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in self.inputs if p.is_file()}}


def marker(marks: Path, stage: Stage) -> Path:
    return marks / f"{stage.name}.json"


def _changed(marks: Path, stage: Stage) -> bool:
    """The stage completed before with another identity (its arguments or inputs changed since)."""
    try:
        rec = json.loads(marker(marks, stage).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(rec, dict) and rec.get("identity") != stage.identity()


def reusable(marks: Path, stage: Stage) -> dict | None:
    """The stage's completion record when it matches the stage's identity and its outputs exist."""
    try:
        rec = json.loads(marker(marks, stage).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("identity") != stage.identity():
        return None
    return rec if all(p.exists() for p in stage.outputs) else None


def run_stages(stages: list[Stage], marks: Path, execute: Callable[[Stage, str, bool], str],
               say: Callable[[str], None] = info) -> list[dict]:
    """Run or skip each stage in order; returns one record per stage (with `reused`).

    `execute(stage, tag, stale)` runs a stage and returns its summary; `tag` is the "[k/n] name" prefix of the
    progress lines, `stale` tells a stage that an earlier one ran or that its own identity changed since it last
    completed (its old outputs are stale, to be replaced) rather than that it was interrupted (to be resumed).
    A stage that raises leaves no marker."""
    marks.mkdir(parents=True, exist_ok=True)
    width = max((len(s.name) for s in stages), default=0)
    done, rerun = [], False
    for k, stage in enumerate(stages, 1):
        tag = f"[{k}/{len(stages)}] {stage.name:<{width}}"
        rec = None if rerun else reusable(marks, stage)
        if rec is not None:
            say(f"{tag} reused  {rec.get('summary', '')}")
            done.append({**rec, "reused": True})
            continue
        stale, rerun = rerun or _changed(marks, stage), True
        marker(marks, stage).unlink(missing_ok=True)  # until it completes again
        t0 = time.time()
        summary = execute(stage, tag, stale)
        rec = {"stage": stage.name, "identity": stage.identity(), "seconds": round(time.time() - t0, 1),
               "summary": summary}
        marker(marks, stage).write_text(json.dumps(rec, indent=1))
        say(f"{tag} done in {rec['seconds']:.1f} s: {summary}")
        done.append({**rec, "reused": False})
    return done
