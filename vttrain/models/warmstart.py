"""`vt init-model mini OUT`: a small Qwen2.5-VL trained from scratch, offline, on vt's own protocol.

The miniature's warm start (no pretrained weights reach these machines): TRL's SFTTrainer teaches a
~1 M-parameter Qwen2.5-VL the image-decision task (`family: sufficiency`, vtdata/sources/sufficiency.py:
the background's colour, and the grey box's pattern at a `coarse` scale the low view keeps or a `fine` one
it erases) in the exact formats vt's stages use:
- the agent protocol of `vt train` / `vt eval --mode think` (agent system prompt with the tool, the LOW
  view, `<think>…</think>`, then either `<answer>…</answer>` or a `resize_image` call, the tool turn with
  the HIGH view, `<think>…</think><answer>…</answer>`);
- the direct prompt of `vt score-judge` and `vt eval --mode full|low`, on either view.
The decision to call the tool is NOT taught: every agent trajectory calls it with probability
`tool_rate`, whatever the question and the image, so after SFT the resize ratio is ~tool_rate on every
source and GRPO has to learn when the high view is worth it. Think text is one short sentence per turn. Turn 1's
says what the model sees: the background for the colour question; for the box question (coarse and fine
rows ask it word for word) whether the box in the view it was shown looks striped or flat, read from that
view's pixels (`sufficiency.box_contrast`), never from the row's source. The tool is called at the same
rate after either sentence.
With the zoom tool (`tools` with zoom, issue 19) the miniature must also learn WHERE the box is, which its
2-layer vision tower cannot see on a uniform background: a zoom build's images carry the location cue
(sufficiency.CUE: location made visible in content) and its box sentence names the quadrant ("The grey box
at the top left looks flat."), which the zoom call then copies.
`vt init-model mini` measures that choice's probability per source on held-out rows (`call_and_sentence_probability`
in vt_init.json and the model's README.md).

The tokenizer is a byte-level BPE trained on the protocol text (prompts, questions, answers, turns)
without word splitting, so the paper's long prompts stay verbatim but cost few tokens.

The build is deterministic by its config and cached: `VT_CACHE` (default ~/.cache/vt) keeps one
checkpoint per config hash, and OUT gets a copy; a second `vt init-model mini OUT` with the same config
returns at once.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from vtdata.console import info
from vttrain.models.warmstart_data import (MINI_TEXT, MINI_VISION, TAGS, MiniConfig, corpus, sft_rows,
                                           training_chat_template)


def build_tokenizer(cfg: MiniConfig):
    """Byte-level BPE without word splitting (merges span spaces, not tags), Qwen's added tokens and
    the think/answer tags (`TAGS`) on top."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from vttrain.models.build import PLAIN_ADDED_TOKENS, SPECIAL_TOKENS
    tok = Tokenizer(models.BPE())
    # The tags are split off before BPE (no merge spans them), so an answer or a call is its own tokens.
    split = [t.replace("/", "\\/") for t in TAGS + ["<tool_call>", "</tool_call>"]]
    if cfg.zoom:  # the quadrant and what the box looks like are separate tokens (see WHERE)
        split.append(" looks (?:flat|striped)\\.<\\/think>")
    tags = Regex("|".join(split))
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
    from vtdata.outdir import make_out_dir
    from vttrain.models.build import INIT_FILE
    cfg = cfg or MiniConfig()
    key = cfg.key()
    out = Path(out_dir)
    if is_build(out, key):
        return out
    cached = cache_dir() / "models" / f"mini-{key}"
    if not is_build(cached, key):
        _train(cached, cfg)
    out = make_out_dir(out, "OUT")
    # the marker last: a copy cut short is not taken for a build by the next call
    for f in sorted(cached.iterdir(), key=lambda f: f.name == INIT_FILE):
        if f.is_file():
            shutil.copy2(f, out / f.name)
    return out


def is_build(path: Path, key: str) -> bool:
    from vttrain.models.build import INIT_FILE
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

    from vttrain.models import build as models
    from vttrain.models.fastpath import compact_lm_head, install_fast_vision
    from vttrain.models.warmstart_card import write_card
    from vttrain.models.warmstart_check import AccuracyCheck, call_and_sentence_probability, unpassed
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
        install_fast_vision(model)  # same maths as the trainer's (vttrain.models.fastpath); weights untouched
        processor.chat_template = training_chat_template()
        common = dict(per_device_train_batch_size=cfg.batch_size, weight_decay=0.0, assistant_only_loss=True,
                      max_length=None, use_cpu=True, bf16=False, seed=cfg.seed, data_seed=cfg.seed,
                      logging_steps=25, save_strategy="no", report_to="none", dataloader_num_workers=0,
                      gradient_checkpointing=False, remove_unused_columns=False,
                      disable_tqdm=not sys.stderr.isatty())  # no carriage-return progress in a log file
        check = AccuracyCheck(processor, cfg)
        info(f"warm start: SFT of a {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M-parameter "
             f"Qwen2.5-VL, at most {cfg.steps} + {cfg.cooldown_steps} steps x {cfg.batch_size} trajectories")
        trainer = SFTTrainer(model=model, processing_class=processor, callbacks=[check],
                             train_dataset=sft_rows(range(cfg.steps * cfg.batch_size), cfg),
                             args=SFTConfig(output_dir=str(tmp / "sft"), max_steps=cfg.steps,
                                            learning_rate=cfg.learning_rate, lr_scheduler_type="constant_with_warmup",
                                            warmup_steps=0.05, **common))
        with compact_lm_head():  # the LM head projects only the labelled (assistant) positions, as on CUDA
            trainer.train()
        steps = trainer.state.global_step
        log = [r for r in trainer.state.log_history if "loss" in r]
        n_cool = min(cfg.cooldown_steps, cfg.steps)  # a short test build stays short
        if n_cool:
            start = steps * cfg.batch_size  # fresh rows, not the ones just trained on
            cool = SFTTrainer(model=model, processing_class=processor,
                              train_dataset=sft_rows(range(start, start + n_cool * cfg.batch_size), cfg),
                              args=SFTConfig(output_dir=str(tmp / "sft"), max_steps=n_cool,
                                             learning_rate=cfg.learning_rate, lr_scheduler_type="linear",
                                             warmup_steps=0, **common))
            with compact_lm_head():
                cool.train()
            steps += cool.state.global_step
            log += [r for r in cool.state.log_history if "loss" in r]
            check.measure(model, steps)
        failed = unpassed(check.history, cfg)
        if failed:  # kept (it is what the config builds) but never silently: the card and vt_init.json say so too
            info(f"warning: the warm start did not pass its held-out checks in {steps} steps ("
                 + ", ".join(f"{k} {v:.2f}" for k, v in failed.items()) + f" < {cfg.check_accuracy}); "
                 "another --seed or more steps may pass them")
        processor.chat_template = models.CHAT_TEMPLATE
        calls, said = call_and_sentence_probability(model, processor, cfg)
        info("warm start: P(call) at the decision token, held-out low views: "
             + ", ".join(f"{k} {v:.3f}" for k, v in calls.items()))
        info("warm start: P(turn-1 sentence | source), held-out low views: "
             + "; ".join(f"{k}: " + ", ".join(f"{t!r} {p:.3f}" for t, p in v.items()) for k, v in said.items()))
        model.save_pretrained(tmp)
        models._save_generation_config(config, tmp)
        models._save_processor(processor, tmp)
        shutil.rmtree(tmp / "sft", ignore_errors=True)
        (tmp / models.INIT_FILE).write_text(json.dumps({"kind": "mini", "key": cfg.key(), "config": asdict(cfg),
                                                        "steps_trained": steps,
                                                        "final_loss": log[-1]["loss"] if log else None,
                                                        "checks": check.history, "checks_failed": failed,
                                                        "call_probability": calls,
                                                        "sentence_probability": said},
                                                       indent=2) + "\n")
        write_card(tmp, cfg, steps, check.history, calls, said)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
