"""The zoom tool and N turns (issue 14): box validation, crop geometry and exact token counts, the tool
selection's prompt and format rule, the token-cost penalty, the miniature's zoom warm start (torch-free
parts here; the trainer and eval paths at the end on the tiny model)."""
import io
import json

import pytest
from PIL import Image

from vtdata import prompts, protocol, tools
from vtdata.console import VtError

BOTH = ("resize", "zoom")


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _row(size=(400, 600), low=(56, 84), high=(112, 168)):
    """An original with a distinct colour per 10-px column and row band, low/high views as a built row."""
    img = Image.new("RGB", size)
    px = img.load()
    for x in range(size[0]):
        for y in range(size[1]):
            px[x, y] = (x % 256, y % 256, (x // 256) * 100 + (y // 256) * 50)
    return {"id": "r", "image": _png(img), "low_width": low[0], "low_height": low[1],
            "high_width": high[0], "high_height": high[1]}


def _call(box, name="zoom_image"):
    return f'<think>t</think><tool_call>{{"name": "{name}", "arguments": {{"bbox_2d": {json.dumps(box)}}}}}</tool_call>'


@pytest.mark.parametrize("box,why", [
    ([-1, 0, 20, 20], "not inside"), ([0, 0, 57, 20], "not inside"), ([0, 0, 20, 85], "not inside"),
    ([20, 0, 10, 20], "no area"), ([0, 10, 20, 10], "no area"),
    ([0, 0, 13, 40], "too small"), ([0, 0, 40, 13.9], "too small")])
def test_invalid_boxes_get_the_release_error_turn(box, why):
    row = _row()
    call = tools.parse_call(_call(box), BOTH)
    assert isinstance(call, protocol.ToolCall)  # well-formed: the geometry is the environment's check
    reply = tools.respond(call, row, BOTH)
    assert why in reply.error and reply.image is None and reply.visual_tokens == 0 and reply.tool == "zoom"
    text = reply.message[0]["text"]
    assert text == protocol.TOOL_ERROR_TEXT.format(error=reply.error) + prompts.load("tool_error")


@pytest.mark.parametrize("text,why", [
    (_call([0, 0, 20]), "list of 4 numbers"), (_call(["0", 0, 20, 20]), "list of 4 numbers"),
    (_call([0, 0, True, 20]), "list of 4 numbers"),
    ('<think>t</think><tool_call>{"name": "zoom_image", "arguments": {"bbox_2d": [0, 0, 20, 20], "k": 1}}</tool_call>',
     "unexpected argument"),
    (_call([0, 0, 20, 20], name="crop"), "available functions are resize_image, zoom_image")])
def test_malformed_zoom_calls_are_format_errors(text, why):
    err = tools.parse_call(text, BOTH)
    assert isinstance(err, str) and why in err
    assert why in protocol.check_turn(text, final=False, tools=BOTH)


def test_tool_selection_limits_the_functions():
    assert "available function is zoom_image" in tools.parse_call(protocol.CALL_EXAMPLE, ("zoom",))
    assert "only available function is resize_image" in tools.parse_call(_call([0, 0, 20, 20]), ("resize",))
    assert isinstance(tools.parse_call(protocol.CALL_EXAMPLE, BOTH), protocol.ToolCall)
    assert tools.selection("zoom, resize") == BOTH and tools.selection(["zoom"]) == ("zoom",)
    with pytest.raises(VtError):
        tools.selection("resize,crop")


def test_crop_geometry_and_exact_token_count():
    """Box in low-view coordinates -> region of the ORIGINAL at the high view's scale, sides snapped to 28."""
    row = _row()  # original 400 x 600; low 56 x 84; high 112 x 168 (x2 per side)
    box = [7, 14, 28.5, 42]  # 21.5 x 28 low px -> 43 x 56 at the high scale -> snapped 56 x 56
    assert tools.crop_size(box, row) == (56, 56)
    reply = tools.respond(tools.parse_call(_call(box), BOTH), row, BOTH)
    assert reply.error is None and reply.image.size == (56, 56) and reply.visual_tokens == 4
    # the pixels come from the original (400/56 original px per low px), not from the high view
    sx = 400 / 56
    expect = Image.open(io.BytesIO(row["image"])).resize((56, 56), Image.Resampling.LANCZOS,
                                                        box=(7 * sx, 14 * 600 / 84, 28.5 * sx, 42 * 600 / 84))
    assert reply.image.tobytes() == expect.tobytes()
    r, g, _ = reply.image.getpixel((0, 0))
    assert abs(r - 7 * sx) < 3 and abs(g - 14 * 600 / 84) < 3  # the box's corner of the original
    assert reply.message[0]["text"] == tools.ZOOM_HEAD and reply.message[1]["image"] is reply.image
    assert reply.message[2]["text"] == protocol.TOOL_OK_TAIL + prompts.load("zoom_ok")
    # the whole image: the high view's size and tokens; a resize costs the same
    whole = tools.respond(tools.parse_call(_call([0, 0, 56, 84]), BOTH), row, BOTH)
    assert whole.image.size == (112, 168) and whole.visual_tokens == 4 * 6
    resize = tools.respond(tools.parse_call(protocol.CALL_EXAMPLE, BOTH), row, BOTH)
    assert resize.tool == "resize" and resize.image.size == (112, 168) and resize.visual_tokens == 24
    assert resize.message == protocol.tool_content(image=resize.image)


def test_miniature_quadrant_zoom_is_the_high_view_quadrant():
    from vtdata.resolution import view_of
    from vtdata.sources import miniature
    s = miniature.sample("ocr", 0, 1)
    row = {"image": miniature.render(s["spec"]), "low_width": 56, "low_height": 56, "high_width": 112,
           "high_height": 112}
    reply = tools.respond(tools.parse_call(_call([28, 0, 56, 28]), ("zoom",)), row, ("zoom",))
    assert reply.image.size == (56, 56) and reply.visual_tokens == 1 * 4  # vs 16 for the resize
    high = view_of(row, "high").crop((56, 0, 112, 56))
    assert reply.image.tobytes() == high.tobytes()


def test_system_prompt_declares_the_selected_tools():
    assert tools.system_prompt("agent_system") == prompts.load("agent_system")
    for sel in (("zoom",), BOTH):
        text = tools.system_prompt("agent_system", sel)
        block = text.split("<tools>\n")[1].split("\n</tools>")[0]
        decls = [json.loads(x) for x in block.replace("\n* ", "\\n* ").split("\n")]
        assert [d["function"]["name"] for d in decls] == [tools.FUNCTIONS[t] for t in sel]
        assert text.replace(block, "") == prompts.load("agent_system").replace(
            prompts.load("agent_system").split("<tools>\n")[1].split("\n</tools>")[0], "")
    msgs = protocol.agent_messages("q?", None, tools=("zoom",))
    assert "zoom_image" in msgs[0]["content"][0]["text"] and "resize_image" not in msgs[0]["content"][0]["text"]


def test_n_turn_format_rule():
    zoom = "<think>a</think>" + tools.call_text("zoom", [0, 0, 28, 28])
    resize = "<think>b</think>" + tools.call_text("resize")
    ans = "<think>c</think><answer>x</answer>"
    assert protocol.check_format([zoom, resize, ans], tools=BOTH) is None
    assert protocol.check_format([zoom, zoom, zoom, ans], tools=("zoom",)) is None
    assert "turn 2: final turn holds a <tool_call>" in protocol.check_format([zoom, resize], tools=BOTH)  # cut
    assert "turn 1" in protocol.check_format([zoom, ans], tools=("resize",))  # not a selected tool


def test_token_cost_penalty_prefers_the_cheaper_tool():
    from vttrain.reward import Rollout, group_penalties
    zoom = Rollout(score=1.0, used_high=True, attempted=True, cost=4 / 16)
    resize = Rollout(score=1.0, used_high=True, attempted=True, cost=16 / 16)
    direct = Rollout(score=0.0, used_high=False, attempted=False)
    group = [zoom, resize, direct]  # no correct direct answer: r = 0 < theta, the direct side pays
    assert group_penalties(group, "paper") == [0.0, 0.0, 0.1]
    group = [zoom, resize, Rollout(score=1.0, used_high=False, attempted=False)]  # r = 1/3 >= 0.2: high pays
    assert group_penalties(group, "paper") == [0.1, 0.1, 0.0]
    assert group_penalties(group, "paper", cost="tokens") == pytest.approx([0.025, 0.1, 0.0])
    assert group_penalties(group, "always", cost="tokens") == pytest.approx([0.025, 0.1, 0.0])
    assert group_penalties(group, "released", cost="tokens") == pytest.approx([0.025, 0.1, 0.0])
    with pytest.raises(VtError):
        group_penalties(group, "paper", cost="pixels")


def test_default_warm_start_keeps_its_key_and_zoom_warm_start_teaches_the_box_not_the_choice():
    from vttrain.warmstart import MiniConfig, trajectory, zoom_box
    # the cached regression baseline (~/.cache/vt/models/mini-0de7d7f3c69047b2): the tools field must not move it
    assert MiniConfig().key() == MiniConfig(tools=("resize",)).key() == "0de7d7f3c69047b2"
    cfg = MiniConfig(tools=BOTH)
    assert cfg.key() != MiniConfig().key()
    rows = [trajectory(i, cfg) for i in range(160)]
    agent = [r for r in rows if r["kind"] == "agent"]
    for task in ("general", "ocr"):
        mine = [r for r in agent if r["task"] == task]
        share = {t: sum(r.get("tool_name") == t for r in mine) / len(mine) for t in BOTH}
        assert 0.1 < share["resize"] < 0.45 and 0.1 < share["zoom"] < 0.45  # ~0.25 each, whatever the class
    z = next(r for r in agent if r.get("tool_name") == "zoom" and r["task"] == "ocr")
    call = z["messages"][2]["content"][0]["text"]
    box = json.loads(call.split("<tool_call>")[1].split("</tool_call>")[0])["arguments"]["bbox_2d"]
    assert z["images"][1].size == (56, 56)
    assert box in ([0, 0, 28, 28], [28, 0, 56, 28], [0, 28, 28, 56], [28, 28, 56, 56])
    # the box is the low-view quadrant that holds the 28 x 28 grey box (which never straddles quadrants)
    for b in [(0, 0), (28, 56), (56, 28), (84, 84), (28, 28)]:
        x, y, x2, y2 = zoom_box({"box": b}, 112)
        assert 2 * x <= b[0] and b[0] + 28 <= 2 * x2 and 2 * y <= b[1] and b[1] + 28 <= 2 * y2
