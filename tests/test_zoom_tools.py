"""The zoom tool and N turns (issue 14): box validation, crop geometry and exact token counts, the tool
selection's prompt and format rule, the token-cost penalty, the miniature's zoom warm start (torch-free
parts here; the trainer and eval paths at the end on the tiny model)."""
import io
import json

import pytest
from PIL import Image

from vtdata import prompts, protocol

from vtdata.protocol import tools
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
    from vttrain.grpo.reward import Rollout, group_penalties
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
    from vttrain.models.warmstart_data import MiniConfig, trajectory, zoom_box
    # the tools field must not move the resize-only key (the guessing build of before issue 28 keeps its own)
    assert MiniConfig().key() == MiniConfig(tools=("resize",)).key()
    assert MiniConfig(abstain=False).key() == MiniConfig(tools=("resize",), abstain=False).key() == "8b9f651a91f6ef23"
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
    # a zoom build's box sentence names the quadrant that its zoom call then takes (and the general one does not)
    from vttrain.models.warmstart_data import WHERE
    quads = [[0, 0, 28, 28], [28, 0, 56, 28], [0, 28, 28, 56], [28, 28, 56, 56]]
    zooms = [r for r in agent if r.get("tool_name") == "zoom"]
    for r in zooms:
        box = json.loads(r["messages"][2]["content"][0]["text"].split("<tool_call>")[1].split("</tool_call>")[0])
        named = [w for w in WHERE if f" at the {w} " in r["think"]]
        assert named == ([] if r["task"] == "general" else [WHERE[quads.index(box["arguments"]["bbox_2d"])]])
    assert {r["task"] for r in zooms} == {"general", "ocr"}
    # each row offers resize, zoom or both, and calls only what its prompt declares
    offered = {}
    for r in agent:
        system = r["messages"][0]["content"]
        system = system if isinstance(system, str) else system[0]["text"]
        declared = tuple(t for t, f in (("resize", "resize_image"), ("zoom", "zoom_image")) if f'"name": "{f}"' in system)
        offered[declared] = offered.get(declared, 0) + 1
        assert r.get("tool_name") in (None, *declared)
    assert set(offered) == {("resize",), ("zoom",), BOTH}
    # the call/answer choice follows one " looks flat.</think>" token whatever the quadrant (the quadrant is its own)
    from vttrain.models.warmstart_data import think_sentences
    from vttrain.models.warmstart import build_tokenizer
    tok = build_tokenizer(cfg)
    pieces = [tok.convert_ids_to_tokens(tok(t)["input_ids"]) for t in think_sentences(cfg)["ocr"]]
    assert all(len(p) == 3 for p in pieces) and len({p[1] for p in pieces}) == 4 and len({p[2] for p in pieces}) == 2
    # the box is the low-view quadrant that holds the 28 x 28 grey box (which never straddles quadrants)
    for b in [(0, 0), (28, 56), (56, 28), (84, 84), (28, 28)]:
        x, y, x2, y2 = zoom_box({"box": b}, 112)
        assert 2 * x <= b[0] and b[0] + 28 <= 2 * x2 and 2 * y <= b[1] and b[1] + 28 <= 2 * y2


# ---------------------------------------------------------------------------- trainer and eval (tiny model)

def _jsonl(path):
    return [json.loads(x) for x in open(path).read().splitlines() if x.strip()]


ZOOM = "<think>z</think>" + tools.call_text("zoom", [0, 0, 28, 28])  # a quadrant of the 56 x 56 low view
RESIZE = "<think>r</think>" + tools.call_text("resize")
SMALL = "<think>s</think>" + tools.call_text("zoom", [0, 0, 5, 5])  # too small: error turn


def _n_turn_script(turn, index, prompt):
    """Per group of 4, max_turns 3: 0 zooms, resizes, answers; 1 sends a too-small box, answers; 2 zooms at
    every turn (cut at the limit, no answer); 3 answers at once."""
    from vttrain.grpo import scripted
    k = index % 4
    plan = {0: [ZOOM, RESIZE], 1: [SMALL], 2: [ZOOM, ZOOM, ZOOM], 3: []}[k]
    return plan[turn - 1] if turn <= len(plan) else scripted.answer(scripted.expected_answer(prompt))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import train_helpers as h
    root = tmp_path_factory.mktemp("zoom")
    return root, h.tiny_model(root), h.write_dataset(root / "data", n=4)


@pytest.mark.parametrize("mask", [False, True])
def test_n_turn_training_with_both_tools(tiny, mask):
    """TRL's tool loop with ResizeZoomEnv for 3 turns: the crop and the high view reach the model, every tool turn
    is masked out of the loss, the rollout cut at the limit is counted (or masked with mask_over_turns)."""
    import train_helpers as h
    from vttrain.models import build as models
    from vttrain.grpo import scripted
    from vttrain.grpo.train import build_trainer

    class T(scripted.ScriptedGRPOTrainer):
        caught = []
        script = staticmethod(_n_turn_script)

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            T.caught.append(out)
            return out
    root, model, data = tiny
    run = root / f"run-{mask}"
    cfg = h.config(model, data, run, max_steps=1, max_turns=3, tools="resize,zoom", penalty_cost="tokens",
                   mask_over_turns=mask, max_completion_length=900)
    trainer, proc = build_trainer(cfg, T)
    trainer.train()
    out = T.caught[0]
    tok = proc.tokenizer
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    crop, high = models.visual_tokens(proc, (56, 56)), models.visual_tokens(proc, (112, 112))
    rolls = _jsonl(run / "rollouts.jsonl")
    assert [len(r["turns"]) for r in rolls] == [3, 2, 3, 1]
    assert [r["extra_visual_tokens"] for r in rolls] == [crop + high, 0, 2 * crop, 0]
    assert [r["unanswered"] for r in rolls] == [False, False, True, False]
    assert [r["format_ok"] for r in rolls] == [True, True, False, True]
    assert rolls[0]["score"] == 1.0 and rolls[2]["score"] == 0.0
    for i in range(4):
        ids, cm, tm = out["completion_ids"][i], out["completion_mask"][i].bool(), out["tool_mask"][i].bool()
        assert int((ids == pad).sum()) == rolls[i]["extra_visual_tokens"]
        model_ids = ids[cm & tm].tolist()
        expected = []
        for text in rolls[i]["turns"]:
            expected += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if mask and i == 2:
            assert model_ids == []  # over the turn limit: no loss at all
        else:
            assert model_ids == expected  # only the model's turns carry loss; every tool turn is masked
        env_text = tok.decode(ids[cm & ~tm]) if not (mask and i == 2) else ""
        if i == 0:
            assert env_text.count("The zoomed-in region is shown below") == 1
            assert env_text.count("The resized image is shown below") == 1
        if i == 1:
            assert "ERROR occurs during the function tool call. Error Information: the box [0, 0, 5, 5] is too small" \
                in env_text
    # token-cost penalty: r = 2/3 >= theta, the extra-pixel rollouts pay by their tokens (0 pays crop+high of high)
    assert rolls[0]["penalty"] == pytest.approx(0.1 * (crop + high) / high)
    assert (rolls[2]["reward"] is None) == mask
    m = [x for x in _jsonl(run / "metrics.jsonl") if "loss" in x][0]
    assert m["unanswered_ratio"] == 0.25 and m["zoom_ratio"] == 0.5 and m["resize_tool_ratio"] == 0.25


def test_think_eval_with_zoom_and_n_turns(tmp_path):
    """vt eval --mode think --tools resize,zoom: a zoom then a resize reach the model; visual tokens = low +
    crop + high; per-tool rates and unanswered samples in the summary."""
    from eval_helpers import eval_data, tiny_model, val_rows
    from vtdata.resolution import view_of
    from vttrain.eval import EvalConfig, run as run_eval
    from vttrain.models.build import load_processor, visual_tokens
    from vttrain.rollout.policy import LocalPolicy, message_images

    class Plan(LocalPolicy):
        async def agenerate(self, requests):
            gens = await super().agenerate(requests)
            for g, r in zip(gens, requests):
                n = len(message_images(r.messages))
                lw, lh = message_images(r.messages)[0].size
                g.text = ("<think>z</think>" + tools.call_text("zoom", [0, 0, lw / 2, lh / 2]) if n == 1 else
                          RESIZE if n == 2 else "<think>a</think><answer>7</answer>")
            return gens

    data, model, db = eval_data(), tiny_model(), tmp_path / "vt.duckdb"
    rows = val_rows(data)[:2]
    proc = load_processor(model)
    for turns, name in ((3, "z3"), (2, "z2")):
        res = run_eval(EvalConfig(data=str(data), model=str(model), mode="think", db=str(db), limit=2, max_turns=turns,
                                  tools="resize,zoom", max_new_tokens=4, name=name, out=str(tmp_path)),
                       policy=Plan(str(model), chat_template=protocol.CHAT_TEMPLATE, batch_size=4))
        from vtdata.db import connect
        con = connect(db, read_only=True)
        preds = {r[0]: r[1:] for r in con.execute("SELECT sample_id, zoomed, resized, visual_tokens, turns FROM "
                                                  "eval_predictions WHERE run = ?", [name]).fetchall()}
        con.close()
        for r in rows:
            low = view_of(r, "low")
            box = [0, 0, low.size[0] / 2, low.size[1] / 2]
            crop = tools.crop_size(box, r)
            zoomed, resized, vis, said = preds[r["id"]]
            assert zoomed and len(said) == turns
            want = visual_tokens(proc, low) + visual_tokens(proc, crop)
            assert resized == (turns == 3)
            assert vis == want + (visual_tokens(proc, view_of(r, "high")) if turns == 3 else 0)
        total = next(s for s in res["summary"] if s["source"] == "all")
        assert total["zoom_ratio"] == 1.0 and total["unanswered"] == (0 if turns == 3 else 2)
    # vt report: a point per tool setting when a run used zoom
    from vttrain.report.report import ReportConfig, build_report
    page = build_report(ReportConfig(out=str(tmp_path / "report"), db=str(db), runs=[]))
    assert "5. Tools" in page.read_text() and (tmp_path / "report" / "plots" / "tools.png").is_file()


def test_an_eval_table_from_before_zoom_gets_the_column(tmp_path):
    import duckdb

    from vtdata import tables
    from vttrain.report.summary import summarize
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    old = tables.DDL["eval_predictions"].split(";")[0].replace(" zoomed BOOLEAN,", "")
    con.execute(old)
    assert "zoomed" not in tables.columns(con, "eval_predictions")
    assert summarize(con, "none")[-1]["zoom_ratio"] == 0.0  # read-only readers cope with the old table
    tables.ensure(con, "eval_predictions")
    assert "zoomed" in tables.columns(con, "eval_predictions")


def test_location_probe_reads_a_linear_code_and_not_noise():
    """bench/location_probe.py's probe (issue 19): held-out accuracy ~1 where the label is a linear function of
    the features, ~chance (0.25) where it is not (rows of one image never straddle the split)."""
    import sys
    from pathlib import Path

    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from location_probe import linear_probe
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    x = torch.randn(400, 32, generator=g)
    coded = x + 6 * torch.nn.functional.one_hot(y, 32).float()
    assert linear_probe(coded, y, torch.arange(400)) >= 0.95
    assert linear_probe(x, y, torch.arange(400)) <= 0.45


def test_box_check_follows_the_models_own_sentence_to_its_call(monkeypatch):
    """`check_boxes` (issue 19): the model's likeliest turn-1 sentence, then its likeliest zoom call after that
    sentence. A fake model that reads the grey box's quadrant off the low view and copies it into the call scores
    1; one that names the wrong quadrant scores 0 even though its call copies the sentence faithfully."""
    import numpy as np
    from vttrain.models import warmstart_check as wc
    from vttrain.models.warmstart_data import WHERE, MiniConfig, think_sentences

    def grey_quadrant(img):
        a = np.asarray(img.convert("RGB"), dtype=float)
        sat = [np.ptp(a[y:y + 28, x:x + 28].mean((0, 1))) for y in (0, 28) for x in (0, 28)]
        return int(np.argmin(sat))  # the grey box is the one colourless quadrant

    def fake(shift):
        def likeliest(model, processor, heads, images, tails, batch=64):
            if "<tool_call>" not in tails[0]:  # turn 1's sentence
                return [tails.index(next(t for t in tails if f"at the {WHERE[(grey_quadrant(im) + shift) % 4]} " in t
                                         and "flat" in t)) for im in images]
            named = [next(q for q, w in enumerate(WHERE) if f"at the {w} " in h) for h in heads]
            return named  # the call copies the sentence's quadrant (calls are in WHERE's order)
        return likeliest

    cfg = MiniConfig(tools=BOTH, check_size=12)
    assert len(think_sentences(cfg)["ocr"]) == 8
    proc = type("P", (), {"apply_chat_template": lambda self, m, **kw: "head:"})()
    monkeypatch.setattr(wc, "_likeliest", fake(0))
    assert wc.check_boxes(None, proc, cfg) == 1.0
    monkeypatch.setattr(wc, "_likeliest", fake(1))
    assert wc.check_boxes(None, proc, cfg) == 0.0
