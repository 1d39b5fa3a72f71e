"""How a command names its judge: the `--judge*` flags every judging command shares, declared once
(`JudgeSpec`, a nested config field), and the `make_judge` options they give (`judge_options`)."""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from vtdata.console import VtError

SCOPES = ("open", "all")  # what an LLM judge judges: 'open' items only, or every item
# False while a config is read for `vt train --dry-run`, which calls no judge (the key is checked when the
# real run reads the same config).
KEY_CHECK: ContextVar[bool] = ContextVar("vt_judge_key_check", default=True)


@dataclass
class JudgeSpec:
    """The judge flags every judging command shares (`vt judge`, `vt score-judge`, `vt eval`; `vt train`'s
    YAML keys of the same names): a config holds one as a nested field (vtdata.config flattens it)."""

    judge: str = "auto"
    """auto (a rule judge by answer_type) | rule:<exact|contains|relaxed|anls|vqa|mc|math> | openai:<model>
    (e.g. openai:gpt-4o-mini, or the model a vLLM server serves)."""
    judge_base_url: str | None = None
    """OpenAI-compatible judge server URL(s); comma-separated URLs are load-balanced (openai: judges)."""
    judge_api_key_env: str | None = None
    """Environment variable with the judge's API key (default: OPENAI_API_KEY without a base URL; none is
    sent to a base URL unless named)."""
    judge_scope: Literal["open", "all"] = "open"
    """open: an LLM judge judges 'open' items, rules the rest | all: the LLM judges every item (the paper)."""

    def __post_init__(self):
        self.options()  # a VtError for an openai-only option with a rule judge

    def options(self, **extra) -> dict:
        """`make_judge` keyword options (see judge_options)."""
        return judge_options(self.judge, self.judge_base_url, self.judge_api_key_env, self.judge_scope, **extra)


def judge_options(spec: str, base_url: str | None = None, api_key_env: str | None = None, scope: str = "open",
                  **extra) -> dict:
    """`make_judge` options from a command's --judge-* flags (judge, score-judge, eval, train share this):
    the openai-only ones are refused for a rule judge instead of being silently ignored."""
    from vtdata.console import check_env_name
    check_env_name(api_key_env, "--judge-api-key-env")
    if scope not in SCOPES:
        raise VtError(f"--judge-scope must be one of {', '.join(SCOPES)}; got {scope!r}")
    if not (spec or "").startswith("openai:"):
        if base_url:
            raise VtError("--judge-base-url applies to openai: judges only")
        if scope != "open":
            raise VtError("--judge-scope all needs an LLM judge (--judge openai:<model>)")
        return {}
    from vtdata.judge.llm import require_key
    if KEY_CHECK.get():
        require_key(api_key_env, base_url)  # refused here, before any model loads or request is paid for
    opts = dict(base_url=base_url, api_key_env=api_key_env, scope=scope, **extra)
    return {k: v for k, v in opts.items() if v is not None}
