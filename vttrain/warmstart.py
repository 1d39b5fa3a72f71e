"""`vt init-model mini OUT`: a small Qwen2.5-VL trained from scratch, offline, on vt's own protocol.

The miniature's warm start (no pretrained weights reach these machines): TRL's SFTTrainer teaches a
~1 M-parameter Qwen2.5-VL the `family: miniature` task (vtdata/sources/miniature.py) in the exact
formats vt's stages use:
- the agent protocol of `vt train` / `vt eval --mode think` (agent system prompt with the tool, the LOW
  view, `<think>…</think>`, then either `<answer>…</answer>` or a `resize_image` call, the tool turn with
  the HIGH view, `<think>…</think><answer>…</answer>`);
- the direct prompt of `vt score-judge` and `vt eval --mode full|low`, on either view.
The decision to call the tool is NOT taught: every agent trajectory calls it with probability
`tool_rate`, whatever the question, so after SFT the resize ratio is ~tool_rate on both classes and
GRPO has to learn when the high view is worth it. Think text is one short fixed sentence per turn.

The tokenizer is a byte-level BPE trained on the protocol text (prompts, questions, answers, turns)
without word splitting, so the paper's long prompts stay verbatim but cost few tokens.

The build is deterministic by its config and cached: `VT_CACHE` (default ~/.cache/vt) keeps one
checkpoint per config hash, and OUT gets a copy; a second `vt init-model mini OUT` with the same config
returns at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from vtdata import prompts, protocol
from vtdata.console import VtError, info
from vtdata.sources import miniature

MINI_TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4})
MINI_VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, fullatt_block_indexes=[1],
                   window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
THINK_FIRST = "<think>I look at the image.</think>"
THINK_AFTER = "<think>I look at the larger image.</think>"
TOOL_CALL = ('<tool_call>\n{"name": "%s", "arguments": {"action": "%s"}}\n</tool_call>'
             % (protocol.TOOL_NAME, protocol.TOOL_ACTION))
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]  # one token each in the mini tokenizer
SEED_SPACE = "warmstart"  # the generator's seed namespace for SFT rows (never a built dataset's)


@dataclass
class MiniConfig:
    """What a `mini` warm start is built from (its hash keys the cache)."""
    seed: int = 0
    """Seed of the tokenizer, the weights, the SFT data and its order."""
    steps: int = 1200
    """SFT optimiser steps."""
    batch_size: int = 32
    """Trajectories per step."""
    learning_rate: float = 2e-3
    """Peak AdamW learning rate (cosine decay after 5 % warm-up)."""
    tool_rate: float = 0.5
    """Share of agent trajectories that call resize_image, the same for every question type."""
    agent_share: float = 0.5
    """Share of SFT rows in the agent protocol; the rest are direct answers (score-judge / eval full|low)."""
    direct_high_share: float = 0.75
    """Share of the direct answers shown the high view (the detail class is only learnable there)."""
    size: int = 112
    """Side of the miniature images (the high view; the low view is half of it)."""
    vocab_size: int = 2048
    """BPE vocabulary of the protocol-trained tokenizer."""
    threads: int = 1
    """torch threads while training (1 was fastest on 2 shared cores)."""

    def key(self) -> str:
        protocol_text = [prompts.load(n) for n in prompts.NAMES] + [protocol.TOOL_OK_HEAD, protocol.TOOL_OK_TAIL,
                                                                    protocol.CHAT_TEMPLATE]
        blob = json.dumps({**asdict(self), "threads": None, "text": MINI_TEXT, "vision": MINI_VISION,
                           "think": [THINK_FIRST, THINK_AFTER], "protocol": protocol_text,
                           "gen": "vt-miniature-1", "v": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ the data

def trajectory(i: int, cfg: MiniConfig) -> dict:
    """SFT row `i`: {"messages": [...], "images": [...], "task", "kind", "tool"} (deterministic)."""
    from vtdata.resolution import view
    rng = random.Random(f"vt-warmstart:{cfg.seed}:{i}")
    task = rng.choice(("general", "ocr"))
    s = miniature.sample(task, f"{SEED_SPACE}-{cfg.seed}", i, cfg.size)
    data = miniature.render(s["spec"])
    high = view(data, (cfg.size, cfg.size))
    low = view(data, (cfg.size // 2, cfg.size // 2))
    answer = f"{THINK_FIRST}<answer>{s['answer']}</answer>"
    if rng.random() < cfg.agent_share:
        msgs = protocol.agent_messages(s["question"], None)
        if rng.random() < cfg.tool_rate:
            tool = [{"type": "image"} if b.get("type") == "image" else b for b in protocol.tool_content(image=high)]
            msgs += [{"role": "assistant", "content": [{"type": "text", "text": f"{THINK_FIRST}\n{TOOL_CALL}"}]},
                     {"role": "user", "content": tool},
                     {"role": "assistant", "content": [{"type": "text",
                                                        "text": f"{THINK_AFTER}<answer>{s['answer']}</answer>"}]}]
            return {"messages": msgs, "images": [low, high], "task": task, "kind": "agent", "tool": True}
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return {"messages": msgs, "images": [low], "task": task, "kind": "agent", "tool": False}
    img = high if rng.random() < cfg.direct_high_share else low
    msgs = protocol.direct_messages(prompts.load("score_system"), s["question"], None)
    msgs[1]["content"][0] = {"type": "image"}
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return {"messages": msgs, "images": [img], "task": task, "kind": "high" if img is high else "low", "tool": False}


def sft_rows(n: int, cfg: MiniConfig):
    """A `datasets.Dataset` of `n` trajectory indices whose rows are generated when read (no image stored)."""
    import datasets

    def transform(batch: dict) -> dict:
        rows = [trajectory(i, cfg) for i in batch["row"]]
        return {"messages": [r["messages"] for r in rows], "images": [r["images"] for r in rows]}

    return datasets.Dataset.from_dict({"row": list(range(n))}).with_transform(transform)


def training_chat_template() -> str:
    """protocol.CHAT_TEMPLATE with `{% generation %}` around each assistant turn's text and <|im_end|>
    (TRL's assistant-only loss): identical text, so SFT and the RL/eval stages see the same tokens."""
    t = protocol.CHAT_TEMPLATE
    emit, end = "{{- ns.text -}}", "{{- '<|im_end|>\\n' -}}"
    assert t.count(emit) == 1 and t.count(end) == 1
    head, rest = t.split(emit)
    calls, tail = rest.split(end)  # `calls` renders an assistant's tool_calls (nothing for other roles)
    return (head + "{%- if message.role == 'assistant' -%}{%- generation -%}" + emit + calls
            + "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}{%- else -%}" + emit + end
            + "{%- endif -%}" + tail)


# ----------------------------------------------------------------------------------- the tokenizer

def corpus(cfg: MiniConfig, n: int = 400) -> list[str]:
    """Protocol text for the tokenizer: every shipped prompt, questions, answers, both turn shapes."""
    texts = [prompts.load(name) for name in prompts.NAMES]
    texts += [protocol.TOOL_OK_HEAD + protocol.TOOL_OK_TAIL, protocol.TOOL_ERROR_TEXT]
    rng = random.Random(f"vt-warmstart-corpus:{cfg.seed}")
    for _ in range(n):
        task = rng.choice(("general", "ocr"))
        ans = rng.choice(miniature.ANSWERS[task])
        texts += [miniature.QUESTIONS[task], f"{THINK_FIRST}<answer>{ans}</answer>",
                  f"{THINK_FIRST}\n{TOOL_CALL}", f"{THINK_AFTER}<answer>{ans}</answer>"]
    texts.append("".join(chr(c) for c in range(32, 127)))
    return texts


def build_tokenizer(cfg: MiniConfig):
    """Byte-level BPE without word splitting (merges span spaces, not tags), Qwen's added tokens and
    the think/answer tags on top."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from vttrain.models import PLAIN_ADDED_TOKENS, SPECIAL_TOKENS
    tok = Tokenizer(models.BPE())
    # The tags are split off before BPE (no merge spans them), so an answer or a call is its own tokens.
    tags = Regex("|".join(t.replace("/", "\\/") for t in TAGS + ["<tool_call>", "</tool_call>"]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(tags, "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(cfg), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PLAIN_ADDED_TOKENS + TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left", model_max_length=4096)


# ------------------------------------------------------------------------------------------ the build

def cache_dir() -> Path:
    return Path(os.environ.get("VT_CACHE") or Path.home() / ".cache" / "vt")


def init_mini(out_dir: str | os.PathLike, cfg: MiniConfig | None = None) -> Path:
    """Build (or take from the cache) the warm-started mini model; a copy lands in `out_dir`."""
    from vttrain.models import INIT_FILE, make_out_dir
    cfg = cfg or MiniConfig()
    key = cfg.key()
    out = Path(out_dir)
    if _is_build(out, key):
        return out
    cached = cache_dir() / "models" / f"mini-{key}"
    if not _is_build(cached, key):
        _train(cached, cfg)
    out = make_out_dir(out, "OUT")
    for f in cached.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    json.loads((out / INIT_FILE).read_text())  # copied last-written marker must parse
    return out


def _is_build(path: Path, key: str) -> bool:
    from vttrain.models import INIT_FILE
    try:
        return json.loads((path / INIT_FILE).read_text()).get("key") == key and (path / "model.safetensors").is_file()
    except (OSError, ValueError):
        return False


def _train(out: Path, cfg: MiniConfig) -> None:
    """SFT from scratch into a temp dir beside `out`, renamed into place when complete."""
    import tempfile

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from trl import SFTConfig, SFTTrainer

    from vttrain import models
    models._quiet_transformers()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        processor = models._image_only_processor_class()(
            models._pil_image_processor(min_pixels=models.MIN_PIXELS, max_pixels=models.MAX_PIXELS),
            build_tokenizer(cfg), chat_template=models.CHAT_TEMPLATE)
        config = models.make_config(MINI_TEXT, MINI_VISION, processor.tokenizer)
        torch.manual_seed(cfg.seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor.chat_template = training_chat_template()
        args = SFTConfig(output_dir=str(tmp / "sft"), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size,
                         learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.05,
                         weight_decay=0.0, assistant_only_loss=True, max_length=None, use_cpu=True, bf16=False,
                         seed=cfg.seed, data_seed=cfg.seed, logging_steps=max(1, cfg.steps // 20),
                         save_strategy="no", report_to="none", dataloader_num_workers=0,
                         gradient_checkpointing=False, remove_unused_columns=False, disable_tqdm=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=sft_rows(cfg.steps * cfg.batch_size, cfg),
                             processing_class=processor)
        info(f"warm start: SFT of a {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M-parameter "
             f"Qwen2.5-VL, {cfg.steps} steps x {cfg.batch_size} trajectories")
        trainer.train()
        processor.chat_template = models.CHAT_TEMPLATE
        model.save_pretrained(tmp)
        models._save_generation_config(config, tmp)
        models._save_processor(processor, tmp)
        shutil.rmtree(tmp / "sft", ignore_errors=True)
        log = [r for r in trainer.state.log_history if "loss" in r]
        (tmp / models.INIT_FILE).write_text(json.dumps({"kind": "mini", "key": cfg.key(), "config": asdict(cfg),
                                                        "final_loss": log[-1]["loss"] if log else None},
                                                       indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
