"""`vt train` end to end on the tiny model (CPU): the tool turn, masks, rewards, metrics, final model.

The random tiny model never writes a valid tool call, so most tests script the sampled text of each
turn (vttrain.grpo.scripted); TRL's tool loop, the environment, the processor, the loss and the optimiser
run for real."""
import json
from pathlib import Path

import pytest
import torch

import train_helpers as h
from vtdata import protocol
from vtdata.console import VtError
from vttrain.grpo import scripted


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return root, h.tiny_model(root), h.write_dataset(root / "data", n=4)


def _capturing(base, script=None):
    class T(base):
        caught = []

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            T.caught.append((inputs, out))
            return out
    if script is not None:
        T.script = staticmethod(script)
    return T


def _jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def test_two_optimiser_steps_with_the_tool_turn(tiny):
    from vttrain.models import build as models
    from vttrain.grpo.env import high_view
    from vttrain.grpo.train import run

    root, model, data = tiny
    cfg = h.config(model, data, root / "run")
    T = _capturing(scripted.ScriptedGRPOTrainer)
    before = {k: v.clone() for k, v in models.load(model, device="cpu")[0].state_dict().items()}
    final = run(cfg, trainer_class=T)

    assert len(T.caught) == 2  # one generation batch per optimiser step
    metrics = [m for m in _jsonl(root / "run" / "metrics.jsonl") if "loss" in m]
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:  # 2 of 4 rollouts resize; r = 0.5 >= theta so both resized ones pay
        assert m["resize_ratio"] == 0.5 and m["penalty_share"] == 0.5 and m["format_pass_rate"] == 1.0
        assert m["accuracy_direct"] == 0.5 and m["accuracy_resized"] == 0.5
        assert m["visual_token_ratio"] == pytest.approx((0.25 * 2 + 1.25 * 2) / 4)  # 4 low, 16 high tokens

    # rewards per rollout: score + 0.5 format - 0.1 penalty on the resized side
    rolls = _jsonl(root / "run" / "rollouts.jsonl")
    for m in metrics:  # resize ratio split by the curated use_tool label (even rows need high-res)
        row = int(next(r["id"] for r in rolls if r["step"] == m["step"])[1:])
        assert (m["resize_ratio_needs_high"], m["resize_ratio_low_ok"]) == ((0.5, None) if row % 2 == 0 else (None, 0.5))
    assert [r["reward"] for r in rolls] == pytest.approx([1.4, 0.4, 1.5, 0.5] * 2)

    proc = models.load_processor(model)
    tok = proc.tokenizer
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    inputs, out = T.caught[0]
    grid = out["image_grid_thw"]
    assert out["num_images"] == [2, 2, 1, 1]
    low_tokens, high_tokens = models.visual_tokens(proc, (56, 56)), models.visual_tokens(proc, (112, 112))
    # the tool turn really delivers the high-res pixels: low + high image tokens in the trajectory ...
    for i in range(4):
        n_prompt = int((out["prompt_ids"][i] == pad).sum())
        n_compl = int((out["completion_ids"][i] == pad).sum())
        assert (n_prompt, n_compl) == ((low_tokens, high_tokens) if i < 2 else (low_tokens, 0))
    # ... and the second image's pixels are the processor's pixels of the row's high view
    high = high_view(inputs[0])
    assert high.size == (112, 112)
    expect = proc.image_processor(images=[high], return_tensors="pt")
    n_low_patches = int(grid[0].prod())
    n_high_patches = int(grid[1].prod())
    assert grid[1].tolist() == expect["image_grid_thw"][0].tolist()
    got = out["pixel_values"][n_low_patches:n_low_patches + n_high_patches]
    assert torch.allclose(got, expect["pixel_values"])

    # masks: the loss covers exactly the model's tokens; the tool turn is masked out
    for i in range(4):
        ids, cm, tm = out["completion_ids"][i], out["completion_mask"][i].bool(), out["tool_mask"][i].bool()
        model_ids = ids[cm & tm].tolist()
        env_ids = ids[cm & ~tm].tolist()
        expected = []
        for text in rolls[i]["turns"]:
            expected += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert model_ids == expected
        if i < 2:
            env_text = tok.decode(env_ids)
            assert env_text.startswith("<|im_start|>user\n<tool_response>\nThe resized image is shown below:")
            assert env_text.endswith(protocol.prompts.load("tool_ok") + "<|im_end|>\n<|im_start|>assistant\n")
            assert env_ids.count(pad) == high_tokens
        else:
            assert env_ids == []
        assert len(rolls[i]["turns"]) == (2 if i < 2 else 1)

    # the final model (with its processor) reloads and has moved
    m2, p2 = models.load(final, device="cpu")
    after = m2.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert p2.chat_template == proc.chat_template  # saved with the model's own template


def test_invalid_call_gets_the_error_turn_and_dynamic_sampling(tiny):
    from vttrain.grpo.train import build_trainer

    bad = '<think>hm</think><tool_call>{"name": "resize_image", "arguments": {"action": "zoom"}}</tool_call>'

    def script(turn, index, prompt):
        return bad if turn == 1 else scripted.answer("wrong")
    root, model, data = tiny
    cfg = h.config(model, data, root / "run_err", max_steps=1, dynamic_sampling=True, penalty_mode="released")
    T = _capturing(scripted.ScriptedGRPOTrainer, script)
    trainer, proc = build_trainer(cfg, T)
    trainer.train()
    inputs, out = T.caught[0]
    tok = proc.tokenizer
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    ids, cm = out["completion_ids"][0], out["completion_mask"][0].bool()
    text = tok.decode(ids[cm])
    assert text.startswith(bad + "<|im_end|><|im_start|>user\n<tool_response>\nERROR occurs during the "
                           "function tool call. Error Information: unknown action 'zoom'")
    assert int((out["completion_ids"] == pad).sum()) == 0  # no image for an invalid call
    rolls = _jsonl(root / "run_err" / "rollouts.jsonl")
    assert all(r["attempted"] and not r["used_high"] and not r["format_ok"] for r in rolls)
    m = [x for x in _jsonl(root / "run_err" / "metrics.jsonl") if "loss" in x][0]
    assert m["resize_ratio"] == 0.0 and m["tool_call_ratio"] == 1.0
    # every rollout scores 0: a zero-variance group, filtered out of the loss
    assert m["zero_variance_share"] == 1.0 and m["filtered_share"] == 1.0
    assert int(out["tool_mask"].sum()) == 0


def test_sampled_rollouts_never_contain_vision_tokens(tiny):
    from vttrain.grpo.env import vision_token_ids
    from vttrain.grpo.train import build_trainer
    from vttrain.grpo.trainer import VtGRPOTrainer

    root, model, data = tiny
    cfg = h.config(model, data, root / "run_sampled", max_steps=1, max_completion_length=200)
    T = _capturing(VtGRPOTrainer)
    trainer, proc = build_trainer(cfg, T)
    assert set(vision_token_ids(proc.tokenizer)) <= set(trainer.generation_config.suppress_tokens)
    trainer.train()
    _, out = T.caught[0]
    model_tokens = out["completion_ids"][(out["completion_mask"] * out["tool_mask"]).bool()]
    assert not torch.isin(model_tokens, torch.tensor(vision_token_ids(proc.tokenizer))).any()


def test_config_errors(tiny, tmp_path):
    from vttrain.grpo.train import run
    from vttrain.grpo.config import parse_config

    root, model, data = tiny
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\nlearning_rat: 1.0\n")
    with pytest.raises(VtError, match="learning_rat"):
        parse_config(bad, [])
    with pytest.raises(VtError, match="unknown train option"):
        parse_config(None, ["--no_such_flag", "1"])
    with pytest.raises(VtError, match="bad train option: argument --learning_rate.*invalid float value: 'abc'"):
        parse_config(None, ["--learning_rate", "abc"])
    with pytest.raises(VtError, match="penalty_mode"):
        run(h.config(model, data, tmp_path / "r1", penalty_mode="paperish"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(VtError, match="output_dir .*a-file: cannot create the directory"):
        run(h.config(model, data, tmp_path / "a-file"))
    with pytest.raises(VtError, match="max_samples must be >= 1"):
        run(h.config(model, data, tmp_path / "r0", max_samples=0))
    # a completion budget that cannot hold the high-res tool turn: every row rejected, with the reason
    with pytest.raises(VtError, match="no row fits: high-res tool turn"):
        run(h.config(model, data, tmp_path / "r2", max_completion_length=64))
    assert len((tmp_path / "r2" / "rejected.jsonl").read_text().splitlines()) == 4
    # flags override the YAML
    good = tmp_path / "good.yaml"
    good.write_text(f"model: {model}\ndata_dir: {data}\nnum_generations: 4\ntheta: 0.3\n")
    cfg = parse_config(good, ["--theta", "0.4", "--output_dir", str(tmp_path / "r3")])
    assert cfg.theta == 0.4 and cfg.num_generations == 4


def test_lora_run_saves_a_merged_model(tiny):
    from vttrain.models import build as models
    from vttrain.grpo.train import run

    root, model, data = tiny
    final = run(h.config(model, data, root / "run_lora", max_steps=1, use_peft=True, lora_r=4,
                         lora_target_modules="q_proj,v_proj"), trainer_class=scripted.ScriptedGRPOTrainer)
    assert not (final / "adapter_config.json").exists()
    merged, _ = models.load(final, device="cpu")
    base, _ = models.load(model, device="cpu")
    m, b = merged.state_dict(), base.state_dict()
    changed = {k for k in b if not torch.equal(m[k], b[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # only the adapted layers moved


def test_shipped_configs_parse(monkeypatch):
    from vttrain.grpo.config import parse_config
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the paper recipe's judge is an LLM: a real run needs a key

    demo = parse_config(h.ROOT / "manifests" / "train-demo.yaml", [])
    assert demo.use_cpu and demo.num_generations == 4 and demo.penalty_mode == "paper"
    paper = parse_config(h.ROOT / "manifests" / "train-visionthink-7b.yaml",
                         ["--bf16", "false", "--use_vllm", "false", "--report_to", "none"])
    assert (paper.learning_rate, paper.num_generations, paper.temperature, paper.beta) == (1e-6, 16, 1.0, 0.001)
    assert (paper.format_weight, paper.penalty, paper.theta, paper.loss_type) == (0.5, 0.1, 0.2, "grpo")
    # batch 512 prompts x G per rollout round; mini-batch 32 prompts = 1 per GPU x 32 GPUs x 16 accumulation
    assert paper.generation_batch_size == 512 * 16
    assert paper.per_device_train_batch_size * paper.gpus * paper.gradient_accumulation_steps == 32 * 16


def test_trl_accepts_vt_template_not_the_stock_one(tiny):
    from trl.chat_template_utils import is_chat_template_prefix_preserving, supports_tool_calling

    from vttrain.models.build import load_processor
    from vttrain.grpo.env import prepare_processor

    proc = load_processor(tiny[1])
    assert not supports_tool_calling(proc)  # the Qwen2.5-VL template drops tool calls: TRL refuses it
    prepare_processor(proc)
    assert supports_tool_calling(proc) and is_chat_template_prefix_preserving(proc)


def test_dropped_tool_image_and_turn_limit(tiny):
    """A turn 1 so long that the high-res turn no longer fits: TRL drops the image, vt notices; and a
    second call is never answered (max_turns = 2)."""
    from vttrain.grpo.train import build_trainer

    long_call = "<think>" + "look " * 120 + "</think>" + protocol.CALL_EXAMPLE

    def script(turn, index, prompt):
        return long_call if index % 4 == 0 else scripted.CALL  # rollouts 1-3 call twice
    root, model, data = tiny
    cfg = h.config(model, data, root / "run_drop", max_steps=1, max_completion_length=320)
    T = _capturing(scripted.ScriptedGRPOTrainer, script)
    trainer, _ = build_trainer(cfg, T)
    trainer.train()
    rolls = _jsonl(root / "run_drop" / "rollouts.jsonl")
    assert rolls[0]["dropped"] and not rolls[0]["used_high"] and len(rolls[0]["turns"]) == 1
    for r in rolls[1:]:  # image delivered, then a second call that gets no answer: format fails, score 0
        assert r["used_high"] and not r["dropped"] and len(r["turns"]) == 2
        assert not r["format_ok"] and r["score"] == 0.0
    m = [x for x in _jsonl(root / "run_drop" / "metrics.jsonl") if "loss" in x][0]
    assert m["tool_dropped_ratio"] == 0.25


def test_overlong_prompts_are_rejected_not_truncated(tiny, tmp_path):
    from vttrain.grpo.train import build_trainer

    root, model, data = tiny
    with pytest.raises(VtError, match="no row fits: prompt has"):
        build_trainer(h.config(model, data, tmp_path / "r", max_prompt_length=100))
    reasons = _jsonl(tmp_path / "r" / "rejected.jsonl")
    assert len(reasons) == 4 and all("max_prompt_length 100" in r["reason"] for r in reasons)


def test_generated_vision_token_stops_the_run(tiny, monkeypatch):
    from trl import GRPOTrainer

    from vttrain.grpo import fastgen
    from vttrain.grpo.train import build_trainer
    from vttrain.grpo.trainer import VtGRPOTrainer

    root, model, data = tiny
    trainer, proc = build_trainer(h.config(model, data, root / "run_guard", max_steps=1))
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    bad = lambda self, ids, *a, **k: ([[pad, proc.tokenizer.eos_token_id] for _ in ids], None)  # noqa: E731
    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", bad)
    monkeypatch.setattr(fastgen, "trainer_turn", bad)  # vt's own sampling (shared prefills) likewise
    assert isinstance(trainer, VtGRPOTrainer)
    with pytest.raises(RuntimeError, match="generated 4 vision token"):
        trainer.train()


def test_each_run_gets_environments_with_its_own_prompts(tmp_path):
    """The run's tool-turn prompts reach its environments through the factory, not a class attribute that
    a second run in the process would overwrite."""
    from vttrain.grpo.env import ResizeEnv, env_factory
    (tmp_path / "ok.txt").write_text("Answer now, from the larger image.")
    mine = env_factory(("resize",), {"ok_prompt": str(tmp_path / "ok.txt"), "error_prompt": "tool_error"})
    other = env_factory(("resize",), {"ok_prompt": "tool_ok", "error_prompt": "tool_error"})
    a, b = mine(), other()
    assert type(a) is type(b) is ResizeEnv and "prompt_names" not in vars(ResizeEnv)
    assert a.prompt_names["ok_prompt"] != b.prompt_names["ok_prompt"]
    row = {"id": "x", "image_bytes": _png(), "low_width": 28, "low_height": 28, "high_width": 56, "high_height": 56}
    a.reset(**row)
    b.reset(**row)
    text = lambda msg: " ".join(p.get("text", "") for p in msg if isinstance(p, dict))  # noqa: E731
    assert "Answer now, from the larger image." in text(a.resize_image("resize"))
    assert "Answer now, from the larger image." not in text(b.resize_image("resize"))


def _png() -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()
