"""The prompt templates (data files in `vtdata/prompts/`, from the VisionThink paper, Tables 3-4).

`load("agent_system")` returns a template; a path instead of a name reads a user's own file, so every
command that takes a prompt option accepts either.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from vtdata.console import VtError

PROMPT_DIR = Path(__file__).parent / "prompts"
NAMES = ("agent_system", "agent_user", "tool_ok", "tool_error", "score_system", "judge_system",
         "judge_user")
ZOOM_NAMES = ("zoom_tool", "zoom_ok")  # the zoom tool's (vtdata/protocol/tools.py); apart so NAMES-keyed caches keep their keys


@lru_cache(maxsize=None)
def load(name_or_path: str) -> str:
    """A shipped prompt by name, or the text of a file the user points at."""
    if name_or_path in NAMES or name_or_path in ZOOM_NAMES:
        return (PROMPT_DIR / f"{name_or_path}.txt").read_text(encoding="utf-8")
    path = Path(name_or_path)
    if not path.is_file():
        raise VtError(f"prompt {name_or_path!r} is neither a shipped prompt ({', '.join(NAMES + ZOOM_NAMES)}) "
                      f"nor a readable file")
    return path.read_text(encoding="utf-8")
