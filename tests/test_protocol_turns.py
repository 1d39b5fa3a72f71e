"""The two-turn protocol: tool-call validation, per-turn format, messages and the chat template."""
import pytest
from PIL import Image

from vtdata import prompts, protocol
from vtdata.protocol import ToolCall, check_format, check_turn, parse_tool_call

OK = protocol.CALL_EXAMPLE


def test_parse_valid_call_with_and_without_newlines():
    assert parse_tool_call(f"<think>x</think>{OK}") == ToolCall("resize_image", {"action": "resize"})
    spaced = '<tool_call>\n{"name": "resize_image", "arguments": {"action": "resize"}}\n</tool_call>'
    assert parse_tool_call(spaced) == ToolCall("resize_image", {"action": "resize"})
    assert parse_tool_call("<think>x</think><answer>3</answer>") is None


@pytest.mark.parametrize("text,needle", [
    ('<tool_call>{"name": "resize_image", "arguments": {"action": "resize"}</tool_call>', "not valid JSON"),
    ('<tool_call>{"name": "zoom", "arguments": {"action": "resize"}}</tool_call>', "unknown function 'zoom'"),
    ('<tool_call>{"name": "resize_image", "arguments": {"action": "crop"}}</tool_call>', "unknown action 'crop'"),
    ('<tool_call>{"name": "resize_image", "arguments": {"action": "resize", "x": 1}}</tool_call>', "unexpected argument"),
    ('<tool_call>{"name": "resize_image", "arguments": "resize"}</tool_call>', '"arguments"'),
    ('<tool_call>["resize_image"]</tool_call>', "JSON object"),
    ('<tool_call>{"name": "resize_image", "arguments": {"action": "resize"}}', "not closed"),
    (OK + OK, "more than one"),
])
def test_parse_invalid_calls_give_error_text(text, needle):
    err = parse_tool_call(text)
    assert isinstance(err, str) and needle in err


def test_turn_format():
    assert check_turn(f"<think>a</think>\n{OK}", final=False) is None
    assert check_turn("<think>a</think> <answer>4</answer>", final=True) is None
    assert "exactly one <think>" in check_turn("<think>a</think><think>b</think><answer>4</answer>", final=True)
    assert "exactly one <answer>" in check_turn("<think>a</think><answer>4</answer><answer>5</answer>", final=True)
    assert "empty" in check_turn("<think>a</think><answer> </answer>", final=True)
    assert check_turn("<think>a</think>\n" + OK.replace("resize_image", "zoom"), final=False)  # wrong name
    assert check_turn(f"<think>a</think>{OK}", final=True)  # a call left unanswered
    assert check_turn("<answer>4</answer><think>a</think>", final=True)  # order
    assert check_turn(f"<think>a</think><answer>4</answer>{OK}", final=False)  # answers while calling


def test_trajectory_format():
    assert check_format([f"<think>a</think>{OK}", "<think>b</think><answer>4</answer>"]) is None
    assert check_format(["<think>b</think><answer>4</answer>"]) is None
    assert check_format([OK, "<think>b</think><answer>4</answer>"]).startswith("turn 1")
    assert check_format([]) == "no assistant turn"


def test_agent_messages_put_the_image_between_instruction_and_question():
    img = Image.new("RGB", (56, 56))
    sys_msg, user = protocol.agent_messages("How many cats?", img)
    assert sys_msg["content"][0]["text"] == prompts.load("agent_system")
    head, image, question = user["content"]
    assert head["text"].endswith("Here is the image and question:\n") and "\\boxed{}" in head["text"]
    assert image == {"type": "image", "image": img}
    assert question["text"] == "\nHow many cats?"  # the release: "<image>\\n" + question


def test_direct_messages_are_system_then_image_then_question():
    img = Image.new("RGB", (56, 56))
    system = prompts.load("score_system")
    sys_msg, user = protocol.direct_messages(system, "How many cats?", img)
    assert sys_msg == {"role": "system", "content": system}
    assert user == {"role": "user", "content": [{"type": "image", "image": img},
                                                {"type": "text", "text": "How many cats?"}]}
    _, user = protocol.direct_messages(system, "How many cats?", img, newline=True)
    assert user["content"][1]["text"] == "\nHow many cats?"  # the release's "<image>\n" + question


def test_score_judge_and_eval_ask_the_direct_prompt_with_the_release_newline(monkeypatch):
    """Issue 21: score-judge and eval full|low (engine._direct) put the release's newline between image and
    question by default; direct_newline false gives vt's old prompt."""
    import asyncio
    from vttrain.rollout import engine
    from vttrain.eval import EvalConfig
    from vttrain.score import ScoreConfig

    seen = []

    async def turns(policy, conversations, s):
        seen.extend(m for m, _ in conversations)
        return [[engine.Turn("<answer>1</answer>", 1, 1, 0.0, "stop", None)] * len(seeds) for _, seeds in conversations]
    monkeypatch.setattr(engine, "_turns", turns)
    monkeypatch.setattr(engine, "_image", lambda sample, view: "IMG")
    job = engine.Job((1,), {"id": 1, "question": "How many cats?"}, "low")
    for flag in (engine.Settings().direct_newline, False):
        asyncio.run(engine._direct(None, [job], engine.Settings(direct_newline=flag)))
    assert [m[1]["content"][1]["text"] for m in seen] == ["\nHow many cats?", "How many cats?"]
    assert ScoreConfig.direct_newline is True and EvalConfig.direct_newline is True


def test_tool_turns_use_the_shipped_prompts():
    img = Image.new("RGB", (112, 112))
    ok = protocol.tool_turn(image=img)
    assert ok["role"] == "user"
    assert ok["content"][0]["text"] == "<tool_response>\nThe resized image is shown below:\n"
    assert ok["content"][1]["image"] is img
    assert ok["content"][2]["text"] == "\n</tool_response>\n" + prompts.load("tool_ok")
    err = protocol.tool_content(error="bad JSON")
    assert err[0]["text"].startswith("<tool_response>\nERROR occurs during the function tool call. "
                                     "Error Information: bad JSON.\n</tool_response>\n")
    assert err[0]["text"].endswith(prompts.load("tool_error"))
    with pytest.raises(ValueError):
        protocol.tool_content()


def _render(messages, template=protocol.CHAT_TEMPLATE, **kw):
    from jinja2 import Environment
    env = Environment()
    env.filters["tojson"] = __import__("json").dumps
    return env.from_string(template).render(messages=messages, **kw)


def test_chat_template_renders_tool_turn_as_user_turn_and_is_prefix_preserving():
    msgs = protocol.agent_messages("Q?", Image.new("RGB", (8, 8)))
    first = _render(msgs, add_generation_prompt=True)
    assert first.count("<|vision_start|><|image_pad|><|vision_end|>") == 1
    assert first.endswith("<|im_start|>assistant\n")
    turn = f"<think>small</think>{OK}"
    tool = protocol.tool_content(image=Image.new("RGB", (8, 8)))
    as_tool = _render(msgs + [{"role": "assistant", "content": turn}, {"role": "tool", "content": tool}])
    as_user = _render(msgs + [{"role": "assistant", "content": turn}, {"role": "user", "content": tool}])
    assert as_tool == as_user  # train (TRL's tool message) and eval (a user turn) see the same text
    assert as_tool.startswith(first)
    assert "<|im_start|>assistant\n" + turn + "<|im_end|>\n<|im_start|>user\n<tool_response>" in as_tool
    # turn2_bytes: release (the default): the tool turn straight after the model's <|im_end|>, as the release
    release = _render(msgs + [{"role": "assistant", "content": turn}, {"role": "tool", "content": tool}],
                      template=protocol.chat_template("release"), add_generation_prompt=True)
    assert release.startswith(first)
    assert "<|im_start|>assistant\n" + turn + "<|im_end|><|im_start|>user\n<tool_response>" in release
    assert release.endswith("<|im_end|>\n<|im_start|>assistant\n")
    # tool_calls are rendered only when the text does not hold the call already
    with_calls = _render([{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "resize_image", "arguments": {"action": "resize"}}}]}])
    assert '<tool_call>\n{"name": "resize_image", "arguments": {"action": "resize"}}\n</tool_call>' in with_calls


# -- issue 21: tool_call_parse: release ---------------------------------------------------------------------

@pytest.mark.parametrize("text, strict_fires, release_fires", [
    (OK, True, True),
    ('<tool_call>{"name": "zoom", "arguments": {"action": "resize"}}</tool_call>', False, True),        # any name
    ('<tool_call>{"name": "resize_image", "arguments": {"action": "resize", "x": 1}}</tool_call>', False, True),
    ('<tool_call>\n{"name": "resize_image", "arguments": {"action": "crop"}}\n</tool_call>', False, False),
    ('<tool_call>{name: resize_image}</tool_call>', False, False),                                      # no JSON
    (OK + OK, False, False),                                                                          # two calls
])
def test_release_tool_call_acceptance(text, strict_fires, release_fires):
    from vtdata.protocol.tools import parse_call
    for rule, fires in (("strict", strict_fires), ("release", release_fires)):
        call = parse_call(f"<think>x</think>{text}", ("resize",), rule)
        assert isinstance(call, ToolCall) == fires, (rule, call)
        assert fires or isinstance(call, str)  # not fired: the error turn (a string), never silently nothing


def test_release_reads_an_unclosed_call_as_a_direct_answer():
    from vtdata.protocol.tools import parse_call
    text = '<think>x</think><tool_call>{"name": "resize_image", "arguments": {"action": "resize"}}'
    assert isinstance(parse_call(text, ("resize",), "strict"), str)   # vt: the error turn
    assert parse_call(text, ("resize",), "release") is None            # the release: no call, the rollout ends


def test_tool_call_parse_is_a_train_option_and_reaches_the_turn_parser(tmp_path):
    import train_helpers as h
    from vtdata.console import VtError
    from vttrain.models.build import load_processor
    from vttrain.grpo.env import prepare_processor
    from vttrain.grpo.config import parse_config
    model = h.tiny_model(tmp_path)
    proc = load_processor(model)
    extra = '<tool_call>{"name": "resize_image", "arguments": {"action": "resize", "scale": 2}}</tool_call>'
    ids = proc.tokenizer(f"<think>x</think>{extra}<|im_end|>", add_special_tokens=False)["input_ids"]
    for rule, invalid in (("strict", True), ("release", False)):
        prepare_processor(proc, tool_call_parse=rule)
        (call,) = proc.tokenizer.parse_response(ids)["tool_calls"]
        assert str(call["function"]["arguments"]["action"]).startswith("\x00invalid-call") == invalid
    base = ["--model", "m", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "r"), "--use_cpu", "true"]
    assert parse_config(None, base + ["--tool_call_parse", "release"]).tool_call_parse == "release"
    with pytest.raises(VtError, match="resize tool only"):
        parse_config(None, base + ["--tool_call_parse", "release", "--tools", "zoom"])
    with pytest.raises(VtError, match="tool_call_parse must be one of"):
        parse_config(None, base + ["--tool_call_parse", "loose"])
