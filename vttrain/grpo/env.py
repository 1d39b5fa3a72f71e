"""The VisionThink rollout on TRL 1.16: the resize-tool environment, the tool-call parser, the dataset
transform and the guards.

How a rollout runs (TRL's `environment_factory` hook, one environment per rollout: `ResizeEnv`, or with
`tools` zoom / resize,zoom `ZoomEnv` / `ResizeZoomEnv`, whose calls `vtdata.protocol.tools.respond` answers):
- the dataset transform turns a built/curated row into the turn-1 prompt (agent system prompt, user =
  instruction + LOW view + question; `vtdata.protocol.agent_messages`) and keeps the original image
  bytes in `image_bytes` (TRL reads a column named `image` as the prompt image, so it must not be there);
- `ResizeEnv.reset(**row)` receives that row; TRL exposes its public method `resize_image` as the tool;
  the call returns `protocol.tool_content(image=HIGH view)`, which TRL appends as a `tool` message and
  sends through the processor, so the high-res pixels reach both generation and the loss forward;
- TRL masks every tool turn out of the loss (`tool_mask`), bounds calls by `max_tool_calling_iterations`
  (= max_turns - 1: a call in the last turn is not answered) and renders turns with
  `vtdata.protocol.chat_template(turn2_bytes)`.

Where vt goes around TRL (TRL has no hook for it):
- Tool-call parsing. TRL parses a turn with `tokenizer.parse_response` (transformers' response template)
  and treats anything unparsable as plain text, so an invalid call would silently end the rollout instead
  of getting the paper's error turn. `install_response_parser` binds vt's parser on the tokenizer
  instance: it keeps the raw turn text as `content` (TRL's Qwen template would move `<think>` into
  `reasoning_content`; the format reward needs the raw text) and turns EVERY `<tool_call>` into a call of
  an environment method, an invalid one into a call of the selection's first tool carrying the validation
  error in its argument, so the environment answers it with the error turn.
- Chat template identity. TRL recognises templates by exact string; vt's (`protocol.CHAT_TEMPLATE`) is
  unknown to it, so the response template attribute is set here (the parser above is what runs).
"""
from __future__ import annotations

import functools
from typing import Any

from vtdata import protocol

# An invalid call reaches the environment as `resize_image(action=INVALID_CALL + error)`.
INVALID_CALL = "\x00invalid-call: "
VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


class ResizeEnv:
    """One rollout's environment: holds its dataset row, answers the tool calls through `vtdata.protocol.tools.respond`
    (`resize_image` returns the high-res view). TRL exposes the public methods as the tools, so each tool
    selection has its class (`env_class`): ResizeEnv, ZoomEnv, ResizeZoomEnv.

    Counters (read by VtGRPOTrainer for the metrics): `calls` (every `<tool_call>`, valid or not), `ok` (calls that
    returned an image; whether it reached the model is checked on the token ids, since TRL can still drop
    a tool turn that overflows `max_completion_length`), `errors` (texts sent back in error turns), `used`
    (successful calls per tool) and `extra_tokens` (visual tokens the returned images add)."""

    tools: tuple = ("resize",)

    def __init__(self, prompt_names: dict | None = None) -> None:
        self.prompt_names = dict(prompt_names or {})  # tool_ok / tool_error prompt overrides of the run
        self.row: dict = {}
        self.calls = 0
        self.ok = 0
        self.errors: list[str] = []
        self.used: dict = {}
        self.extra_tokens = 0

    def reset(self, **row: Any) -> None:
        self.row = row
        self.calls, self.ok, self.errors, self.used, self.extra_tokens = 0, 0, [], {}, 0
        return None  # the prompt is complete already; nothing to append

    def _answer(self, name: str, arguments: dict) -> list:
        from vtdata.protocol import tools
        self.calls += 1
        bad = next((v for v in arguments.values() if isinstance(v, str) and v.startswith(INVALID_CALL)), None)
        call = bad[len(INVALID_CALL):] if bad is not None else protocol.ToolCall(name, arguments)
        if name == protocol.TOOL_NAME and bad is None and arguments.get("action") != protocol.TOOL_ACTION:
            call = f"unknown action {arguments.get('action')!r}; the only available action is {protocol.TOOL_ACTION!r}"
        reply = tools.respond(call, {**self.row, "image": self.row["image_bytes"]}, self.tools, view=_view,
                              **self.prompt_names)
        if reply.error is not None:
            self.errors.append(reply.error)
        else:
            self.ok += 1
            self.used[reply.tool] = self.used.get(reply.tool, 0) + 1
            self.extra_tokens += reply.visual_tokens
        return reply.message

    def resize_image(self, action: str) -> list:
        """Resize the image resolution.

        Args:
            action: The action to perform. The available actions are: `resize`: Double the resolution of the current image.
        """
        return self._answer(protocol.TOOL_NAME, {"action": action})


class ZoomEnv(ResizeEnv):
    """`zoom_image` only (see ResizeEnv)."""
    tools = ("zoom",)
    resize_image = None  # not a tool of this selection

    def zoom_image(self, bbox_2d: list) -> list:
        """Zoom in on a region of the image.

        Args:
            bbox_2d: The region [x1, y1, x2, y2] in pixel coordinates of the current image, returned at double resolution.
        """
        return self._answer("zoom_image", {"bbox_2d": bbox_2d})


class ResizeZoomEnv(ZoomEnv):
    """`resize_image` and `zoom_image` (see ResizeEnv)."""
    tools = ("resize", "zoom")
    resize_image = ResizeEnv.resize_image


ENVS = {c.tools: c for c in (ResizeEnv, ZoomEnv, ResizeZoomEnv)}


def env_class(tools) -> type:
    """The environment class exposing exactly the selected tools."""
    from vtdata.protocol.tools import selection
    return ENVS[selection(tools)]


def env_factory(tools, prompt_names: dict):
    """TRL's `environment_factory` for a run: new environments of the tools' class with the run's prompts."""
    return functools.partial(env_class(tools), prompt_names=prompt_names)


def _view(row: dict, which: str):
    """The row's low/high view (vtdata.resolution.view_of, cached there; `image` = the original bytes)."""
    from vtdata.resolution import view_of
    return view_of(row, which)


def high_view(row: dict):
    """The high view of a TRL row (original bytes in `image_bytes`)."""
    return _view({**row, "image": row["image_bytes"]}, "high")


def install_response_parser(processor, tools=("resize",), rule: str = "strict") -> None:
    """Bind vt's turn parser on the processor's tokenizer (see the module docstring for why). An invalid call
    goes to the selection's first function with the error in its argument (`INVALID_CALL`). `rule`: which
    calls are valid (`vtdata.protocol.tools.parse_call`: strict | release)."""
    from vtdata.protocol.tools import FUNCTIONS, parse_call, selection
    selected = selection(tools)
    first = FUNCTIONS[selected[0]]
    arg = "action" if first == protocol.TOOL_NAME else "bbox_2d"
    tokenizer = processor.tokenizer
    stops = [t for t in (tokenizer.eos_token, tokenizer.pad_token, "<|endoftext|>", "<|im_end|>") if t]

    def parse_response(ids, prefix=None, tools=None, **_):
        text = tokenizer.decode(list(ids), skip_special_tokens=False)
        for stop in stops:  # generation stops at the first EOS; drop it and any padding after
            cut = text.find(stop)
            if cut >= 0:
                text = text[:cut]
        message = {"role": "assistant", "content": text}
        call = parse_call(text, selected, rule)  # (TRL passes its own `tools=`: the schema list)
        if isinstance(call, protocol.ToolCall):
            message["tool_calls"] = [{"type": "function", "function": {"name": call.name, "arguments": call.arguments}}]
        elif call is not None:
            message["tool_calls"] = [{"type": "function",
                                      "function": {"name": first, "arguments": {arg: INVALID_CALL + call}}}]
        return message

    tokenizer.parse_response = parse_response
    # TRL only calls parse_response when a response template is set; ours is the function above.
    tokenizer.response_template = {"vt": "vtdata.protocol.parse_tool_call"}


def uninstall_response_parser(processor) -> None:
    """Undo `install_response_parser` (before saving the processor)."""
    tokenizer = processor.tokenizer
    tokenizer.__dict__.pop("parse_response", None)
    tokenizer.response_template = None


def prepare_processor(processor, tools=("resize",), turn2_bytes: str = "release",
                      tool_call_parse: str = "strict") -> None:
    """Make a Qwen-VL processor ready for the tool loop: vt's chat template (`protocol.chat_template`) and
    turn parser."""
    processor.chat_template = protocol.chat_template(turn2_bytes)
    processor.tokenizer.chat_template = processor.chat_template
    install_response_parser(processor, tools, tool_call_parse)


def vision_token_ids(tokenizer) -> list[int]:
    """Ids the policy must never generate: an image-pad token in a completion would not match any image
    features and break the forward (TRL suppresses only the image pad; vt adds video pad and the vision
    start/end markers, which Qwen's rope index reads as image boundaries)."""
    ids = []
    for tok in VISION_TOKENS:
        i = tokenizer.convert_tokens_to_ids(tok)
        if i is not None and i != tokenizer.unk_token_id:
            ids.append(int(i))
    return ids


def make_transform(system_prompt: str = "agent_system", user_prompt: str = "agent_user", tools=("resize",)):
    """A `datasets` batch transform: built/curated row -> TRL row (turn-1 prompt with the LOW view inline,
    original bytes in `image_bytes`, every other column kept for `reset()` and the reward functions)."""

    def transform(batch: dict) -> dict:
        out = {k: v for k, v in batch.items() if k != "image"}
        out["image_bytes"] = batch["image"]
        n = len(batch["image"])
        rows = [{k: batch[k][i] for k in batch} for i in range(n)]
        out["prompt"] = [protocol.agent_messages(r["question"], _view(r, "low"),
                                                 system_prompt, user_prompt, tools) for r in rows]
        return out

    return transform


def _template(processor) -> str:
    """The processor's template when `prepare_processor` set one of vt's, else the default."""
    t = getattr(processor, "chat_template", None)
    return t if t in protocol.CHAT_TEMPLATES.values() else protocol.chat_template()


def budget(processor, row: dict, system_prompt: str, user_prompt: str, prompt_names: dict,
           tools=("resize",)) -> tuple[int, int]:
    """(prompt tokens, tool-turn tokens) of a row, images counted at their view sizes (a tool turn at the
    high view's: a zoomed region is never larger; the longest of the selected tools' texts)."""
    from vttrain.models.build import visual_tokens
    low = (row["low_width"], row["low_height"])
    high = (row["high_width"], row["high_height"])
    msgs = protocol.agent_messages(row["question"], "IMG", system_prompt, user_prompt, tools)  # size-only stand-in
    text = processor.apply_chat_template(msgs, chat_template=_template(processor), tokenize=False,
                                         add_generation_prompt=True)
    prompt = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"]) - 1 + visual_tokens(processor, low)
    text_tokens = max(_tool_turn_text_tokens(processor, prompt_names, t) for t in tools)
    tool = text_tokens - 1 + visual_tokens(processor, high)
    return prompt, tool


_TOOL_TOKENS: dict = {}


def _tool_turn_text_tokens(processor, prompt_names: dict, tool: str = "resize") -> int:
    key = (id(processor), tuple(sorted(prompt_names.items())), tool, _template(processor))
    if key not in _TOOL_TOKENS:
        if tool == "resize":
            content = protocol.tool_content(image="IMG", **prompt_names)
        else:
            from vtdata import prompts
            from vtdata.protocol.tools import ZOOM_HEAD
            content = [{"type": "text", "text": ZOOM_HEAD}, {"type": "image", "image": "IMG"},
                       {"type": "text", "text": protocol.TOOL_OK_TAIL + prompts.load("zoom_ok")}]
        msg = {"role": "tool", "content": content}
        base = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]  # ends at <|im_end|>
        text = processor.apply_chat_template(base + [msg], chat_template=_template(processor), tokenize=False,
                                             add_generation_prompt=True)
        head = processor.apply_chat_template(base, chat_template=_template(processor), tokenize=False)
        head = head[:head.rindex("<|im_end|>") + len("<|im_end|>")]  # TRL cuts the prefix at its last EOS
        tok = processor.tokenizer
        # exactly the suffix TRL appends after the model's <|im_end|>
        _TOOL_TOKENS[key] = len(tok(text, add_special_tokens=False)["input_ids"]) - \
            len(tok(head, add_special_tokens=False)["input_ids"])
    return _TOOL_TOKENS[key]
