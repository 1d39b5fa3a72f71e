"""The turns of a rollout: turn 1's messages (`agent_messages`) and the per-turn format rule of the reward
(`check_turn`, `check_turn_release`, `check_format`), for the resize tool alone or any selection of tools
(vtdata.protocol.tools). No torch here.
"""
from __future__ import annotations

import re
from typing import Any

from vtdata import prompts
from vtdata.console import VtError
from vtdata.protocol.messages import _user_blocks, parse_tool_call
from vtdata.protocol.tools import parse_call
from vtdata.protocol.tools import system_prompt as with_tools


def agent_messages(question: str, image: Any, system_prompt: str = "agent_system",
                   user_prompt: str = "agent_user", tools: tuple = ("resize",)) -> list[dict]:
    """Turn 1: [system = agent prompt, user = instruction + image + question] (image = the LOW-res view).

    `image` is a PIL image (or None to leave a placeholder block `{"type": "image"}` that TRL fills from the
    dataset's `image` column). Prompts are shipped names or file paths (`vtdata.prompts.load`); `tools`
    selects the functions the system prompt declares (`vtdata.protocol.tools.system_prompt`)."""
    blocks = _user_blocks(question, image, user_prompt)
    if image is None:
        blocks[1] = {"type": "image"}
    if tuple(tools) == ("resize",):
        system = prompts.load(system_prompt)
    else:
        system = with_tools(system_prompt, tools)
    return [{"role": "system", "content": [{"type": "text", "text": system}]},
            {"role": "user", "content": blocks}]


_FINAL = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_CALL = re.compile(r"\s*<think>(.*?)</think>\s*<tool_call>(.*?)</tool_call>\s*", re.DOTALL)


def check_turn(text: str, final: bool, tools: tuple = ("resize",)) -> str | None:
    """None when one assistant turn is well-formed, else the reason.

    Every turn: exactly one <think>...</think> first. A final turn then exactly one <answer>...</answer>
    (non-empty) and nothing else; a tool-call turn then exactly one valid <tool_call>...</tool_call>."""
    for tag in ("<think>", "</think>"):
        if text.count(tag) != 1:
            return f"{'final' if final else 'tool'} turn needs exactly one {tag} (found {text.count(tag)})"
    if final:
        if "<tool_call>" in text:
            return "final turn holds a <tool_call> (no turns left to answer it)"
        for tag in ("<answer>", "</answer>"):
            if text.count(tag) != 1:
                return f"final turn needs exactly one {tag} (found {text.count(tag)})"
        m = _FINAL.fullmatch(text)
        if not m:
            return "final turn must be <think>...</think> then <answer>...</answer> and nothing else"
        if not m.group(2).strip():
            return "empty <answer>"
        return None
    if "<answer>" in text or "</answer>" in text:
        return "a tool-call turn must not answer"
    if not _CALL.fullmatch(text):
        return "tool turn must be <think>...</think> then one <tool_call>...</tool_call> and nothing else"
    if tuple(tools) == ("resize",):
        call = parse_tool_call(text)
    else:
        call = parse_call(text, tools)
    return call if isinstance(call, str) else None


_RELEASE_FINAL = re.compile(r"^<think>.*</think>.*<answer>.*</answer>$", re.DOTALL)
_RELEASE_CALL = re.compile(r"^<think>.*</think>.*<tool_call>.*</tool_call>$", re.DOTALL)


def check_turn_release(text: str, final: bool, tools: tuple = ("resize",)) -> str | None:
    """The release's per-turn rule (its reward's `format_reward`): looser than `check_turn`. Text may stand
    between the tags, the answer may be empty, and a tagged tool call counts whatever its JSON says.
    A final turn: <think>..</think> .. <answer>..</answer>, one of each tag, no <tool_call>. A tool turn:
    <think>..</think> .. <tool_call>..</tool_call>, one <think> pair, no <answer>. (The release does not
    strip the final turn of a two-turn rollout, so leading whitespace there fails; vt strips every turn.)"""
    text = text.strip()
    kind = "final" if final else "tool"
    if not (_RELEASE_FINAL if final else _RELEASE_CALL).match(text):
        return (f"{kind} turn must start with <think> and end with "
                f"{'</answer>' if final else '</tool_call>'} (release rule)")
    for tag in ("<think>", "</think>") + (("<answer>", "</answer>") if final else ()):
        if text.count(tag) != 1:
            return f"{kind} turn needs exactly one {tag} (found {text.count(tag)})"
    if final and ("<tool_call>" in text or "</tool_call>" in text):
        return "final turn holds a <tool_call> (no turns left to answer it)"
    if not final:
        if text.count("<tool_call>") != 1 and text.count("</tool_call>") != 1:  # the release's test, as written
            return "tool turn needs exactly one <tool_call>"
        if "<answer>" in text or "</answer>" in text:
            return "a tool-call turn must not answer"
    return None


FORMAT_RULES = {"strict": check_turn, "release": check_turn_release}


def check_format(turns: list[str], rule: str = "strict", tools: tuple = ("resize",)) -> str | None:
    """None when every assistant turn of a trajectory is well-formed (the last one answers), else the reason.

    rule: `strict` (`check_turn`: nothing outside the tags, a valid call of one of `tools`) or `release`
    (`check_turn_release`). Any number of turns: every one but the last must call a tool, the last must answer
    (a trajectory cut at its turn limit while calling fails)."""
    if rule not in FORMAT_RULES:
        raise VtError(f"format_rule must be one of {', '.join(FORMAT_RULES)}; got {rule!r}")
    if not turns:
        return "no assistant turn"
    for i, text in enumerate(turns):
        reason = FORMAT_RULES[rule](text, final=(i == len(turns) - 1), tools=tuple(tools))
        if reason:
            return f"turn {i + 1}: {reason}"
    return None
