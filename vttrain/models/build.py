"""Load Qwen2.5-VL / Qwen2-VL checkpoints with their processor, and build offline stand-ins.

Every torch-side stage (score-judge, train, eval) loads models through `load()`, so a hub id, a local
checkpoint and the tiny model built here take the same path:

- `load_processor(path)`: the stock `AutoProcessor` first; when it cannot be built (the stock
  Qwen2.5-VL processor wants a torchvision video processor) or comes back without an image processor,
  the image-only `ImageOnlyQwenVLProcessor` (Qwen2.5-VL processor without videos, PIL image backend).
  Its min/max pixels are widened so vt's views (28..2048 px per side, multiples of 28) reach the
  vision tower unchanged: the low view then costs exactly 1/4 of the high view's visual tokens.
- `init_tiny(out)`: a ~1 MB random Qwen2.5-VL (2 layers, hidden 64) with a BPE tokenizer trained
  here on generated text plus the Qwen chat/vision special tokens and the Qwen2.5-VL chat template.
  It runs `generate()` and forward/backward with images on CPU in well under a second.
- `init_random(config_yaml, out)`: a real architecture size (manifests/models/*.yaml) with random
  weights, for GPU throughput tests without downloading weights. Weights are drawn at load time
  (seeded) unless `save_weights=True`.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from vtdata import resolution
from vtdata.console import VtError
from vtdata.outdir import make_out_dir

# vt's views: at most 2048x2048-ish area (ResolutionPolicy.max_pixels, rounded to multiples of 56),
# at least 28x28. The processor must never resize them again, so its bounds sit outside that range.
MIN_PIXELS = 28 * 28
MAX_PIXELS = 4096 * 4096

# Special tokens in the order (and with the flags) of the Qwen2.5-VL tokenizer; ids differ in the tiny
# model, which is why configs take their token ids from the tokenizer.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                  "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
                  "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                      "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]

# The Qwen2.5-VL chat format (system default, <|vision_start|><|image_pad|><|vision_end|> per image).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=8192, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6})
TINY_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1],
                   window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
TINY_VOCAB = 1024
INIT_FILE = "vt_init.json"  # provenance of a model vt built (kind, seed, config)


def _image_only_processor_class():
    from transformers import Qwen2_5_VLProcessor

    class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL processor without the video processor (which needs torchvision).

        Sub-processors are taken from the `__init__` signature, so dropping `video_processor` here
        makes save/load handle only the tokenizer and the image processor."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageOnlyQwenVLProcessor


def _pil_image_processor(**kwargs):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    return Qwen2VLImageProcessorPil(**kwargs)


def _widen_pixels(processor) -> Any:
    from transformers.image_utils import SizeDict
    ip = processor.image_processor
    ip.size = SizeDict(shortest_edge=MIN_PIXELS, longest_edge=MAX_PIXELS)
    for name, value in (("min_pixels", MIN_PIXELS), ("max_pixels", MAX_PIXELS)):
        if hasattr(ip, name):
            setattr(ip, name, value)
    return processor


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # vt draws its own bars; keep stderr to one line per step


def check_source(path_or_id: str | os.PathLike) -> str:
    """A VtError for a local path that is no checkpoint dir (a hub id passes through unchecked)."""
    src = str(path_or_id)
    local = Path(src).expanduser()
    if local.exists() or src.startswith(("/", ".", "~")):
        if not local.is_dir():
            raise VtError(f"model {src!r}: no such directory (a local checkpoint, e.g. from "
                          f"`vt init-model tiny OUT`, or a hub id like Qwen/Qwen2.5-VL-7B-Instruct)")
        if not (local / "config.json").is_file():
            raise VtError(f"model {src!r} is not a checkpoint directory (no config.json)")
    return src


def load_processor(path_or_id: str | os.PathLike):
    """The processor of a checkpoint: stock AutoProcessor, else the image-only one; views never resized."""
    from transformers import AutoProcessor
    src = check_source(path_or_id)
    _quiet_transformers()
    proc = None
    try:
        proc = AutoProcessor.from_pretrained(src)
    except Exception:  # noqa: BLE001 -- typically: the video processor needs torchvision; else tried again below
        proc = None
    if proc is None or getattr(proc, "image_processor", None) is None or getattr(proc, "tokenizer", None) is None:
        cls = _image_only_processor_class()
        try:
            proc = cls.from_pretrained(src)
        except Exception as err:  # noqa: BLE001 -- a garbage tokenizer.json raises the tokenizers library's bare Exception
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise VtError(f"cannot load a processor from {src!r}: {first}") from None
    proc.tokenizer.padding_side = "left"  # batched generation
    return _widen_pixels(proc)


def visual_tokens(processor, image) -> int:
    """Visual tokens the model spends on `image` (a PIL image or a (width, height) pair): the count of
    vtdata.resolution with this processor's patch, merge and pixel bounds."""
    w, h = image if isinstance(image, (tuple, list)) else image.size
    ip = processor.image_processor
    return resolution.visual_tokens(w, h, ip.patch_size, ip.merge_size, ip.size["shortest_edge"], ip.size["longest_edge"])


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or (path / "model.safetensors.index.json").exists()


def load(path_or_id: str | os.PathLike, device: str | None = None, dtype: Any = None):
    """(model, processor) for a local checkpoint dir or hub id; model in eval mode on `device`.

    device defaults to cuda when available; dtype to bfloat16 on cuda, float32 on cpu. A directory made
    by `init_random` without weights gets its seeded random weights here, directly on the device."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    src = str(path_or_id)
    local = Path(src)
    processor = load_processor(src)
    try:
        if local.is_dir() and (local / INIT_FILE).exists() and not _has_weights(local):
            meta = json.loads((local / INIT_FILE).read_text())
            config = AutoConfig.from_pretrained(src)
            torch.manual_seed(int(meta.get("seed", 0)))
            with torch.device(device):
                model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        else:
            model = AutoModelForImageTextToText.from_pretrained(src, dtype=dtype).to(device)
    except (OSError, ValueError) as err:
        raise VtError(f"cannot load model {src!r}: {str(err).splitlines()[0]}") from None
    model.eval()
    return model, processor


# ---------------------------------------------------------------------------------------- building


def _corpus(seed: int, n: int = 3000) -> list[str]:
    """Text the tiny tokenizer is trained on: vt's prompts, tags, digits, letters, common answers."""
    from vtdata import prompts
    rng = random.Random(seed)
    words = ("the a an is are what which how many color of in on image picture chart table text number "
             "answer question yes no left right top bottom red green blue black white cat dog car sign "
             "year total value percent title label figure shows read resize tool call think").split()
    out = [prompts.load(name) for name in prompts.NAMES]
    for _ in range(n):
        k = rng.randint(3, 12)
        sent = " ".join(rng.choice(words) for _ in range(k))
        num = rng.choice([str(rng.randint(0, 9999)), f"{rng.uniform(0, 100):.1f}", rng.choice("ABCD")])
        out.append(f"<think> {sent} </think> <answer> {num} </answer> {sent.capitalize()}? "
                   f"\\boxed{{{num}}} {''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(5))}")
    out.append("".join(chr(c) for c in range(32, 127)))
    return out


def build_tokenizer(seed: int = 0, vocab_size: int = TINY_VOCAB):
    """A byte-level BPE trained here, with the Qwen2.5-VL added tokens, as a transformers tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(seed), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PLAIN_ADDED_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left", model_max_length=32768)


def build_processor(seed: int = 0):
    cls = _image_only_processor_class()
    ip = _pil_image_processor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    return cls(ip, build_tokenizer(seed), chat_template=CHAT_TEMPLATE)


def _token_ids(tokenizer) -> dict:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>",
                                                            "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                bos=ids["<|endoftext|>"], eos=ids["<|im_end|>"], pad=ids["<|endoftext|>"])


def make_config(text: dict, vision: dict, tokenizer, vocab_size: int | None = None, **extra):
    """A Qwen2_5_VLConfig whose special token ids are the tokenizer's."""
    from transformers import Qwen2_5_VLConfig
    ids = _token_ids(tokenizer)
    text = dict(text, vocab_size=vocab_size or len(tokenizer), bos_token_id=ids.pop("bos"),
                eos_token_id=ids.pop("eos"), pad_token_id=ids.pop("pad"))
    vision = dict(vision, out_hidden_size=text["hidden_size"])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids, **extra)


def _save_processor(processor, out: Path) -> None:
    processor.save_pretrained(out)
    name_stock_processor(out)


VIDEO_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std", "do_convert_rgb",
              "do_normalize", "do_rescale", "rescale_factor", "resample")
"""The image processor's settings a Qwen2.5-VL video processor shares (its frame size bounds stay its own)."""


def name_stock_processor(out: Path) -> None:
    """Make a saved processor load with stock transformers: name the stock class, so AutoProcessor builds
    Qwen2_5_VLProcessor (as for a real checkpoint), and write the video processor entry that class needs
    (`video_processor` in processor_config.json, from the image processor's settings): vt's image-only
    processor saves none, and without it AutoProcessor and pipeline("image-text-to-text") fail with "Can't
    load video processor". Stock loading needs torchvision; without it vt's `load_processor` falls back to
    the image-only processor, which ignores the entry."""
    for name in ("processor_config.json", "tokenizer_config.json"):
        p = out / name
        if p.exists():
            cfg = json.loads(p.read_text())
            cfg["processor_class"] = "Qwen2_5_VLProcessor"
            image = cfg.get("image_processor")
            if name == "processor_config.json" and isinstance(image, dict) and "video_processor" not in cfg:
                cfg["video_processor"] = {"video_processor_type": "Qwen2VLVideoProcessor",
                                          **{k: image[k] for k in VIDEO_KEYS if k in image}}
            p.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _save_generation_config(config, out: Path) -> None:
    from transformers import GenerationConfig
    tc = config.text_config
    GenerationConfig(bos_token_id=tc.bos_token_id, eos_token_id=[tc.eos_token_id, tc.bos_token_id],
                     pad_token_id=tc.pad_token_id).save_pretrained(out)


def init_tiny(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build the tiny random Qwen2.5-VL checkpoint in `out_dir` (deterministic by seed); returns the dir."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    _quiet_transformers()
    out = make_out_dir(out_dir, "OUT")
    processor = build_processor(seed)
    config = make_config(TINY_TEXT, TINY_VISION, processor.tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(out)
    _save_generation_config(config, out)
    _save_processor(processor, out)
    (out / INIT_FILE).write_text(json.dumps({"kind": "tiny", "seed": seed}, indent=2) + "\n")
    return out


def read_model_yaml(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        from vtdata.shipped import shipped
        if str(p) == p.name and shipped("models", f"{p.name}.yaml").is_file():  # a shipped config by name
            p = shipped("models", f"{p.name}.yaml")
        else:
            names = sorted(x.stem for x in shipped("models").glob("*.yaml"))
            raise VtError(f"model config {p} not found (shipped, usable by name: {', '.join(names) or 'none'})")
    from vtdata.safeload import load_yaml
    spec = load_yaml(p, "model config")
    if not isinstance(spec, dict) or not isinstance(spec.get("text_config"), dict) \
            or not isinstance(spec.get("vision_config"), dict):
        raise VtError(f"model config {p} needs `text_config:` and `vision_config:` mappings")
    return spec


def init_random(config_file: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0,
                save_weights: bool = False) -> Path:
    """A random-weight model of a real architecture size (from a manifests/models YAML).

    The tiny tokenizer stands in for the real one (its ids fit inside the real vocab size). Without
    `save_weights` only config + processor are written and `load()` draws the weights on the device."""
    _quiet_transformers()
    spec = read_model_yaml(config_file)
    out = make_out_dir(out_dir, "OUT")
    processor = build_processor(seed)
    extra = {k: v for k, v in spec.items() if k not in ("text_config", "vision_config", "name", "source")}
    try:
        config = make_config(spec["text_config"], spec["vision_config"], processor.tokenizer,
                             vocab_size=spec["text_config"].get("vocab_size"), **extra)
    except (TypeError, ValueError) as err:
        raise VtError(f"model config {config_file}: {str(err).splitlines()[0]}") from None
    if save_weights:
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
        model.save_pretrained(out)
    else:
        config.save_pretrained(out)
    _save_generation_config(config, out)
    _save_processor(processor, out)
    (out / INIT_FILE).write_text(json.dumps({"kind": "random", "seed": seed, "config": str(config_file),
                                             "name": spec.get("name")}, indent=2) + "\n")
    return out


def model_fingerprint(path: Path, edge: int = 1 << 20) -> str:
    """What tells one local checkpoint from another at the same path, cheaply: sha256 over its config.json
    and, per weight file, its name, size and first and last MiB (a full hash of a 7B model would read 15 GB
    per eval). Different weights differ there in practice (the tensors' data starts right after the header)."""
    import hashlib
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.name == "config.json" or f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".gguf"):
            try:
                size = f.stat().st_size
                h.update(f"{f.name}\0{size}\0".encode())
                with open(f, "rb") as fh:
                    h.update(fh.read(edge))
                    if size > 2 * edge:
                        fh.seek(size - edge)
                    h.update(fh.read(edge))  # the rest of a small file, else its last MiB
            except OSError:
                continue
    return h.hexdigest()[:16]
