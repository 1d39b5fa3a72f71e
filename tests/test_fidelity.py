"""Paper/release fidelity (issue 9): what a real 7B run does by default matches the VisionThink release.

Release facts (dvlab-research/VisionThink): verl/trainer/constants.py (TOOL_AGENT_SYSTEM_PROMPT, a
non-raw Python string), verl/utils/dataset/multimodal_dataset.py (the tool_agent user template, `problem` =
"<image>\\n" + question), verl/utils/reward_score/general_qa_tool.py (format_reward), the training script
scripts/run_efficient_gpt4o_judge.sh and verl's defaults (AdamW weight decay 0.01,
max_total_response_length 32768, ppo_micro_batch_size_per_gpu 1)."""
import jinja2
import pytest
import torch
import yaml

import train_helpers as h
from vtdata import protocol

RECIPE = h.ROOT / "manifests" / "train-visionthink-7b.yaml"

RELEASE_SYSTEM = (
    "You are a helpful assistant.\n\n# Tools\n\nYou may call the function tool shown below to assist with the user "
    "query.\n\nYou are provided with the function signature within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name_for_human": "resize_image", "name": "resize_image", "description": '
    '"Resize the image resolution.", "parameters": {"properties": {"action": {"description": "The action to '
    "perform. The available actions are:\n* `resize`: Double the resolution of the current image. You should only "
    "use this tool if you are unable to obtain the critical information needed to answer the question from the "
    'current resolution.", "enum": ["resize"], "type": "string"}}, "required": ["action"], "type": "object"}, '
    '"args_format": "Format the arguments as a JSON object."}}\n</tools>\nFor each function call, return a json '
    "object with the function name and the corresponding argument within <tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
RELEASE_USER = (
    "Answer the question based on the image provided. You must conduct reasoning within <think> and </think> first "
    "in each of your reasoning steps. You may call ONE function tool per step to help you better solve the problem. "
    "Place the function tool within <tool_call> and </tool_call> at the end of each step to perform a function "
    "call. You should continue your reasoning process based on the content returned by the function tool. Once you "
    "confirm your final answer, place the final answer inside <answer> and </answer>. For mathematical or "
    "multiple-choice problem, wrap the answer value or choice with \\boxed{{}}. Here is the image and question:\n"
    "{Question}")


def _recipe() -> dict:
    return yaml.safe_load(RECIPE.read_text())


# -- item 8: the agent prompt byte for byte ---------------------------------------------------------------

def test_turn_one_renders_byte_for_byte_as_the_release():
    msgs = protocol.agent_messages("What is the total?", "IMG")
    got, other = (jinja2.Template(protocol.chat_template(t)).render(messages=msgs, add_generation_prompt=True)
                  for t in ("release", "chatml"))
    assert got == other  # turn2_bytes changes turn 2 only
    user = RELEASE_USER.format(Question="<image>\nWhat is the total?")
    want = (f"<|im_start|>system\n{RELEASE_SYSTEM}<|im_end|>\n<|im_start|>user\n"
            + user.replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")
            + "<|im_end|>\n<|im_start|>assistant\n")
    assert got == want


def test_recipe_weight_decay_and_trajectory_cap_are_the_release():
    r = _recipe()
    assert r["weight_decay"] == 0.01
    assert r["max_completion_length"] == 32768
    assert r["vllm_max_model_length"] >= r["max_prompt_length"] + r["max_completion_length"]


# -- item 4: loss averaging -------------------------------------------------------------------------------

def test_recipe_averages_tokens_per_sequence_then_sequences():
    # verl with micro-batch 1: masked token mean of one sequence, then / gradient_accumulation = TRL's `grpo`
    assert _recipe()["loss_type"] == "grpo"
    line = next(x for x in RECIPE.read_text().splitlines() if x.startswith("loss_type:"))
    assert "verl's default" not in line


# -- item 6: the format rule ------------------------------------------------------------------------------

CALL = protocol.CALL_EXAMPLE
BAD_JSON_CALL = "<tool_call>{name: resize_image}</tool_call>"


@pytest.mark.parametrize("turns, strict_ok, release_ok", [
    (["<think>a</think><answer>4</answer>"], True, True),
    (["<think>a</think> so the answer is <answer>4</answer>"], False, True),   # text between the tags
    (["<think>a</think><answer></answer>"], False, True),                        # empty answer
    ([f"<think>a</think>{BAD_JSON_CALL}", "<think>b</think><answer>4</answer>"], False, True),  # tagged, bad JSON
    ([f"<think>a</think>{CALL}", "<think>b</think><answer>4</answer>"], True, True),
    (["<think>a</think><answer>4</answer> trailing"], False, False),
    (["<answer>4</answer>"], False, False),
    ([f"<think>a</think>{CALL}"], False, False),                                 # no answer at the end
    ([f"<think>a</think><answer>1</answer>{CALL}", "<think>b</think><answer>4</answer>"], False, False),
    (["<think>a</think><think>b</think><answer>4</answer>"], False, False),
])
def test_format_rules(turns, strict_ok, release_ok):
    assert (protocol.check_format(turns, "strict") is None) == strict_ok
    assert (protocol.check_format(turns, "release") is None) == release_ok


def test_recipe_uses_the_release_format_rule_and_training_applies_it(tmp_path):
    from vttrain.grpo.trainer import make_reward_funcs
    assert _recipe()["format_rule"] == "release"
    loose = [{"role": "assistant", "content": "<think>a</think> so: <answer>4</answer>"}]
    _, fmt_release, _ = make_reward_funcs(None, "release")
    _, fmt_strict, _ = make_reward_funcs(None, "strict")
    assert fmt_release([loose]) == [1.0] and fmt_strict([loose]) == [0.0]


# -- item 7: precision ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity")
    return root, h.tiny_model(root), h.write_dataset(root / "data", n=4)


def test_one_step_at_lr_1e6_moves_the_weights_under_bf16(tiny):
    """The shipped configs train with bf16: true (accelerate mixed_precision bf16). One optimiser step at the
    paper's lr 1e-6 must change the weights (fp32 master weights), not round away in bf16."""
    from vttrain.grpo import scripted
    from vttrain.grpo.train import build_trainer
    assert _recipe()["bf16"] is True and _recipe()["learning_rate"] == 1e-6
    root, model, data = tiny
    cfg = h.config(model, data, root / "run_bf16", max_steps=1, bf16=True, learning_rate=1e-6)
    trainer, _ = build_trainer(cfg, scripted.ScriptedGRPOTrainer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert all(p.dtype == torch.float32 for p in before.values())
    trainer.train()
    after = dict(trainer.model.named_parameters())
    moved = sum(int((after[n].detach() != p).sum()) for n, p in before.items())
    total = sum(p.numel() for p in before.values())
    assert moved / total > 0.3, f"only {moved} of {total} weights moved"
    trainer.judge.close()


# -- item 3: dynamic sampling with refill -----------------------------------------------------------------

def _only_question_2_is_informative(turn, index, prompt):
    """Question (2)'s group gets mixed rewards; every other group answers right directly (zero variance)."""
    import re
    from vttrain.grpo import scripted
    if re.findall(r"\((\d+)\)", prompt)[-1] == "2":
        return scripted.mixed_script(turn, index, prompt)
    return scripted.answer(scripted.expected_answer(prompt))


def _recording_trainer(script):
    """A scripted trainer class that keeps every batch it trains on (`T.trained`)."""
    from vttrain.grpo import scripted

    class T(scripted.ScriptedGRPOTrainer):
        trained = []

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            T.trained.append(out)
            return out
    T.script = staticmethod(script)
    return T


def test_dynamic_sampling_refills_the_batch_with_informative_groups(tiny):
    import json
    from vttrain.grpo.train import build_trainer
    T = _recording_trainer(_only_question_2_is_informative)
    root, model, data = tiny
    cfg = h.config(model, data, root / "run_refill", max_steps=2, dynamic_sampling=True, max_refill_rounds=30)
    trainer, proc = build_trainer(cfg, T)
    trainer.train()
    trainer.judge.close()
    tok = proc.tokenizer
    for out in T.trained:  # every trained group is question (2)'s, whatever the sampler drew first
        assert out["prompt_ids"].shape[0] == 4 and int(out["tool_mask"].sum(dim=1).min()) > 0
        for ids, m in zip(out["prompt_ids"], out["prompt_mask"]):
            assert "(2)" in tok.decode(ids[m.bool()])
    logs = [json.loads(x) for x in (root / "run_refill" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in logs if "loss" in x]
    assert len(steps) == 2 and all(x["informative_share"] == 1.0 for x in steps)
    assert sum(x["refill_rounds"] for x in steps) >= 1    # seed 0: the sampler draws another question first


def test_refill_cap_keeps_the_batch_size_and_masks_what_is_missing(tiny):
    from vttrain.grpo import scripted
    from vttrain.grpo.train import build_trainer
    T = _recording_trainer(lambda turn, index, prompt: scripted.answer("wrong"))  # never informative
    root, model, data = tiny
    cfg = h.config(model, data, root / "run_cap", max_steps=1, dynamic_sampling=True, max_refill_rounds=2)
    trainer, _ = build_trainer(cfg, T)
    trainer.train()
    trainer.judge.close()
    (out,) = T.trained
    assert out["prompt_ids"].shape[0] == 4 and int(out["tool_mask"].sum()) == 0
    m = trainer.state.log_history[0]
    assert m["refill_rounds"] == 2 and m["informative_share"] == 0.0 and m["filtered_share"] == 1.0


# -- item 1: judge routing and one judge grammar ----------------------------------------------------------

NUMBER_ITEM = {"id": 1, "question": "Value of the 2019 bar?", "answer": "47", "prediction": "<answer>48</answer>",
               "answer_type": "number"}   # the 5 % relaxed rule says right; the (fake) LLM judge says wrong


def test_judge_scope_all_sends_every_item_to_the_llm():
    from fake_openai import FakeOpenAI
    from vtdata.judge import JudgeItem, judge_options, make_judge
    item = JudgeItem(NUMBER_ITEM["question"], ["47"], NUMBER_ITEM["prediction"], "number")
    with FakeOpenAI() as srv:
        for scope, score, requests in (("open", 1.0, 0), ("all", 0.0, 1)):
            srv.reset()
            judge = make_judge("openai:fake", **judge_options("openai:fake", srv.url, None, scope))
            (v,) = judge.judge([item])
            judge.close()
            assert (v.score, srv.requests) == (score, requests), scope
            assert judge.identity.endswith("|scope=all") == (scope == "all")  # stored verdicts re-judged


def test_one_judge_grammar_in_every_command(tmp_path):
    import json
    from typer.testing import CliRunner
    from vt.cli import app
    from fake_openai import FakeOpenAI
    from vttrain.grpo.config import parse_config
    from vtdata.console import VtError

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps(NUMBER_ITEM) + "\n")
    with FakeOpenAI() as srv:
        res = CliRunner().invoke(app, ["judge", str(src), "--out", str(out), "--judge", "openai:fake",
                                       "--judge-base-url", srv.url, "--judge-scope", "all", "--no-cache"])
        assert res.exit_code == 0, res.output
        assert json.loads(out.read_text())["score"] == 0.0 and srv.requests == 1
    res = CliRunner().invoke(app, ["judge", str(src), "--out", str(out), "--judge", "openai", "--model", "fake"])
    assert res.exit_code == 2   # the old two-flag grammar is gone
    data = h.write_dataset(tmp_path / "data", n=2)
    for argv in (["score-judge", "--data", str(data), "--policy", "local:x"],
                 ["eval", "--data", str(data), "--model", "x"]):
        res = CliRunner().invoke(app, argv + ["--judge", "auto", "--judge-scope", "all"])
        assert isinstance(res.exception, VtError) and "--judge-scope all needs an LLM judge" in str(res.exception)
    with pytest.raises(VtError, match="judge-scope all needs an LLM judge"):  # VtTrainConfig.__post_init__
        parse_config(None, ["--model", "m", "--data_dir", str(data), "--output_dir", str(tmp_path / "r"),
                            "--judge", "rule:relaxed", "--judge_scope", "all", "--use_cpu", "true"])
    assert _recipe()["judge_scope"] == "all" and _recipe()["judge"].startswith("openai:")


# -- item 2: the release's views --------------------------------------------------------------------------

def test_visionthink_rows_use_the_release_tgt_views_with_a_quarter_of_the_tokens(tmp_path):
    import io
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    from build_helpers import build, write_manifest
    from vtdata.dataset import iter_samples
    from vtdata.resolution import visual_tokens

    buf = io.BytesIO()
    Image.new("RGB", (1400, 1000), (200, 30, 30)).save(buf, format="PNG")
    img = {"bytes": buf.getvalue(), "path": None}
    (tmp_path / "vt").mkdir()
    pq.write_table(pa.table({
        "images": [[img], [img], [img]], "problem": ["<image>\nQ1?", "<image>\nQ2?", "<image>\nQ3?"],
        "original_answer": ["a", "b", "c"], "data_source": ["open_source_require_high"] * 3,
        "info": [{"tgt_width": 300, "tgt_height": 200, "use_tool": True},     # not multiples of 28
                 {"tgt_width": 336, "tgt_height": 224, "use_tool": False},
                 {"tgt_width": 0, "tgt_height": 200, "use_tool": False}]}),   # unusable: the policy
        tmp_path / "vt" / "train-0.parquet")
    sizes = {}
    for views in ("release", "policy"):
        m = write_manifest(tmp_path, [{"name": "s", "kind": "visionthink", "task": "ocr", "path": "vt",
                                       **({} if views == "release" else {"views": views})}], val_fraction=0)
        build(m, tmp_path / views)
        sizes[views] = {r["question"]: ((r["low_width"], r["low_height"]), (r["high_width"], r["high_height"]))
                        for r in iter_samples(str(tmp_path / views), "train")}
    policy = sizes["policy"]["Q1?"]
    assert sizes["release"] == {"Q1?": ((308, 196), (616, 392)), "Q2?": ((336, 224), (672, 448)), "Q3?": policy}
    assert policy != sizes["release"]["Q1?"]
    for (lw, lh), (hw, hh) in sizes["release"].values():
        assert 4 * visual_tokens(lw, lh) == visual_tokens(hw, hh)


# -- item 5: eval defaults --------------------------------------------------------------------------------

def test_eval_uses_the_release_budget_and_can_evaluate_at_native_resolution(tmp_path):
    import base64
    import io
    from PIL import Image
    from eval_helpers import _images, answer, eval_data, val_rows
    from fake_openai import FakeOpenAI
    from vttrain.eval import EvalConfig, run as run_eval

    data = eval_data()
    rows = val_rows(data)[:2]
    seen, budgets = [], []

    def responder(request):
        for url in _images(request):
            seen.append(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size)
        budgets.append(request.get("max_tokens") or request.get("max_completion_tokens"))
        return answer("1")
    with FakeOpenAI(responder=responder) as srv:
        for mode in ("full", "think"):
            run_eval(EvalConfig(data=str(data), policy="openai:m", policy_base_url=srv.url, mode=mode, limit=2,
                                views="native", db=str(tmp_path / "e.duckdb"), out=str(tmp_path), name=mode))
    full = {(r["width"], r["height"]) for r in rows}
    low = {(r["width"] // 2, r["height"] // 2) for r in rows}
    assert set(seen[:2]) == full and set(seen[2:]) == low and full != {(r["high_width"], r["high_height"]) for r in rows}
    assert budgets == [8192] * 4


# -- issue 21: turn 2 byte for byte -----------------------------------------------------------------------

RELEASE_TOOL_OK = ("Please carefully analyze the content returned from the image resize tool in combination with the "
                   "original question and image from the user, continue your reasoning process inside <think> and "
                   "</think> and then write your final answer inside <answer> and </answer>.")
# the release writes "Countinue"; vt's tool_error prompt spells it right (a documented difference: the mini
# warm start's cache key hashes the prompts)
RELEASE_TOOL_ERROR = ("Please analyze the error information obtained from the function tool and adjust your response. "
                      "Countinue your reasoning process inside <think> and </think>.").replace("Countinue", "Continue")
IMG = "<|vision_start|><|image_pad|><|vision_end|>"


def _release_trajectory(question, turn1, turn2, tool_text):
    """The release's rollout bytes: its prompt, the model's turn 1 (ending <|im_end|>), then its tool turn
    `<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n` appended straight after, then turn 2."""
    user = RELEASE_USER.format(Question="<image>\n" + question).replace("<image>", IMG)
    prompt = f"<|im_start|>system\n{RELEASE_SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    return (prompt + turn1 + "<|im_end|>" + "<|im_start|>user\n" + tool_text
            + "<|im_end|>\n<|im_start|>assistant\n" + turn2 + "<|im_end|>")


@pytest.mark.parametrize("call, tool_text", [
    (protocol.CALL_EXAMPLE,
     f"<tool_response>\nThe resized image is shown below:\n{IMG}\n</tool_response>\n" + RELEASE_TOOL_OK),
    ('<tool_call>{"name": "resize_image", "arguments": {"action": "crop"}}</tool_call>',
     "<tool_response>\nERROR occurs during the function tool call. Error Information: {err}.\n</tool_response>\n"
     + RELEASE_TOOL_ERROR),
])
@pytest.mark.parametrize("turn2", ["release", "chatml"])
def test_a_two_turn_trajectory_renders_byte_for_byte_as_the_release(tiny, call, tool_text, turn2):
    """TRL's own concatenation (prompt ids + completion ids + `_get_tool_suffix_ids`) with vt's template and
    processor, decoded: the release's bytes, the tool turn straight after the model's <|im_end|>."""
    import re
    from types import SimpleNamespace
    from PIL import Image
    from trl import GRPOTrainer
    from vttrain.models.build import load_processor
    from vttrain.grpo.env import ResizeEnv, prepare_processor
    _, model, _ = tiny
    proc = load_processor(model)
    prepare_processor(proc, turn2_bytes=turn2)
    tok = proc.tokenizer
    low, q = Image.new("RGB", (56, 56)), "What is the total?"
    turn1, answer_text = f"<think>too small</think>{call}", "<think>now</think><answer>4</answer>"
    prompt = proc.apply_chat_template([protocol.agent_messages(q, low)], add_generation_prompt=True,
                                      tokenize=True, return_dict=False)[0]
    completion = tok(turn1 + "<|im_end|>", add_special_tokens=False)["input_ids"]
    env = ResizeEnv()
    env.reset(id=1, image_bytes={"bytes": _png(112), "path": None}, low_width=56, low_height=56,
              high_width=112, high_height=112)
    message = tok.parse_response(completion)
    (fn,) = [c["function"] for c in message["tool_calls"]]
    content = env.resize_image(**fn["arguments"])
    trainer = SimpleNamespace(processing_class=proc, _is_vlm=True, chat_template=None, chat_template_kwargs={},
                              _tokenizer=tok)
    suffix = GRPOTrainer._get_tool_suffix_ids(trainer, [{"role": "tool", "name": fn["name"], "content": content}])
    answer = tok(answer_text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    got = re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", tok.decode(prompt + completion + suffix + answer))
    want = _release_trajectory(q, turn1, answer_text, tool_text.format(err=env.errors[0] if env.errors else ""))
    if turn2 == "chatml":  # vt before issue 21: one newline token between the model's <|im_end|> and the tool turn
        want = want.replace("<|im_end|><|im_start|>user", "<|im_end|>\n<|im_start|>user")
    assert got == want


def _png(side):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (9, 9, 9)).save(buf, format="PNG")
    return buf.getvalue()


# -- issue 21: judge_input release|vt, global judge concurrency ---------------------------------------------

def _judge_cfg(tmp_path, *flags):
    from vttrain.grpo.config import parse_config
    return parse_config(None, ["--model", "m", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "r"),
                               "--use_cpu", "true", "--judge", "openai:fake", "--judge_scope", "all", *flags])


def test_judge_input_release_sends_what_the_release_sent(tmp_path, monkeypatch):
    """All turns joined, what follows the last <answer> (no \\boxed unwrap; the whole text without a tag), the
    whole user turn as the question, the judge prompt without vt's note, always a call, max_tokens 16384."""
    import re
    from fake_openai import FakeOpenAI
    from vtdata.judge.llm import PREDICTION_NOTE
    from vttrain.grpo.train import run_judge
    from vttrain.grpo.trainer import make_reward_funcs

    requests = []

    def responder(request):  # answers in the format the system prompt asks: vt's tagged verdict, or the release's
        requests.append(request)
        tag = re.search(r"Verdict ([0-9a-f]{8}):", request["messages"][0]["content"])
        return "The prediction matches.\n" + (f"Verdict {tag.group(1)}: 1" if tag else "Score: 1")
    turns = [[{"role": "assistant", "content": f"<think>a</think>{protocol.CALL_EXAMPLE}"},
              {"role": "assistant", "content": "<think>b</think><answer>\\boxed{4.0}</answer>"}],
             [{"role": "assistant", "content": "<think>b</think> it is 4"}],                 # no tag
             [{"role": "assistant", "content": "<think>b</think><answer>4</answer>"}]]        # an exact match
    kw = dict(question=["What is the total?"] * 3, answers=[["4"]] * 3)
    got = {}
    with FakeOpenAI(responder=responder) as srv:
        for mode in ("vt", "release"):
            requests.clear()
            cfg = _judge_cfg(tmp_path, "--judge_base_url", srv.url, "--judge_input", mode)
            judge = run_judge(cfg)
            accuracy = make_reward_funcs(judge, "release", ("resize",), cfg.judge_input, cfg.user_prompt)[0]
            scores = accuracy([None] * 3, turns, **kw)
            judge.close()
            got[mode] = (scores, list(requests))
    (scores, reqs) = got["vt"]
    assert scores == [1.0, 0.0, 1.0] and len(reqs) == 1       # no tag: 0 without a call; exact match: no call
    tag = re.search(r"Verdict ([0-9a-f]{8}):", reqs[0]["messages"][0]["content"]).group(1)
    assert reqs[0]["messages"][0]["content"].endswith(PREDICTION_NOTE.replace("{tag}", tag))
    assert reqs[0]["max_tokens"] == 512
    assert "<prediction>\n4.0\n</prediction>" in reqs[0]["messages"][1]["content"]    # \boxed unwrapped, quoted
    assert "**Question Related to the Image**: What is the total?\n" in reqs[0]["messages"][1]["content"]
    (scores, reqs) = got["release"]
    assert scores == [1.0, 1.0, 1.0] and len(reqs) == 3       # every item is sent
    user = RELEASE_USER.format(Question="<image>\nWhat is the total?")
    for r in reqs:
        assert PREDICTION_NOTE not in r["messages"][0]["content"] and r["max_tokens"] == 16384
        assert f"**Question Related to the Image**: {user}\n" in r["messages"][1]["content"]
    sent = sorted(re.search(r"\*\*Model Predicted Answer\*\*: (.*?)\n\n", r["messages"][1]["content"], re.S).group(1)
                  for r in reqs)
    assert sent == sorted(["\\boxed{4.0}", "<think>b</think> it is 4", "4"])


def test_judge_input_release_needs_an_llm_on_every_item(tmp_path):
    from vtdata.console import VtError
    from vttrain.grpo.config import parse_config
    with pytest.raises(VtError, match="judge_input: release needs an LLM judge"):
        parse_config(None, ["--model", "m", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "r"),
                            "--use_cpu", "true", "--judge_input", "release"])


@pytest.mark.parametrize("world, share", [("1", 100), ("8", 13), ("32", 4)])
def test_judge_concurrency_is_for_the_whole_run(tmp_path, monkeypatch, world, share):
    """The release's 100 judge threads served every GPU: 32 processes x 100 would be 3,200 in flight."""
    from vttrain.grpo.train import run_judge
    cfg = _judge_cfg(tmp_path, "--judge_base_url", "http://127.0.0.1:9", "--judge_concurrency", "100")
    monkeypatch.setenv("WORLD_SIZE", world)  # as accelerate sets it in each process
    judge = run_judge(cfg)
    assert judge.llm.concurrency == share
    judge.close()


def test_recipes_ask_the_judge_the_release_way():
    for name in ("train-visionthink-7b.yaml", "train-visionthink-3b.yaml"):
        r = yaml.safe_load((h.ROOT / "manifests" / name).read_text())
        assert (r["judge"], r["judge_input"], r["judge_scope"]) == ("openai:gpt-4o-2024-11-20", "release", "all")


def _order_recording_trainer():
    """A scripted trainer whose groups are never informative; `T.seen` lists the question numbers of every
    generation round in order: the main loop's batch, then each refill round's."""
    import re
    from vttrain.grpo import scripted

    def number(row):
        return int(re.findall(r"\((\d+)\)", row["question"])[-1])

    class T(scripted.ScriptedGRPOTrainer):
        seen = []

        def _generate_and_score_completions(self, inputs):
            T.seen.append([number(x) for x in inputs[::self.num_generations]])
            return super()._generate_and_score_completions(inputs)

        def _refill_inputs(self, n, round_no):
            rows = super()._refill_inputs(n, round_no)
            T.seen.append([number(x) for x in rows[::self.num_generations]])
            return rows
    T.script = staticmethod(lambda turn, index, prompt: scripted.answer("wrong"))
    return T


def test_refill_reads_the_epochs_next_prompts_and_the_loader_skips_them(tmp_path):
    """The release keeps reading its data loader: refill prompts are the epoch's next ones (TRL's shuffled
    order), and the main loop does not hand them out again."""
    import torch
    from vttrain.grpo.train import build_trainer
    model, data = h.tiny_model(tmp_path), h.write_dataset(tmp_path / "data", n=8)
    T = _order_recording_trainer()
    cfg = h.config(model, data, tmp_path / "run", max_steps=2, dynamic_sampling=True, max_refill_rounds=2)
    trainer, _ = build_trainer(cfg, T)
    trainer.train()
    trainer.judge.close()
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0)).tolist()  # RepeatSampler, seed 0
    # the loader fetches one batch ahead (accelerate), so a refill takes the prompts after that one:
    # step 1 trains order[0] and refills order[2], order[3]; step 2 trains order[1] (fetched ahead), refills
    # order[5], order[6] (order[4] is fetched ahead for step 3). None twice, none out of the epoch's order.
    seen = [q for round_ in T.seen for q in round_]
    assert seen == [order[i] for i in (0, 2, 3, 1, 5, 6)] and len(set(seen)) == 6


@pytest.mark.slow  # three short runs of the tiny model
def test_a_resumed_run_refills_from_where_the_checkpoint_left_the_epoch(tmp_path):
    from vttrain.grpo.train import build_trainer
    model, data = h.tiny_model(tmp_path), h.write_dataset(tmp_path / "data", n=8)
    runs = {}
    for name, resume in (("whole", None), ("first", None), ("resumed", "first/checkpoint-1")):
        T = _order_recording_trainer()
        steps = 1 if name == "first" else 2
        out = tmp_path / ("first" if name == "resumed" else name)
        cfg = h.config(model, data, out, max_steps=2, dynamic_sampling=True, max_refill_rounds=2,
                       save_strategy="steps", save_steps=1)
        trainer, _ = build_trainer(cfg, T)
        if steps == 1:
            trainer.args.max_steps = 1
        trainer.train(resume_from_checkpoint=str(tmp_path / resume) if resume else None)
        trainer.judge.close()
        runs[name] = T.seen
    assert runs["first"] == runs["whole"][:3]
    assert runs["resumed"] == runs["whole"][3:]  # step 2 after the resume: the same prompts, none twice
