"""The tiny model and the processor path every stage uses (vttrain.models.build)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from models_helpers import tiny_dir, tiny_model  # noqa: F401  (tiny_dir is a fixture)
from vttrain.models import build as models


def _chat(processor, images, question="What is the number?"):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return processor(text=[text] * len(images), images=images, return_tensors="pt", padding=True)


def test_build_is_deterministic_by_seed(tmp_path, tiny_dir):
    again = models.init_tiny(tmp_path / "again", seed=0)
    other = models.init_tiny(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()
    size = sum(f.stat().st_size for f in tiny_dir.iterdir())
    assert size < 5e6


def test_processor_falls_back_to_image_only_and_keeps_views(tiny_dir):
    proc = models.load_processor(tiny_dir)
    # the stock processor needs a torchvision video processor; the saved config names the stock class
    assert json.loads((tiny_dir / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    assert type(proc).__name__ == "ImageOnlyQwenVLProcessor"
    assert proc.tokenizer.padding_side == "left"
    tok = proc.tokenizer
    for t in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
              "<|video_pad|>", "<|endoftext|>", "<tool_call>", "</tool_call>"):
        ids = tok.encode(t, add_special_tokens=False)
        assert len(ids) == 1, t  # one added token each, as in the real tokenizer
    assert tok.decode(tok.encode("<answer> 12.5 B </answer>", add_special_tokens=False)) == "<answer> 12.5 B </answer>"
    # the largest and smallest views pass unchanged: grid = size / 14
    big = _chat(proc, [Image.new("RGB", (2016, 2072))])
    assert big["image_grid_thw"].tolist() == [[1, 2072 // 14, 2016 // 14]]
    small = _chat(proc, [Image.new("RGB", (28, 28))])
    assert small["image_grid_thw"].tolist() == [[1, 2, 2]]


@pytest.mark.parametrize("high", [(56, 56), (112, 224), (448, 336), (1008, 784), (2016, 2072), (3360, 1232)])
def test_low_view_has_a_quarter_of_the_visual_tokens(high):
    _, proc = tiny_model()
    low = (high[0] // 2, high[1] // 2)
    batch = _chat(proc, [Image.new("RGB", high, (9, 9, 9)), Image.new("RGB", low, (9, 9, 9))])
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_high, n_low = (batch["input_ids"] == pad).sum(dim=1).tolist()
    assert n_high == 4 * n_low
    assert (n_high, n_low) == (models.visual_tokens(proc, high), models.visual_tokens(proc, Image.new("RGB", low)))


def test_generate_and_backward_with_images_on_cpu():
    model, proc = tiny_model()
    batch = _chat(proc, [Image.new("RGB", (112, 56), (200, 0, 0)), Image.new("RGB", (56, 56), (0, 0, 200))])
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=8, do_sample=True, temperature=1.0)
    assert out.shape[0] == 2 and out.shape[1] > batch["input_ids"].shape[1]
    model.train()
    try:
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        vision_grads = [p.grad for n, p in model.named_parameters() if "visual" in n and p.grad is not None]
        assert torch.isfinite(loss) and vision_grads and any(g.abs().sum() > 0 for g in vision_grads)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_random_model_of_real_size(tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText
    out = models.init_random("manifests/models/qwen2.5-vl-3b.yaml", tmp_path / "r3b")
    assert not list(out.glob("*.safetensors"))  # weights are drawn at load time
    cfg = AutoConfig.from_pretrained(out)
    assert cfg.text_config.hidden_size == 2048 and cfg.text_config.num_hidden_layers == 36
    assert cfg.image_token_id == models.load_processor(out).tokenizer.convert_tokens_to_ids("<|image_pad|>")
    with torch.device("meta"):
        n = sum(p.numel() for p in AutoModelForImageTextToText.from_config(cfg).parameters())
    assert 3.6e9 < n < 3.9e9  # Qwen2.5-VL-3B has 3.75B parameters


def test_random_weights_drawn_at_load_are_seeded(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("name: small\ntext_config: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,"
                   " num_attention_heads: 2, num_key_value_heads: 1, rope_parameters: {rope_type: default,"
                   " mrope_section: [2, 3, 3], rope_theta: 10000.0}}\nvision_config: {depth: 1, hidden_size: 16,"
                   " intermediate_size: 32, num_heads: 1, fullatt_block_indexes: [0]}\n")
    a = models.load(models.init_random(cfg, tmp_path / "a", seed=3), device="cpu")[0]
    b = models.load(models.init_random(cfg, tmp_path / "b", seed=3), device="cpu")[0]
    wa, wb = a.get_input_embeddings().weight, b.get_input_embeddings().weight
    assert torch.equal(wa, wb) and wa.abs().sum() > 0


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    for args in (["random", str(tmp_path / "x")], ["huge", str(tmp_path / "x")], ["tiny", str(tmp_path / "a-file")],
                 ["random", "--config", str(tmp_path / "missing.yaml"), str(tmp_path / "x")]):
        r = subprocess.run([sys.executable, "-m", "vt", "init-model", *args], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr


@pytest.mark.parametrize("original", [(640, 480), (4000, 3000), (300, 2000), (100, 100), (2048, 2048), (5000, 700)])
def test_vt_views_reach_the_model_unresized_at_a_quarter(original):
    """vt's own view sizes (default ResolutionPolicy) through the real processor: no resize, low = high / 4."""
    from vtdata.resolution import view_sizes
    _, proc = tiny_model()
    low, high = view_sizes(*original)
    batch = _chat(proc, [Image.new("RGB", high), Image.new("RGB", low)])
    assert batch["image_grid_thw"].tolist() == [[1, high[1] // 14, high[0] // 14], [1, low[1] // 14, low[0] // 14]]
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_high, n_low = (batch["input_ids"] == pad).sum(dim=1).tolist()
    assert n_high == 4 * n_low == 4 * models.visual_tokens(proc, low)


def test_hub_layout_checkpoint_takes_the_same_path(tmp_path, tiny_dir):
    """A checkpoint laid out like the hub's Qwen2.5-VL (legacy preprocessor_config.json with the stock
    pixel bounds, a video processor config): loads through the fallback with vt's pixel bounds."""
    import shutil
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors", "chat_template.jinja"):
        shutil.copy(tiny_dir / name, tmp_path / name)
    common = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "min_pixels": 3136,
              "max_pixels": 448 * 448, "processor_class": "Qwen2_5_VLProcessor"}  # a small stock bound
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**common, "image_processor_type": "Qwen2VLImageProcessor"}))
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({**common, "video_processor_type": "Qwen2VLVideoProcessor"}))
    model, proc = models.load(tmp_path, device="cpu")
    assert type(proc).__name__ == "ImageOnlyQwenVLProcessor" and proc.chat_template
    big = _chat(proc, [Image.new("RGB", (1008, 784))])  # above the checkpoint's own bound: kept as is
    assert big["image_grid_thw"].tolist() == [[1, 784 // 14, 1008 // 14]]
    assert models.visual_tokens(proc, (1008, 784)) == (1008 // 28) * (784 // 28)
    assert model.config.image_token_id == proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_a_missing_or_empty_model_dir_is_a_clear_error(tmp_path):
    from vtdata.console import VtError
    with pytest.raises(VtError, match="no such directory"):
        models.load_processor(tmp_path / "nope")
    with pytest.raises(VtError, match="not a checkpoint directory"):
        models.load(tmp_path)
    assert models.check_source("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"  # hub ids pass
