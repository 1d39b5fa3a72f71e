"""The two-question miniature family (the detail class is erased at the low view) and the warm start's SFT
data (the image-decision family: the tool-call rate does not depend on the source)."""
import itertools

import numpy as np
import pytest

from vtdata.resolution import view
from vtdata.sources import miniature


def _low(spec):
    return np.asarray(view(miniature.render(spec), (56, 56)), dtype=int)


def _high(spec):
    return np.asarray(view(miniature.render(spec), (112, 112)), dtype=int)


def test_detail_classes_are_erased_at_the_low_view_and_plain_at_the_high_view():
    for i in range(40):
        spec = miniature.sample("ocr", 0, i)["spec"]
        lows = [_low(dict(spec, pattern=p)) for p in miniature.PATTERNS]
        highs = [_high(dict(spec, pattern=p)) for p in miniature.PATTERNS]
        for a, b in itertools.combinations(range(len(miniature.PATTERNS)), 2):
            # low views: every pixel within a few grey levels (the resampling filter's rounding)
            assert np.abs(lows[a] - lows[b]).max() <= 8, (i, miniature.PATTERNS[a], miniature.PATTERNS[b])
            # high views: the box differs by half the grey contrast (>= 100 levels) somewhere
            assert np.abs(highs[a] - highs[b]).max() >= 45


def test_general_class_survives_the_low_view():
    """The colour question: the background's colour is still there at 56 x 56 (most low-view pixels)."""
    for i in range(20):
        s = miniature.sample("general", 0, i)
        low = _low(s["spec"]).reshape(-1, 3)
        col = np.array(miniature.COLORS[s["answer"]])
        assert (np.abs(low - col).sum(1) < 30).sum() >= 0.4 * len(low)


def test_samples_are_deterministic_and_answers_in_the_answer_space():
    a = [miniature.sample("ocr", 3, i) for i in range(30)]
    b = [miniature.sample("ocr", 3, i) for i in range(30)]
    assert a == b
    assert miniature.render(a[0]["spec"]) == miniature.render(b[0]["spec"])
    assert {s["answer"] for s in a} <= set(miniature.PATTERNS)
    assert len({s["answer"] for s in a}) == len(miniature.PATTERNS)
    assert a != [miniature.sample("ocr", 4, i) for i in range(30)]


def test_sft_tool_rate_does_not_depend_on_the_question_type():
    """The warm start must not teach WHEN to resize: among agent trajectories the share that calls the tool
    is the same (tool_rate) for both classes, so GRPO has something to learn."""
    from vttrain.models.warmstart_data import MiniConfig, trajectory
    cfg = MiniConfig()
    rows = [trajectory(i, cfg) for i in range(3000)]
    agent = [r for r in rows if r["kind"] == "agent"]
    rate = {s: np.mean([r["tool"] for r in agent if r["source"] == s]) for s in ("general", "coarse", "fine")}
    assert all(abs(v - cfg.tool_rate) < 0.06 for v in rate.values()), rate
    assert max(rate.values()) - min(rate.values()) < 0.08, rate
    # the box question's think sentence says what the low view shows (striped: coarse, flat: fine), and the tool
    # is called at the same rate after either sentence
    from vttrain.models.warmstart_data import THINK_FIRST
    assert {r["think"] for r in agent if r["source"] == "coarse"} == {THINK_FIRST["striped"]}
    assert {r["think"] for r in agent if r["source"] == "fine"} == {THINK_FIRST["flat"]}
    after = {k: np.mean([r["tool"] for r in agent if r["think"] == THINK_FIRST[k]]) for k in ("striped", "flat")}
    assert abs(after["striped"] - after["flat"]) < 0.08, after
    # every tool trajectory: the call is well-formed and followed by the high view, then an answer
    from vtdata import protocol
    for r in agent:
        texts = [m["content"][0]["text"] for m in r["messages"] if m["role"] == "assistant"]
        assert protocol.check_format(texts) is None
        assert len(texts) == (2 if r["tool"] else 1) and len(r["images"]) == (2 if r["tool"] else 1)
        if r["tool"]:
            assert isinstance(protocol.parse_tool_call(texts[0]), protocol.ToolCall)
            assert r["images"][1].size == (112, 112) and r["images"][0].size == (56, 56)


def test_a_view_that_hides_the_pattern_is_answered_unknown_and_the_call_still_untaught():
    """issue 28: with `abstain` (the default) a direct answer to the box question on a view whose box looks flat
    is UNSEEN, never a guess (chance 1/3 made E[r] cross theta and the scoring labels noisy); a view that shows the
    pattern, the colour question and the answer after the tool keep the true answer (the call rate: the test above)."""
    from vtdata import protocol
    from vttrain.models.warmstart_data import THINK_AFTER, THINK_FIRST, UNSEEN, MiniConfig, trajectory
    rows = [trajectory(i, MiniConfig()) for i in range(600)]
    seen = {"flat-direct": 0, "striped-direct": 0, "after-tool": 0}
    for r in rows:
        texts = [m["content"][0]["text"] for m in r["messages"] if m["role"] == "assistant"]
        answers = [t.split("<answer>")[1].split("</answer>")[0] for t in texts if "<answer>" in t]
        if r["kind"] == "agent" and r["tool"]:
            assert texts[1].startswith(THINK_AFTER) and answers[-1] != UNSEEN
            seen["after-tool"] += 1
        elif texts[0].startswith(THINK_FIRST["flat"]):
            assert answers == [UNSEEN], texts
            seen["flat-direct"] += 1
        else:
            assert answers[0] != UNSEEN, texts
            seen["striped-direct"] += texts[0].startswith(THINK_FIRST["striped"])
    assert min(seen.values()) > 20, seen
    # the guessing build (before issue 28) stays buildable with its old cache key, and guesses
    old = MiniConfig(abstain=False)
    assert old.key() == "8b9f651a91f6ef23" != MiniConfig().key()
    flat = next(r for r in (trajectory(i, old) for i in range(200))
                if r["kind"] != "agent" or not r["tool"]
                if r["messages"][-1]["content"][0]["text"].startswith(THINK_FIRST["flat"]))
    assert UNSEEN not in flat["messages"][-1]["content"][0]["text"]
    assert protocol.check_format([flat["messages"][-1]["content"][0]["text"]]) is None


def test_training_template_renders_the_protocol_text_and_masks_only_assistant_turns():
    pytest.importorskip("torch")
    from vttrain.models.build import _image_only_processor_class, _pil_image_processor
    from vttrain.models.warmstart_data import MiniConfig, training_chat_template, trajectory
    from vttrain.models.warmstart import build_tokenizer
    from vtdata import protocol
    from trl.data_utils import prepare_multimodal_messages
    proc = _image_only_processor_class()(_pil_image_processor(), build_tokenizer(MiniConfig()),
                                        chat_template=protocol.chat_template())
    row = next(r for r in (trajectory(i, MiniConfig()) for i in range(50)) if r["tool"])
    msgs = prepare_multimodal_messages(row["messages"], images=row["images"])
    plain = proc.apply_chat_template(msgs, tokenize=False)
    marked = proc.apply_chat_template(msgs, tokenize=False, chat_template=training_chat_template())
    assert plain == marked
    out = proc.apply_chat_template(msgs, tokenize=True, return_dict=True, chat_template=training_chat_template(),
                                   return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"][0], out["assistant_masks"][0]
    learned = proc.tokenizer.decode([i for i, m in zip(ids, mask) if m])
    # exactly the two assistant turns (with their end tokens), nothing of the prompt or the tool turn
    assert learned.count("<|im_end|>") == 2 and "<tool_call>" in learned and "<answer>" in learned
    assert "resized image" not in learned and "<|image_pad|>" not in learned and "You are" not in learned


def test_turn_one_think_sentence_is_read_off_the_shown_view():
    """The box question's sentence comes from the pixels of the view the model is shown: a fine box looks flat
    at the low view and striped at the high view; a coarse box looks striped at both."""
    from vtdata.sources import sufficiency
    from vttrain.models.warmstart_data import THINK_FIRST, first_think
    for i in range(10):
        for scale, low_says in (("fine", "flat"), ("coarse", "striped")):
            s = sufficiency.sample("ocr", 0, i, 112, scale)
            data = sufficiency.render(s["spec"])
            assert first_think("ocr", s["spec"], view(data, (56, 56))) == THINK_FIRST[low_says]
            assert first_think("ocr", s["spec"], view(data, (112, 112))) == THINK_FIRST["striped"]


def test_call_probability_is_exact_and_independent_of_batching():
    """`row_call_probability` on a (random) mini model: batched with left padding it gives what one row at a time
    gives, and for the colour question (one sentence) it is the choice token's share computed by hand."""
    torch = pytest.importorskip("torch")
    from transformers import Qwen2_5_VLForConditionalGeneration
    from vtdata import protocol
    from vttrain.models import build as models
    from vttrain.models.warmstart_data import MINI_TEXT, MINI_VISION, THINK_FIRST, MiniConfig
    from vttrain.models.warmstart import build_tokenizer
    from vttrain.models.warmstart_check import check_rows, row_call_probability
    cfg = MiniConfig(check_size=2)
    proc = models._image_only_processor_class()(models._pil_image_processor(min_pixels=models.MIN_PIXELS,
                                                                          max_pixels=models.MAX_PIXELS),
                                                build_tokenizer(cfg), chat_template=models.CHAT_TEMPLATE)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(models.make_config(MINI_TEXT, MINI_VISION, proc.tokenizer))
    rows = check_rows(cfg, "calls", 2, {"general": "low", "coarse": "low", "fine": "low"})
    batched = row_call_probability(model, proc, rows, batch=48)
    single = row_call_probability(model, proc, rows, batch=1)
    for (a, _, ma, sa), (b, _, mb, sb) in zip(batched, single):
        assert 0.0 <= a <= 1.0 and abs(a - b) < 1e-4 and abs(ma - mb) < 1e-4 * max(1.0, mb)
        assert abs(sum(sa.values()) - 1.0) < 1e-6 and all(abs(sa[t] - sb[t]) < 1e-4 for t in sa)
    r = rows[0]
    text = proc.apply_chat_template(protocol.agent_messages(r["question"], r["image"]), tokenize=False,
                                    add_generation_prompt=True, chat_template=protocol.chat_template()) + THINK_FIRST["general"]
    with torch.no_grad():
        p = torch.softmax(model(**proc(text=[text], images=[[r["image"]]], return_tensors="pt")).logits[0, -1], -1)
    tok = proc.tokenizer
    pc, pa = float(p[tok.convert_tokens_to_ids("<tool_call>")]), float(p[tok.convert_tokens_to_ids("<answer>")])
    assert abs(batched[0][0] - pc / (pc + pa)) < 1e-4


def test_a_warm_start_that_missed_its_checks_says_so(tmp_path):
    """A build that ends (at `steps`) below its held-out checks is kept, but its card says which check it
    missed (a zoom build whose box check stays at chance must not pass for a working one)."""
    from vttrain.models.warmstart_card import write_card
    from vttrain.models.warmstart_check import unpassed
    from vttrain.models.warmstart_data import MiniConfig
    cfg = MiniConfig(tools=("resize", "zoom"))
    calls = {"general": 0.4, "coarse": 0.41, "fine": 0.4, "choice_mass": 0.99, "sentence_mass": 0.95}
    passed = [{"step": 300, "general": 1.0, "coarse": 0.97, "fine": 1.0, "zoom_box": 1.0}]
    missed = passed + [{"step": 1650, "general": 1.0, "coarse": 1.0, "fine": 1.0, "zoom_box": 0.28}]
    assert unpassed(passed, cfg) == {} and unpassed(missed, cfg) == {"zoom_box": 0.28}
    assert "Not passed" not in write_card(tmp_path, cfg, 300, passed, calls).read_text()
    text = write_card(tmp_path, cfg, 1650, missed, calls).read_text()
    assert "**Not passed:**" in text and "zoom_box 0.28" in text
