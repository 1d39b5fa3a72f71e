"""The agent's tools: VisionThink's `resize_image` and vt's `zoom_image` (a crop at the high view's scale).

One entry point, `respond(call, row, tools)`, answers a parsed call (`parse_call`) with a `Reply`: the
environment turn's content blocks, the image it carries, the extra visual tokens, the tool and the error.
`vt train`'s environments (vttrain/grpo/env.py) and `vt eval --mode think` both use it, so the two see the
same pixels and count the same tokens. No torch here.

- `resize_image {"action": "resize"}` returns the row's HIGH view (the paper's tool).
- `zoom_image {"bbox_2d": [x1, y1, x2, y2]}` takes a box in the coordinates of the LOW view the model saw
  and returns that region cut from the ORIGINAL image at the high view's scale (high/low per side), each
  side snapped to a multiple of 28 px, so it costs exactly (w/28)·(h/28) visual tokens. A box must lie
  inside the low view, have a positive area and measure at least 28 px a side once scaled; any other box
  gets the release's error turn (`protocol.TOOL_ERROR_TEXT`).

`tools` is a selection such as ("resize",) (the default: VisionThink unchanged), ("zoom",) or
("resize", "zoom"); `selection()` reads it from a config value. The system prompt declares the selected
functions (`system_prompt`; the zoom declaration is the data file vtdata/prompts/zoom_tool.txt).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from vtdata import prompts
from vtdata.protocol import messages as protocol
from vtdata.console import VtError
from vtdata.resolution import visual_tokens

FUNCTIONS = {"resize": protocol.TOOL_NAME, "zoom": "zoom_image"}  # selection name -> function name
TOOL_OF = {v: k for k, v in FUNCTIONS.items()}
DEFAULT = ("resize",)
PATCH = 28  # Qwen2.5-VL: 14 px patches merged 2 x 2 -> one visual token per 28 x 28 px
ZOOM_HEAD = "<tool_response>\nThe zoomed-in region is shown below:\n"


def selection(value: Any) -> tuple[str, ...]:
    """A config's `tools` ("resize,zoom", ["zoom"], ...) -> the selection in canonical order."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(n).strip() for n in names if str(n).strip()]
    bad = sorted(set(names) - set(FUNCTIONS))
    if bad or not names:
        raise VtError(f"tools must be a non-empty list of {', '.join(FUNCTIONS)}; got {value!r}")
    return tuple(t for t in FUNCTIONS if t in names)


def system_prompt(name_or_path: str, tools: tuple = DEFAULT) -> str:
    """The agent system prompt declaring the selected functions.

    With the default selection the prompt is returned as written. Otherwise the `<tools>` block (which
    must declare `resize_image` alone, as the shipped prompt does) is replaced by the selected tools'
    declarations (resize's is that block's, zoom's the `zoom_tool` prompt file); a prompt that declares
    `zoom_image` itself is returned as written."""
    text = prompts.load(name_or_path)
    tools = selection(tools)
    if tools == DEFAULT or f'"name": "{FUNCTIONS["zoom"]}"' in text:
        return text
    head, sep, rest = text.partition("<tools>\n")
    block, sep2, tail = rest.partition("\n</tools>")
    if not (sep and sep2) or block.count('"name": ') != 1 or f'"name": "{protocol.TOOL_NAME}"' not in block:
        raise VtError(f"system prompt {name_or_path!r} has no <tools> block declaring resize_image alone to "
                      f"replace with the {', '.join(tools)} tool(s); declare zoom_image in it yourself")
    decl = {"resize": block, "zoom": prompts.load("zoom_tool").strip()}
    return head + sep + "\n".join(decl[t] for t in tools) + sep2 + tail


def parse_call(text: str, tools: tuple = DEFAULT, rule: str = "strict") -> protocol.ToolCall | str | None:
    """The call in one assistant turn: a ToolCall, an error string (for the error turn), or None (no call).

    Checks the JSON, that the function is one of `tools` and the shape of its arguments; whether a zoom box
    fits the image is `respond`'s check (it needs the row's sizes). `rule` release: the release's looser
    acceptance of a resize call (`protocol.parse_tool_call_release`; the resize tool only)."""
    tools = selection(tools)
    if rule not in protocol.TOOL_CALL_PARSERS:
        raise VtError(f"tool_call_parse must be one of {', '.join(protocol.TOOL_CALL_PARSERS)}; got {rule!r}")
    if rule != "strict":
        if tools != DEFAULT:
            raise VtError(f"tool_call_parse: {rule} applies to the resize tool only (tools: resize)")
        return protocol.TOOL_CALL_PARSERS[rule](text)
    if tools == DEFAULT:
        return protocol.parse_tool_call(text)
    obj = protocol.parse_payload(text)
    if not isinstance(obj, dict):
        return obj
    name, args = obj.get("name"), obj.get("arguments")
    allowed = [FUNCTIONS[t] for t in tools]
    if name not in allowed:
        return (f"unknown function {name!r}; the available function{'s are' if len(allowed) > 1 else ' is'} "
                f"{', '.join(allowed)}")
    if name == protocol.TOOL_NAME:
        return protocol.parse_tool_call(text)
    if not isinstance(args, dict):
        return 'the "arguments" of the tool call must be a JSON object like {"bbox_2d": [x1, y1, x2, y2]}'
    extra = sorted(set(args) - {"bbox_2d"})
    if extra:
        return f"unexpected argument(s) {', '.join(map(repr, extra))}; {name} takes only \"bbox_2d\""
    box = args.get("bbox_2d")
    if not (isinstance(box, list) and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
        return f"bbox_2d must be a list of 4 numbers [x1, y1, x2, y2]; got {box!r}"
    return protocol.ToolCall(name, {"bbox_2d": [v for v in box]})


# ------------------------------------------------------------------------------------------- geometry

def _sizes(row: dict) -> tuple[int, int, int, int]:
    return (int(row["low_width"]), int(row["low_height"]), int(row["high_width"]), int(row["high_height"]))


def check_box(box: list, row: dict) -> str | None:
    """None when a zoom box (low-view coordinates) is valid for the row, else the reason."""
    lw, lh, hw, hh = _sizes(row)
    x1, y1, x2, y2 = box
    if not (0 <= x1 <= lw and 0 <= x2 <= lw and 0 <= y1 <= lh and 0 <= y2 <= lh):
        return f"the box {box} is not inside the image (x in [0, {lw}], y in [0, {lh}])"
    if x2 <= x1 or y2 <= y1:
        return f"the box {box} has no area (need x1 < x2 and y1 < y2)"
    w, h = (x2 - x1) * hw / lw, (y2 - y1) * hh / lh
    if w < PATCH or h < PATCH:
        return (f"the box {box} is too small: each side must be at least {PATCH * lw / hw:g} x "
                f"{PATCH * lh / hh:g} px of the current image")
    return None


def _snap(v: float, limit: int) -> int:
    top = max(PATCH, limit // PATCH * PATCH)
    return min(top, max(PATCH, PATCH * round(v / PATCH)))


def crop_size(box: list, row: dict) -> tuple[int, int]:
    """Size of the zoomed region: the box at the high view's scale, sides snapped to multiples of 28."""
    lw, lh, hw, hh = _sizes(row)
    x1, y1, x2, y2 = box
    return _snap((x2 - x1) * hw / lw, hw), _snap((y2 - y1) * hh / lh, hh)


def original(row: dict):
    """The row's original image (RGB, EXIF applied)."""
    from PIL import Image, ImageOps

    from vtdata.resolution import decode, load_bytes, to_rgb
    image = row["image"]
    if isinstance(image, Image.Image):
        return to_rgb(ImageOps.exif_transpose(image))
    try:
        return decode(load_bytes(image))
    except ValueError as err:
        raise VtError(f"row {row.get('id', '?')} has no usable image: {err}") from None


def zoom(row: dict, box: list):
    """The box (low-view coordinates, validated) cut from the ORIGINAL image and resampled (LANCZOS) to
    `crop_size`."""
    from PIL import Image
    lw, lh, _, _ = _sizes(row)
    img = original(row)
    sx, sy = img.width / lw, img.height / lh
    x1, y1, x2, y2 = box
    return img.resize(crop_size(box, row), Image.Resampling.LANCZOS, box=(x1 * sx, y1 * sy, x2 * sx, y2 * sy))


# ------------------------------------------------------------------------------------------ the reply

@dataclass(frozen=True)
class Reply:
    """The environment's answer to one call."""
    message: list           # content blocks of the tool turn (image block carries `image`)
    image: Any = None       # the image returned (None on an error)
    visual_tokens: int = 0  # visual tokens the image adds
    tool: str | None = None  # "resize" | "zoom" (None when the call named no available function)
    error: str | None = None


def respond(call: protocol.ToolCall | str, row: dict, tools: tuple = DEFAULT, ok_prompt: str = "tool_ok",
            error_prompt: str = "tool_error", zoom_ok_prompt: str = "zoom_ok",
            view: Callable | None = None) -> Reply:
    """Answer one parsed call (`parse_call`'s ToolCall, or its error string) on a row.

    `row` holds `image` (the original, bytes or PIL) and the low/high sizes. `view(row, "high")` makes the
    high view (default `vtdata.resolution.view_of`; the trainer passes a cached one)."""
    tools = selection(tools)
    tool = TOOL_OF.get(call.name) if isinstance(call, protocol.ToolCall) else None
    error = call if isinstance(call, str) else None
    if error is None and tool not in tools:
        error = f"unknown function {call.name!r}; the available functions are {', '.join(FUNCTIONS[t] for t in tools)}"
    if error is None and tool == "zoom":
        error = check_box(call.arguments["bbox_2d"], row)
    if error is not None:
        return Reply(protocol.tool_content(error=error, error_prompt=error_prompt), tool=tool, error=error)
    if tool == "resize":
        if view is None:
            from vtdata.resolution import view_of as view
        image = view(row, "high")
        return Reply(protocol.tool_content(image=image, ok_prompt=ok_prompt), image, visual_tokens(*image.size),
                     tool)
    image = zoom(row, call.arguments["bbox_2d"])
    message = [{"type": "text", "text": ZOOM_HEAD}, {"type": "image", "image": image},
               {"type": "text", "text": protocol.TOOL_OK_TAIL + prompts.load(zoom_ok_prompt)}]
    return Reply(message, image, visual_tokens(*image.size), tool)


def call_text(tool: str, box: list | None = None) -> str:
    """A well-formed `<tool_call>` of a tool (the warm start's and tests' example calls)."""
    import json
    args = {"action": protocol.TOOL_ACTION} if tool == "resize" else {"bbox_2d": list(box)}
    return f'<tool_call>\n{{"name": "{FUNCTIONS[tool]}", "arguments": {json.dumps(args)}}}\n</tool_call>'
