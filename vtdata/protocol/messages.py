"""The chat format of VisionThink's protocol (paper §3.3 and Table 4): the Qwen2.5-VL chat template with the
tool turn as a user turn, the messages of each turn, and the resize call with its parser.

- `CHAT_TEMPLATE` / `chat_template(turn2_bytes)` render these messages in the Qwen2.5-VL chat format with the
  tool turn as a user turn (as the released code does), so eval (local generate) and training (TRL's tool
  loop) see the same tokens.
- `direct_messages` is the one-turn prompt without the tool (score-judge, eval full/low); `user_text` the agent
  user turn as text; `tool_content` / `tool_turn` the environment's answer (HIGH view, or the error turn).
- `parse_tool_call` validates a reply's call (JSON, function name, action) and returns either the call or the
  error text for the error turn (`parse_tool_call_release`: the release's looser rule).
No torch here: the data and judge stages import this module too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vtdata import prompts
from vtdata.console import VtError
from vtdata.safeload import BadInput, json_value

TOOL_NAME = "resize_image"
TOOL_ACTION = "resize"
# The wrappers of the tool turn (release format); the continuation instructions after them are the
# `tool_ok` / `tool_error` prompt files.
TOOL_OK_HEAD = "<tool_response>\nThe resized image is shown below:\n"
TOOL_OK_TAIL = "\n</tool_response>\n"
TOOL_ERROR_TEXT = ("<tool_response>\nERROR occurs during the function tool call. Error Information: {error}.\n"
                   "</tool_response>\n")
CALL_EXAMPLE = f'<tool_call>{{"name": "{TOOL_NAME}", "arguments": {{"action": "{TOOL_ACTION}"}}}}</tool_call>'

# Qwen2.5-VL chat format, plus: a `tool` message is rendered exactly like a user turn (the release appends
# the tool response as a user turn), an assistant message's `tool_calls` are rendered as `<tool_call>` JSON
# unless its text already holds one, and `tools=` is ignored because the agent system prompt declares the
# function itself (Table 4 wording). Appending messages never changes how earlier ones render
# (prefix-preserving), which TRL's multi-turn loop requires.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message.role != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + ('user' if message.role == 'tool' else message.role) + '\\n' -}}"
    "{%- set ns = namespace(text='') -%}"
    "{%- if message.content is string -%}{%- set ns.text = message.content -%}"
    "{%- elif message.content -%}"
    "{%- for part in message.content -%}"
    "{%- if part.type == 'image' or 'image' in part or 'image_url' in part -%}"
    "{%- set ns.text = ns.text + '<|vision_start|><|image_pad|><|vision_end|>' -%}"
    "{%- elif part.type == 'video' or 'video' in part -%}"
    "{%- set ns.text = ns.text + '<|vision_start|><|video_pad|><|vision_end|>' -%}"
    "{%- elif 'text' in part -%}{%- set ns.text = ns.text + part.text -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- ns.text -}}"
    "{%- if message.role == 'assistant' and message.tool_calls and '<tool_call>' not in ns.text -%}"
    "{%- for call in message.tool_calls -%}"
    "{%- set fn = call.function if call.function else call -%}"
    "{%- if ns.text or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>\\n{\"name\": \"' + fn.name + '\", \"arguments\": ' -}}"
    "{%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _release_bytes(template: str) -> str:
    """`template` with the newline that ends a turn written before the NEXT turn, and none after an assistant
    turn: the release appends its tool turn (`<|im_start|>user...`) right after the model's `<|im_end|>`.
    Still prefix-preserving (an assistant turn renders the same whatever follows)."""
    first = "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}{%- endif -%}"
    end, prompt = "{{- '<|im_end|>\\n' -}}", "{{- '<|im_start|>assistant\\n' -}}"
    assert template.count(first) == template.count(end) == template.count(prompt) == 1
    return (template.replace(first, first[:-len("{%- endif -%}")]
                             + "{%- elif not loop.first and loop.previtem.role != 'assistant' -%}{{- '\\n' -}}"
                             + "{%- endif -%}")
            .replace(end, "{{- '<|im_end|>' -}}").replace(prompt, "{{- '\\n<|im_start|>assistant\\n' -}}"))


# How turn 2 follows turn 1 (`vt train --turn2_bytes`): `release` (the default) = the release's bytes, the
# tool turn straight after the model's <|im_end|>; `chatml` = CHAT_TEMPLATE, a newline between (what TRL's
# concatenation gives with a stock ChatML template; vt before issue 21; the mini warm start's SFT text).
CHAT_TEMPLATES = {"release": _release_bytes(CHAT_TEMPLATE), "chatml": CHAT_TEMPLATE}
TURN2_BYTES = tuple(CHAT_TEMPLATES)


def chat_template(turn2_bytes: str = "release") -> str:
    if turn2_bytes not in CHAT_TEMPLATES:
        raise VtError(f"turn2_bytes must be one of {', '.join(TURN2_BYTES)}; got {turn2_bytes!r}")
    return CHAT_TEMPLATES[turn2_bytes]


@dataclass(frozen=True)
class ToolCall:
    """A validated call of the resize tool."""
    name: str
    arguments: dict = field(default_factory=dict)


def _user_blocks(question: str, image: Any, user_prompt: str) -> list[dict]:
    template = prompts.load(user_prompt)
    head, sep, tail = template.partition("{question}")
    if not sep:
        raise VtError(f"user prompt {user_prompt!r} has no {{question}} placeholder")
    try:
        head, tail = head.format(), tail.format()
    except (IndexError, KeyError, ValueError) as err:
        raise VtError(f"user prompt {user_prompt!r} is not a valid str.format template: {err}") from None
    # the release's `problem` is "<image>\n" + question: a newline between the image and the question
    return [{"type": "text", "text": head}, {"type": "image", "image": image},
            {"type": "text", "text": "\n" + question + tail}]


def user_text(question: str, user_prompt: str = "agent_user") -> str:
    """The agent user turn as text with `<image>` where the image goes: what the release's judge is sent as
    the question (its `raw_prompt`: instruction + "<image>\\n" + question)."""
    return "".join("<image>" if b["type"] == "image" else b["text"] for b in _user_blocks(question, None, user_prompt))


def direct_messages(system: str, question: str, image: Any, newline: bool = False) -> list[dict]:
    """A one-turn prompt without the tool: [system = `system` (the prompt's text), user = image + question].

    `newline`: a `\n` between the image and the question, as the release's general-QA `problem`
    ("<image>\n" + question); score-judge and eval ask with it (`engine.Settings.direct_newline`), the mini
    warm start's SFT text (vttrain/models/warmstart.py) without.

    What `vt score-judge` asks on each view and `vt eval --mode full|low` asks, so full-mode eval and scoring
    see the same tokens."""
    return [{"role": "system", "content": system},
            {"role": "user", "content": [{"type": "image", "image": image},
                                         {"type": "text", "text": ("\n" if newline else "") + question}]}]


def tool_content(image: Any = None, error: str | None = None, ok_prompt: str = "tool_ok",
                 error_prompt: str = "tool_error") -> list[dict]:
    """Content blocks of the environment's turn: the high-res image, or the error text (exactly one)."""
    if (image is None) == (error is None):
        raise ValueError("tool_content needs exactly one of image= or error=")
    if error is not None:
        return [{"type": "text", "text": TOOL_ERROR_TEXT.format(error=error) + prompts.load(error_prompt)}]
    return [{"type": "text", "text": TOOL_OK_HEAD}, {"type": "image", "image": image},
            {"type": "text", "text": TOOL_OK_TAIL + prompts.load(ok_prompt)}]


def tool_turn(image: Any = None, error: str | None = None, **prompt_names: str) -> dict:
    """The environment's turn as a user message (what eval appends after an assistant turn with a call)."""
    return {"role": "user", "content": tool_content(image=image, error=error, **prompt_names)}


def parse_payload(text: str) -> dict | str | None:
    """The JSON object of the one `<tool_call>` in an assistant turn, an error string, or None (no call).

    Errors: more than one call, an unclosed tag, invalid JSON, not an object with a "name". The arguments
    are decoded when a model double-encodes them as a JSON string."""
    n_open = text.count("<tool_call>")
    if n_open == 0:
        return None
    if n_open > 1:
        return "more than one <tool_call> in one step; call ONE function per step"
    start = text.index("<tool_call>") + len("<tool_call>")
    end = text.find("</tool_call>", start)
    if end < 0:
        return "the <tool_call> is not closed with </tool_call>"
    payload = text[start:end].strip()
    try:  # model output: bounded like any input (depth, number length), never a crash
        obj = json_value(payload)
    except BadInput as err:
        return f"the tool call is not valid JSON: {err}"
    if not isinstance(obj, dict) or "name" not in obj:
        return 'the tool call must be a JSON object {"name": ..., "arguments": {...}}'
    args = obj.get("arguments")
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            obj = {**obj, "arguments": json_value(args)}
        except BadInput:
            pass
    return obj


def parse_tool_call(text: str) -> ToolCall | str | None:
    """The resize call in one assistant turn: a ToolCall, an error string (for the error turn), or None.

    None means the turn holds no `<tool_call>` at all (a direct answer). Errors: those of `parse_payload`,
    a function other than resize_image, arguments that are not exactly {"action": "resize"}.
    (`vtdata.protocol.tools.parse_call` is the same for any selection of tools.)"""
    obj = parse_payload(text)
    if not isinstance(obj, dict):
        return obj
    name = obj.get("name")
    if name != TOOL_NAME:
        return f"unknown function {name!r}; the only available function is {TOOL_NAME}"
    args = obj.get("arguments")
    if not isinstance(args, dict):
        return 'the "arguments" of the tool call must be a JSON object like {"action": "resize"}'
    if args.get("action") != TOOL_ACTION:
        return f"unknown action {args.get('action')!r}; the only available action is {TOOL_ACTION!r}"
    extra = sorted(set(args) - {"action"})
    if extra:
        return f"unexpected argument(s) {', '.join(map(repr, extra))}; {TOOL_NAME} takes only \"action\""
    return ToolCall(TOOL_NAME, {"action": TOOL_ACTION})


_RELEASE_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_RELEASE_JSON = re.compile(r"\{.*?\}\}")


def parse_tool_call_release(text: str) -> ToolCall | str | None:
    """The release's acceptance (its vLLM rollout): a turn calls the tool when it holds a CLOSED
    `<tool_call>...</tool_call>` (an unclosed one is a direct answer: None). Inside the closed blocks every
    `{...}}` span is read as JSON; exactly one object whose `arguments.action` is "resize" fires the tool,
    whatever its "name" and any other argument. Anything else gets the error turn."""
    blocks = _RELEASE_BLOCK.findall(text)
    if not blocks:
        return None
    objs = []
    for block in blocks:
        for span in _RELEASE_JSON.findall(block):
            try:
                objs.append(json_value(span))  # the safe reader: a hostile call is an error turn, not a crash
            except BadInput as err:
                return f"the tool call is not valid JSON: {err}"
    if not objs:
        return 'the tool call must be a JSON object {"name": ..., "arguments": {...}}'
    action = [o.get("arguments", {}).get("action") if isinstance(o, dict) and isinstance(o.get("arguments"), dict)
              else None for o in objs]
    if any(a != TOOL_ACTION for a in action):
        return f"unknown action {action[0]!r}; the only available action is {TOOL_ACTION!r}"
    if len(objs) > 1:
        return f"you should only call function `{TOOL_NAME}` once per function call"
    return ToolCall(TOOL_NAME, {"action": TOOL_ACTION})


TOOL_CALL_PARSERS = {"strict": parse_tool_call, "release": parse_tool_call_release}
