"""`vt train CONFIG.yaml [--key value ...]`: VisionThink GRPO on TRL 1.16 (paper §3.3-3.4).

One config dataclass, `VtTrainConfig` = TRL's `GRPOConfig` + vt's fields; the YAML sets any of them and
every field is also a `--flag` (flags win). The run directory (`output_dir`) gets TRL's checkpoints,
`metrics.jsonl` (one line per logging step), `rollouts.jsonl` (one line per rollout: turns, score,
penalty), `rejected.jsonl` (rows that cannot fit the token budgets) and `final/` (model + processor,
loadable by `vttrain.models.build.load`). `--resume` continues from the latest checkpoint at the same
optimiser step and data position (TRL's seeded sampler + HF Trainer's batch skipping).

Paths in the YAML are relative to the YAML's directory (as in a data manifest); flags are relative to the
current directory (`vttrain/grpo/config.py`: the config, its parsing and its dump). torch, transformers,
TRL and peft (and `vttrain.grpo.config`, which subclasses TRL's config) are imported inside the functions
that use them, so `vt --help` stays quick; nothing else is.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import typer

from vtdata import protocol
from vtdata.console import VtError, error_line, info, track
from vtdata.dataset import iter_samples, load_hf
from vtdata.db import default_db
from vtdata.judge import judge_options, make_judge
from vtdata.outdir import make_out_dir
from vtdata.safeload import jsonl
from vtdata.protocol.tools import selection

RELEASE_JUDGE_MAX_TOKENS = 16384  # the release's judge request

def load_rows(data_dir: str, split: str):
    """The split as a `datasets.Dataset` with the image column undecoded (original bytes)."""
    import datasets
    d = Path(data_dir)
    if not d.is_dir():
        raise VtError(f"data_dir {d} is not a directory (build one with `vt build-data`)")
    ds = load_hf(str(d), split)  # a VtError when the split has no rows
    if len(ds) == 0:
        raise VtError(f"{d} split {split!r} is empty")
    need = {"id", "question", "answers", "image", "low_width", "low_height", "high_width", "high_height"}
    missing = sorted(need - set(ds.column_names))
    if missing:
        raise VtError(f"{d} lacks column(s) {', '.join(missing)}: not a vt built/curated dataset")
    for _ in iter_samples(d, split, columns=["id", "image"]):
        pass  # every image against its recorded image_sha256 once, before any rollout uses one
    return ds.cast_column("image", datasets.Image(decode=False))


def fit_rows(ds, processor, cfg, model_max_len: int, run_dir: Path):
    """Drop (and record in RUN/rejected.jsonl) rows whose prompt or high-res tool turn cannot fit.

    Guards two silent failures: a prompt cut through its image tokens, and a tool image that TRL drops
    because the trajectory would pass max_completion_length."""
    from vttrain.grpo.env import budget
    names = {"ok_prompt": cfg.tool_ok_prompt, "error_prompt": cfg.tool_error_prompt}
    max_prompt = cfg.max_prompt_length or (model_max_len - cfg.max_completion_length)
    keep, rejected = [], []
    cols = ["id", "question", "low_width", "low_height", "high_width", "high_height"]
    for i, row in enumerate(track(ds.select_columns(cols), "checking token budgets", total=len(ds))):
        p, t = budget(processor, row, cfg.system_prompt, cfg.user_prompt, names, selection(cfg.tools))
        if p > max_prompt:
            rejected.append({"id": row["id"], "reason": f"prompt has {p} tokens > max_prompt_length {max_prompt}"})
        elif cfg.max_turns > 1 and t + cfg.min_answer_tokens > cfg.max_completion_length:
            rejected.append({"id": row["id"], "reason": f"high-res tool turn has {t} tokens; with "
                             f"{cfg.min_answer_tokens} answer tokens it exceeds max_completion_length "
                             f"{cfg.max_completion_length}"})
        else:
            keep.append(i)
    if rejected and int(os.environ.get("RANK", "0")) == 0:
        with open(run_dir / "rejected.jsonl", "w", encoding="utf-8") as f:
            for r in rejected:
                f.write(json.dumps(r) + "\n")
        info(f"rejected {len(rejected)} of {len(ds)} rows that cannot fit the token budgets "
             f"(reasons in {run_dir / 'rejected.jsonl'}; first: {rejected[0]['reason']})")
    if not keep:
        raise VtError(f"no row fits: {rejected[0]['reason']} (raise max_completion_length/max_prompt_length)")
    return ds.select(keep)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (a save interrupted by a crash lacks trainer_state.json: skipped)."""
    cks = [p for p in run_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    cks.sort(key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for p in cks:
        if (p / "trainer_state.json").exists():
            return p
        info(f"skipping incomplete checkpoint {p} (no trainer_state.json)")
    return None


def _trim_logs(run_dir: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (they will be written again)."""
    for name in ("metrics.jsonl", "rollouts.jsonl"):
        p = run_dir / name
        if p.exists():
            keep = [json.dumps(obj) for _, obj, bad in jsonl(p, "run log")
                    if bad is None and isinstance(obj, dict) and obj.get("step", 0) <= step]
            p.write_text("".join(ln + "\n" for ln in keep))


def weights_dtype(cfg):
    """The dtype the policy is loaded in. Trained weights stay fp32 (master weights); `bf16`/`fp16` make the
    Trainer autocast the forward pass. An AdamW step at lr 1e-6 moves a weight by ~1e-6, far below bf16's
    spacing (~1e-4 near 0.02), so bf16 weights would barely move. A LoRA run keeps the frozen base in the
    compute dtype (PEFT keeps its adapters in fp32). DeepSpeed keeps its own fp32 master copy either way."""
    import torch
    if cfg.use_peft:
        return torch.bfloat16 if cfg.bf16 else (torch.float16 if cfg.fp16 else torch.float32)
    return torch.float32


def logs_retry_share(accuracy, judge):
    """The accuracy reward, also logging `judge_retry_share` (beside the judge_* metrics it logs): the share
    of this batch's judge replies without a readable verdict (each paid again, or the item's error). Logged
    only for batches that got replies (rule judges, cache hits and shortcuts get none)."""
    import functools

    @functools.wraps(accuracy)
    def reward(*args, log_metric=None, **kwargs):
        before = judge.stats()
        scores = accuracy(*args, log_metric=log_metric, **kwargs)
        after = judge.stats()
        replies = after["replies"] - before["replies"]
        if log_metric and replies:
            log_metric("judge_retry_share", (after["unread_replies"] - before["unread_replies"]) / replies)
        return scores
    return reward


def run_judge(cfg, db=None):
    """The accuracy judge of a run. `judge_concurrency` bounds the requests in flight over the whole run: each
    of the WORLD_SIZE processes (one per GPU) gets its share (rounded up), as the release's 100 judge threads
    served all GPUs. `judge_input: release` asks the release's way (`make_reward_funcs`)."""
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    share = -(-cfg.judge_concurrency // world) if cfg.judge_concurrency else None
    opts = judge_options(cfg.judge, cfg.judge_base_url, cfg.judge_api_key_env, cfg.judge_scope, concurrency=share)
    if cfg.judge_input == "release":  # no shortcut, the judge prompt as is, the release's max_tokens
        opts.update(shortcut=False, release_input=True, max_tokens=RELEASE_JUDGE_MAX_TOKENS)
    return make_judge(cfg.judge, db=db, **opts)


def build_trainer(cfg, trainer_class=None):
    """(trainer, processor): the VtGRPOTrainer for a config (also used by tests and bench/train_step.py)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch

    from vttrain.models import build as models
    from vttrain.grpo.env import env_factory, make_transform, prepare_processor, vision_token_ids
    from vttrain.grpo.config import RedactedArgs, validate
    from vttrain.grpo.metrics_log import JsonlMetrics
    from vttrain.grpo.trainer import VtGRPOTrainer, make_reward_funcs

    validate(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    run_dir = make_out_dir(cfg.output_dir, "output_dir", inputs=(cfg.data_dir, cfg.db))
    processor = models.load_processor(cfg.model)
    tools = selection(cfg.tools)
    prepare_processor(processor, tools, cfg.turn2_bytes, cfg.tool_call_parse)
    env = env_factory(tools, {"ok_prompt": cfg.tool_ok_prompt, "error_prompt": cfg.tool_error_prompt})

    # Model: a path with weights goes to TRL as a string (so DeepSpeed ZeRO-3 can shard it while loading);
    # a random-weight dir without weights (`vt init-model random`) is built by vttrain.models.build.load.
    local = Path(cfg.model)
    dtype = weights_dtype(cfg)
    if local.is_dir() and not models._has_weights(local):
        model, _ = models.load(cfg.model, device="cpu", dtype=dtype)
    else:
        model = cfg.model
        cfg.model_init_kwargs = {"dtype": dtype, **(cfg.model_init_kwargs or {})}
    from transformers import AutoConfig
    mcfg = AutoConfig.from_pretrained(cfg.model)
    model_max_len = getattr(mcfg.get_text_config(), "max_position_embeddings", 32768)

    # Never generate vision tokens (they would not match any image features).
    bad = vision_token_ids(processor.tokenizer)
    gk = dict(cfg.generation_kwargs or {})
    if cfg.use_vllm:
        gk.setdefault("logit_bias", {i: -100.0 for i in bad})
    else:
        gk["suppress_tokens"] = sorted(set(gk.get("suppress_tokens", [])) | set(bad))
    if cfg.max_turn_tokens:
        gk["max_tokens" if cfg.use_vllm else "max_new_tokens"] = cfg.max_turn_tokens
    cfg.generation_kwargs = gk
    cfg.max_tool_calling_iterations = cfg.max_turns - 1

    ds = load_rows(cfg.data_dir, cfg.split)
    ds = fit_rows(ds, processor, cfg, model_max_len, run_dir)
    if cfg.max_samples:
        ds = ds.select(range(min(cfg.max_samples, len(ds))))
    ds = ds.with_transform(make_transform(cfg.system_prompt, cfg.user_prompt, tools))

    db = None
    if cfg.judge.startswith("openai:") and int(os.environ.get("RANK", "0")) == 0:
        db = cfg.db or str(default_db(cfg.data_dir))
    judge = run_judge(cfg, db)

    peft_config = None
    if cfg.use_peft:
        from peft import LoraConfig
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=[m.strip() for m in cfg.lora_target_modules.split(",") if m.strip()],
                                 task_type="CAUSAL_LM")
    cfg.reward_weights = [1.0, cfg.format_weight, 1.0]
    cls = trainer_class or VtGRPOTrainer
    rewards = make_reward_funcs(judge, cfg.format_rule, tools, cfg.judge_input, cfg.user_prompt)
    rewards[0] = logs_retry_share(rewards[0], judge)
    trainer = cls(model=model, reward_funcs=rewards, args=cfg, train_dataset=ds,
                  processing_class=processor, environment_factory=env, peft_config=peft_config, judge=judge,
                  callbacks=[JsonlMetrics(run_dir / "metrics.jsonl"), RedactedArgs()])
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not trainer.is_fsdp_enabled:
        # accelerate (1.16) shards only on accelerator devices: on CPU an FSDP config runs plain DDP, silently
        raise VtError("accelerate was launched with an FSDP config but does not shard here (on CPU it runs "
                      "unsharded DDP): use manifests/accelerate/cpu-2proc.yaml on CPU, FSDP on GPUs")
    from vtdata.console import quiet
    if quiet():  # `vt -q train`: results only; the metrics still go to metrics.jsonl and report_to
        from transformers.trainer_callback import PrinterCallback, ProgressCallback
        trainer.remove_callback(ProgressCallback)  # the step bar and its per-step metrics dict
        trainer.remove_callback(PrinterCallback)   # what prints the dict instead when the bar is disabled
    return trainer, processor


def save_final(trainer, processor, out: Path, chat_template: str) -> Path:
    """The trained policy + its processor with `chat_template` (the model's own, not the training one) in
    `out`, loadable by models.load."""
    from vttrain.grpo.env import uninstall_response_parser
    from vttrain.grpo.config import CONFIG_FILE, store_args, write_config, write_model_card
    uninstall_response_parser(processor)
    processor.chat_template = chat_template
    processor.tokenizer.chat_template = chat_template
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # LoRA: save the merged weights, not the adapter
        merged = model.merge_and_unload()
        if trainer.accelerator.is_main_process:
            merged.save_pretrained(out)
            processor.save_pretrained(out)
    else:
        trainer.save_model(str(out))  # collective under ZeRO-3/FSDP; writes the processor too
    if trainer.accelerator.is_main_process:
        from vttrain.models.build import name_stock_processor
        (out / "vt_protocol_chat_template.jinja").write_text(protocol.chat_template(trainer.args.turn2_bytes))
        name_stock_processor(out)  # stock AutoProcessor loads Qwen2_5_VLProcessor, not vt's fallback class
        write_config(trainer.args, out / CONFIG_FILE)
        store_args(trainer.args, out)  # training_args.bin without URL credentials or tokens
        write_model_card(trainer.args, out)
    trainer.accelerator.wait_for_everyone()
    return out


def run(cfg, trainer_class=None):
    """Train per the config; returns the final model dir."""
    from vttrain.grpo.config import CONFIG_FILE
    run_dir = Path(cfg.output_dir)
    ckpt = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if ckpt and not cfg.resume:
        raise VtError(f"{run_dir} already has {ckpt.name}; pass --resume to continue it or pick another output_dir")
    if cfg.resume and ckpt is None:
        raise VtError(f"--resume: no checkpoint in {run_dir}")
    done = False  # the checkpoint already reached max_steps
    if ckpt:
        step = json.loads((ckpt / "trainer_state.json").read_text())["global_step"]
        done = 0 < cfg.max_steps <= step
        if done and (run_dir / "final" / "config.json").exists():
            info(f"{run_dir} is already trained to step {step} (max_steps {cfg.max_steps}); "
                 f"final model in {run_dir / 'final'}")
            return run_dir / "final"
        _trim_logs(run_dir, step)
        info(f"resuming {run_dir} from {ckpt.name} (step {step})")
    created = not run_dir.exists()
    try:
        return _train(cfg, run_dir, ckpt, done, trainer_class)
    except BaseException:
        # a run that failed before writing anything but its config leaves no directory behind
        # (rejected.jsonl, metrics and checkpoints are kept: they explain the failure or resume it)
        if created and run_dir.is_dir() and all(p.name == CONFIG_FILE for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(cfg, run_dir: Path, ckpt, done: bool, trainer_class):
    from vttrain.models.build import load_processor
    from vttrain.grpo.config import CONFIG_FILE, write_config
    trainer, processor = build_trainer(cfg, trainer_class)  # checks the config first (train_config.validate)
    original_template = load_processor(cfg.model).chat_template
    if trainer.accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(cfg, run_dir / CONFIG_FILE)
    try:
        if done:
            # transformers' loop runs one optimiser step before it checks max_steps, so resuming a
            # finished checkpoint would train an extra step: load its weights and only save the model.
            trainer._load_from_checkpoint(str(ckpt))
        else:
            trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    finally:
        trainer.judge.close()
    final = save_final(trainer, processor, run_dir / "final", original_template)
    if trainer.accelerator.is_main_process:
        info(f"saved the trained model to {final}; metrics in {run_dir / 'metrics.jsonl'}")
    return final


def train_command(
    ctx: typer.Context,
    config: Path = typer.Argument(None, help="Train config YAML (e.g. manifests/train-demo.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in output_dir."),
    options: bool = typer.Option(False, "--options", help="List every config option (TRL's GRPOConfig + vt's) and exit."),
    dry_run: bool = typer.Option(False, "--dry-run", help=(
        "Print the resolved recipe and its per-GPU memory estimate (model on the meta device, no data, no "
        "weights) and exit; refuses a config that cannot fit the GPUs it names.")),
):
    """Train the policy with VisionThink GRPO: `vt train CONFIG.yaml [--key value ...]`.

    Every config option is also a flag (`--learning_rate 1e-6 --num_generations 8`); flags override the
    YAML. Writes checkpoints, metrics.jsonl, rollouts.jsonl and final/ into output_dir."""
    from vttrain.grpo.config import options_help, parse_config
    if options:
        typer.echo(options_help())
        return
    if config is None:
        raise VtError("usage: vt train CONFIG.yaml [--key value ...] (or --options)")
    extra = list(ctx.args) + (["--resume", "true"] if resume else [])
    cfg = parse_config(config, extra, dry_run=dry_run)
    if dry_run:
        from vttrain.grpo.memory import dry_run as estimate
        estimate(cfg, echo=typer.echo)
        return
    run(cfg)


train_command.context_settings = {"allow_extra_args": True, "ignore_unknown_options": True}

if __name__ == "__main__":  # `python -m vttrain.grpo.train CONFIG [--key value]` (used with accelerate launch)
    from vttrain.grpo.config import parse_config
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: [accelerate launch ...] python -m vttrain.grpo.train CONFIG.yaml [--key value ...]\n"
              "the same config and flags as `vt train` (`vt train --options` lists them)")
        sys.exit(0 if len(sys.argv) > 1 else 2)
    try:
        run(parse_config(sys.argv[1], sys.argv[2:]))
    except VtError as err:
        error_line(err)
        sys.exit(2)
