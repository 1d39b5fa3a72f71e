"""The VisionThink rollout on TRL 1.16: the resize-tool environment, the tool-call parser, the dataset
transform and the guards.

How a rollout runs (TRL's `environment_factory` hook, one `ResizeEnv` per rollout):
- the dataset transform turns a built/curated row into the turn-1 prompt (agent system prompt, user =
  instruction + LOW view + question; `vtdata.protocol.agent_messages`) and keeps the original image
  bytes in `image_bytes` (TRL reads a column named `image` as the prompt image, so it must not be there);
- `ResizeEnv.reset(**row)` receives that row; TRL exposes its public method `resize_image` as the tool;
  the call returns `protocol.tool_content(image=HIGH view)`, which TRL appends as a `tool` message and
  sends through the processor, so the high-res pixels reach both generation and the loss forward;
- TRL masks the tool turn out of the loss (`tool_mask`), bounds calls by `max_tool_calling_iterations`
  (= max_turns - 1) and renders turns with `vtdata.protocol.CHAT_TEMPLATE`.

Where vt goes around TRL (TRL has no hook for it):
- Tool-call parsing. TRL parses a turn with `tokenizer.parse_response` (transformers' response template)
  and treats anything unparsable as plain text, so an invalid call would silently end the rollout instead
  of getting the paper's error turn. `install_response_parser` binds vt's parser on the tokenizer
  instance: it keeps the raw turn text as `content` (TRL's Qwen template would move `<think>` into
  `reasoning_content`; the format reward needs the raw text) and turns EVERY `<tool_call>` into a call of
  `resize_image`, an invalid one carrying the validation error in its `action` argument, so the
  environment answers it with the error turn.
- Chat template identity. TRL recognises templates by exact string; vt's (`protocol.CHAT_TEMPLATE`) is
  unknown to it, so the response template attribute is set here (the parser above is what runs).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from vtdata import protocol

# An invalid call reaches the environment as `resize_image(action=INVALID_CALL + error)`.
INVALID_CALL = "\x00invalid-call: "
VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


class ResizeEnv:
    """One rollout's environment: holds its dataset row, answers `resize_image` with the high-res view.

    Counters (read by VtGRPOTrainer for the metrics): `calls` (every `<tool_call>`, valid or not), `ok` (calls that
    returned the image; whether it reached the model is checked on the token ids, since TRL can still drop
    a tool turn that overflows `max_completion_length`), `errors` (texts sent back in error turns)."""

    prompt_names: dict = {}  # tool_ok / tool_error prompt overrides, set by the trainer setup

    def __init__(self) -> None:
        self.row: dict = {}
        self.calls = 0
        self.ok = 0
        self.errors: list[str] = []

    def reset(self, **row: Any) -> None:
        self.row = row
        self.calls, self.ok, self.errors = 0, 0, []
        return None  # the prompt is complete already; nothing to append

    def resize_image(self, action: str) -> list:
        """Resize the image resolution.

        Args:
            action: The action to perform. The available actions are: `resize`: Double the resolution of the current image.
        """
        self.calls += 1
        if action != protocol.TOOL_ACTION:
            error = action[len(INVALID_CALL):] if isinstance(action, str) and action.startswith(INVALID_CALL) \
                else f"unknown action {action!r}; the only available action is {protocol.TOOL_ACTION!r}"
            self.errors.append(error)
            return protocol.tool_content(error=error, **self.prompt_names)
        self.ok += 1
        return protocol.tool_content(image=high_view(self.row), **self.prompt_names)


_VIEWS: "OrderedDict[tuple, Any]" = OrderedDict()
_VIEW_CACHE_SIZE = 64  # a prompt's G rollouts ask for the same views in a row


def _view(row: dict, which: str):
    """The row's low/high view (vtdata.resolution.view_of on the original bytes), LRU-cached by row id."""
    from vtdata.resolution import view_of
    key = (row.get("id"), row.get("image_sha256"), which, row.get(f"{which}_width"), row.get(f"{which}_height"))
    if key[0] is not None and key in _VIEWS:
        _VIEWS.move_to_end(key)
        return _VIEWS[key]
    img = view_of({**row, "image": row["image_bytes"]}, which)
    if key[0] is not None:
        _VIEWS[key] = img
        while len(_VIEWS) > _VIEW_CACHE_SIZE:
            _VIEWS.popitem(last=False)
    return img


def high_view(row: dict):
    return _view(row, "high")


def low_view(row: dict):
    return _view(row, "low")


def install_response_parser(processor) -> None:
    """Bind vt's turn parser on the processor's tokenizer (see the module docstring for why)."""
    tokenizer = processor.tokenizer
    stops = [t for t in (tokenizer.eos_token, tokenizer.pad_token, "<|endoftext|>", "<|im_end|>") if t]

    def parse_response(ids, prefix=None, tools=None, **_):
        text = tokenizer.decode(list(ids), skip_special_tokens=False)
        for stop in stops:  # generation stops at the first EOS; drop it and any padding after
            cut = text.find(stop)
            if cut >= 0:
                text = text[:cut]
        message = {"role": "assistant", "content": text}
        call = protocol.parse_tool_call(text)
        if call is not None:
            action = call.arguments["action"] if isinstance(call, protocol.ToolCall) else INVALID_CALL + call
            message["tool_calls"] = [{"type": "function",
                                      "function": {"name": protocol.TOOL_NAME, "arguments": {"action": action}}}]
        return message

    tokenizer.parse_response = parse_response
    # TRL only calls parse_response when a response template is set; ours is the function above.
    tokenizer.response_template = {"vt": "vtdata.protocol.parse_tool_call"}


def uninstall_response_parser(processor) -> None:
    """Undo `install_response_parser` (before saving the processor)."""
    tokenizer = processor.tokenizer
    tokenizer.__dict__.pop("parse_response", None)
    tokenizer.response_template = None


def prepare_processor(processor) -> None:
    """Make a Qwen-VL processor ready for the tool loop: vt's chat template and turn parser."""
    processor.chat_template = protocol.CHAT_TEMPLATE
    processor.tokenizer.chat_template = protocol.CHAT_TEMPLATE
    install_response_parser(processor)


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


def make_transform(system_prompt: str = "agent_system", user_prompt: str = "agent_user"):
    """A `datasets` batch transform: built/curated row -> TRL row (turn-1 prompt with the LOW view inline,
    original bytes in `image_bytes`, every other column kept for `reset()` and the reward functions)."""

    def transform(batch: dict) -> dict:
        out = {k: v for k, v in batch.items() if k != "image"}
        out["image_bytes"] = batch["image"]
        n = len(batch["image"])
        rows = [{k: batch[k][i] for k in batch} for i in range(n)]
        out["prompt"] = [protocol.agent_messages(r["question"], low_view({**r, "image_bytes": r["image"]}),
                                                 system_prompt, user_prompt) for r in rows]
        return out

    return transform


def budget(processor, row: dict, system_prompt: str, user_prompt: str, prompt_names: dict) -> tuple[int, int]:
    """(prompt tokens, tool-turn tokens) of a row, images counted at their view sizes."""
    from vttrain.models import visual_tokens
    low = (row["low_width"], row["low_height"])
    high = (row["high_width"], row["high_height"])
    msgs = protocol.agent_messages(row["question"], "IMG", system_prompt, user_prompt)  # size-only stand-in
    text = processor.apply_chat_template(msgs, chat_template=protocol.CHAT_TEMPLATE, tokenize=False,
                                         add_generation_prompt=True)
    prompt = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"]) - 1 + visual_tokens(processor, low)
    tool = _tool_turn_text_tokens(processor, prompt_names) - 1 + visual_tokens(processor, high)
    return prompt, tool


_TOOL_TOKENS: dict = {}


def _tool_turn_text_tokens(processor, prompt_names: dict) -> int:
    key = (id(processor), tuple(sorted(prompt_names.items())))
    if key not in _TOOL_TOKENS:
        msg = {"role": "tool", "content": protocol.tool_content(image="IMG", **prompt_names)}
        text = processor.apply_chat_template([{"role": "system", "content": "s"}, msg],
                                             chat_template=protocol.CHAT_TEMPLATE, tokenize=False,
                                             add_generation_prompt=True)
        head = processor.apply_chat_template([{"role": "system", "content": "s"}],
                                             chat_template=protocol.CHAT_TEMPLATE, tokenize=False)
        tok = processor.tokenizer
        # +1: the newline after the model's <|im_end|> belongs to the tool suffix in TRL's concatenation
        _TOOL_TOKENS[key] = len(tok(text, add_special_tokens=False)["input_ids"]) - \
            len(tok(head, add_special_tokens=False)["input_ids"]) + 1
    return _TOOL_TOKENS[key]
