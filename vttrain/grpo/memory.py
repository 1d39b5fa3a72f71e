"""`vt train CONFIG --dry-run`: the per-GPU memory a run needs, estimated before anything loads.

The model is built on the meta device (accelerate's `init_empty_weights`: shapes, no memory) from its
config: a local checkpoint's config.json, a shipped manifests/models/*.yaml whose `source` is the hub id
(offline), or the hub cache. Per GPU, in GiB:

- weights, gradients, optimizer: mixed precision as DeepSpeed counts it (bf16 weights 2 B + bf16
  gradients 2 B + fp32 master and Adam moments 12 B = 16 B per trained parameter; vt's DDP path keeps fp32
  weights and gradients and Adam: also 16 B), split over the GPUs by ZeRO stage (1: optimizer states,
  2: + gradients, 3: + weights, plus the two largest layers gathered at a time);
- the reference model (beta > 0): 2 B per parameter in bf16, sharded under ZeRO-3 (vt's DDP path: 4 B, fp32);
- activations with gradient checkpointing: each decoder layer's input kept (L x T x hidden x 2 B) plus
  one layer recomputed (T x (10 hidden + 3 intermediate) x 2 B), the vision tower alike for the images;
  without checkpointing every layer's working set is kept;
- logits: micro-batch x completion tokens x vocab x 6 B (bf16 logits, the temperature-scaled copy, their
  gradient) -- at a 152k vocabulary this is the largest item of a long-trajectory run;
- vLLM (colocate): `vllm_gpu_memory_utilization` of the GPU while it generates; while the policy trains,
  the same share again unless `vllm_enable_sleep_mode` (level 2 frees weights and KV cache: ~2 GiB left).
  Server mode puts vLLM on other GPUs (0 here).

The peak is the larger of the generation phase (persistent training state + vLLM) and the training phase
(everything + what vLLM keeps), plus 10 % and 1 GiB of CUDA context. An estimate, not a measurement:
bench/gpu_check.sh measures a real step where a GPU is at hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from vtdata.console import VtError

GIB = 1024 ** 3
IMAGE_TOKENS = 8192  # image tokens per trajectory: a VisionThink low view (<= 1.4k) + its high view (<= 5.5k)
SLEEPING_VLLM_GIB = 2.0  # what a colocated vLLM keeps after sleep(level=2): CUDA graphs, allocator
CONTEXT_GIB = 1.0


@dataclass
class Launch:
    """How the run is launched: GPUs in all, memory of each, ZeRO stage (0 = plain DDP), offloads."""
    gpus: int
    gpu_memory_gb: float
    zero_stage: int
    offload_optimizer: bool = False
    offload_params: bool = False


def read_launch(cfg) -> Launch:
    """The launch the config names: `accelerate_config` (its ZeRO stage, offloads and process count) with
    `gpus` / `gpu_memory_gb` from the train config."""
    stage, off_opt, off_par, procs = 0, False, False, 1
    if cfg.accelerate_config:
        p = Path(cfg.accelerate_config)
        if not p.is_file():
            raise VtError(f"accelerate_config {p} not found")
        acc = yaml.safe_load(p.read_text()) or {}
        procs = int(acc.get("num_processes") or 1)
        if acc.get("distributed_type") == "DEEPSPEED":
            ds = acc.get("deepspeed_config") or {}
            stage = int(ds.get("zero_stage", 0))
            off_opt = ds.get("offload_optimizer_device", "none") not in (None, "none")
            off_par = ds.get("offload_param_device", "none") not in (None, "none")
    return Launch(gpus=cfg.gpus or procs, gpu_memory_gb=cfg.gpu_memory_gb, zero_stage=stage,
                  offload_optimizer=off_opt, offload_params=off_par)


def model_config(model: str):
    """The transformers config of `model` without weights or network: a local dir, a shipped model YAML
    whose `source` is this hub id, or the hub cache."""
    from transformers import AutoConfig, Qwen2_5_VLConfig
    from vtdata.shipped import shipped
    local = Path(model)
    if local.is_file() and local.suffix in (".yaml", ".yml"):
        return _from_yaml(local, Qwen2_5_VLConfig)
    if local.is_dir():
        return AutoConfig.from_pretrained(local)
    for y in sorted(shipped("models").glob("*.yaml")):
        if (yaml.safe_load(y.read_text()) or {}).get("source") == model:
            return _from_yaml(y, Qwen2_5_VLConfig)
    try:
        return AutoConfig.from_pretrained(model, local_files_only=True)
    except OSError:
        raise VtError(f"no config for model {model!r} here (not a directory, not the `source` of a "
                      "manifests/models/*.yaml, not in the hub cache)") from None


def _from_yaml(path: Path, cls):
    from vttrain.models.build import read_model_yaml
    spec = read_model_yaml(path)
    extra = {k: v for k, v in spec.items() if k not in ("text_config", "vision_config", "name", "source")}
    text = dict(spec["text_config"], **{k: extra[k] for k in ("tie_word_embeddings",) if k in extra})
    vision = dict(spec["vision_config"], out_hidden_size=text["hidden_size"])
    return cls(text_config=text, vision_config=vision, **extra)


def count_parameters(config) -> tuple[int, int]:
    """(all parameters, the largest decoder layer's) of the model built on the meta device."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForImageTextToText
    with init_empty_weights():
        model = AutoModelForImageTextToText.from_config(config)
    model.tie_weights()  # tied embeddings share one tensor (not done on the meta device by itself)
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    layers = [m for n, m in model.named_modules() if n.endswith(("layers.0", "blocks.0"))]
    largest = max((sum(p.numel() for p in m.parameters()) for m in layers), default=0)
    return total, largest


def estimate(cfg, config=None, launch: Launch | None = None) -> dict:
    """Per-GPU memory (GiB) of a run of `cfg`: each item, the two phases and the peak."""
    config = config or model_config(cfg.model)
    launch = launch or read_launch(cfg)
    text, vision = config.get_text_config(), config.vision_config
    n_params, layer_params = count_parameters(config)
    n, stage = launch.gpus, launch.zero_stage
    trainable = n_params if not cfg.use_peft else 0
    # weights / gradients / optimizer states per GPU (bytes per parameter: 2 + 2 + 12 under mixed precision)
    w, g, o = 2.0, 2.0, 12.0
    if stage == 0:  # vt's DDP path: fp32 weights (no separate master copy), fp32 gradients, Adam
        w, g, o = 4.0, 4.0, 8.0
    out = {
        "weights": n_params * w / (n if stage >= 3 else 1) / GIB,
        "gradients": trainable * g / (n if stage >= 2 else 1) / GIB,
        "optimizer": 0.0 if launch.offload_optimizer else trainable * o / (n if stage >= 1 else 1) / GIB,
    }
    if launch.offload_params:
        out["weights"] = 0.0
    if stage >= 3:
        out["gathered layers"] = 2 * layer_params * 2 / GIB  # the live layer and the prefetched one, bf16
    if cfg.beta:
        out["reference model"] = n_params * (2.0 if stage else 4.0) / (n if stage >= 3 else 1) / GIB
    seq = cfg.max_completion_length + (cfg.max_prompt_length or 0)
    tokens = cfg.per_device_train_batch_size * seq
    img = cfg.per_device_train_batch_size * min(seq, IMAGE_TOKENS) * vision.spatial_merge_size ** 2
    h, f, L = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    hv, fv, Lv = vision.hidden_size, vision.intermediate_size, vision.depth
    layer, layer_v = tokens * (10 * h + 3 * f) * 2, img * (10 * hv + 3 * fv) * 2
    if cfg.gradient_checkpointing:
        act = L * tokens * h * 2 + layer + Lv * img * hv * 2 + layer_v
    else:
        act = L * layer + Lv * layer_v
    out["activations"] = act / GIB
    out["logits"] = cfg.per_device_train_batch_size * cfg.max_completion_length * text.vocab_size * 6 / GIB
    vllm_awake = vllm_train = 0.0
    if cfg.use_vllm and cfg.vllm_mode == "colocate":
        vllm_awake = cfg.vllm_gpu_memory_utilization * launch.gpu_memory_gb * 1e9 / GIB
        vllm_train = min(SLEEPING_VLLM_GIB, vllm_awake) if cfg.vllm_enable_sleep_mode else vllm_awake
    out["vllm (generating)"] = vllm_awake
    out["vllm (while training)"] = vllm_train
    state = out["weights"] + out["gradients"] + out["optimizer"] + out.get("gathered layers", 0) \
        + out.get("reference model", 0)
    generation = state + vllm_awake
    training = state + out["activations"] + out["logits"] + vllm_train
    peak = max(generation, training) * 1.1 + CONTEXT_GIB
    return {"items": out, "generation": generation, "training": training, "peak": peak,
            "capacity": launch.gpu_memory_gb * 1e9 / GIB, "parameters": n_params, "launch": launch}


def refusal(est: dict) -> str | None:
    """None when the estimate fits the GPU, else the one-line reason."""
    if est["peak"] <= est["capacity"]:
        return None
    items = dict(est["items"])
    items.pop("vllm (generating)" if est["training"] >= est["generation"] else "vllm (while training)")
    top = sorted(items.items(), key=lambda kv: -kv[1])[:2]
    launch = est["launch"]
    return (f"needs ~{est['peak']:.0f} GiB per GPU > {est['capacity']:.0f} GiB ({launch.gpus} x "
            f"{launch.gpu_memory_gb:g} GB, ZeRO stage {launch.zero_stage}); largest: "
            + ", ".join(f"{k} {v:.1f} GiB" for k, v in top))


def report(cfg, est: dict) -> str:
    """The dry-run's printout: the batch arithmetic and each memory item."""
    launch = est["launch"]
    mini = cfg.per_device_train_batch_size * launch.gpus * cfg.gradient_accumulation_steps
    gen = cfg.generation_batch_size or mini
    lines = [f"model {cfg.model}: {est['parameters'] / 1e9:.2f} B parameters",
             f"launch: {launch.gpus} GPU(s) x {launch.gpu_memory_gb:g} GB, "
             + (f"ZeRO stage {launch.zero_stage}" if launch.zero_stage else "DDP (no ZeRO)"),
             f"batch: {cfg.per_device_train_batch_size} per GPU x {launch.gpus} GPUs x {cfg.gradient_accumulation_steps} "
             f"accumulation = {mini} completions per optimiser step ({mini // cfg.num_generations} prompts x "
             f"{cfg.num_generations}); {gen} completions per rollout round = {gen // max(mini, 1)} optimiser steps",
             f"lengths: prompt <= {cfg.max_prompt_length}, trajectory <= {cfg.max_completion_length}; "
             f"vLLM {cfg.vllm_mode if cfg.use_vllm else 'off'}"
             + (f", sleep mode {'on' if cfg.vllm_enable_sleep_mode else 'off'}" if cfg.use_vllm else "")
             + f"; importance-sampling correction {'on' if cfg.vllm_importance_sampling_correction else 'off'}",
             "per-GPU memory estimate (GiB):"]
    lines += [f"  {k:<22} {v:8.1f}" for k, v in est["items"].items()]
    lines += [f"  {'generation phase':<22} {est['generation']:8.1f}",
              f"  {'training phase':<22} {est['training']:8.1f}",
              f"  {'peak (+10 %, context)':<22} {est['peak']:8.1f} of {est['capacity']:.1f}"]
    if gen % max(cfg.per_device_train_batch_size * launch.gpus, 1):
        lines.append(f"warning: generation_batch_size {gen} is not a multiple of per-GPU batch x GPUs")
    return "\n".join(lines)


def dry_run(cfg, echo=print) -> dict:
    """Print the recipe's arithmetic and the estimate; a VtError with the one-line reason when it cannot fit."""
    est = estimate(cfg)
    echo(report(cfg, est))
    reason = refusal(est)
    if reason:
        raise VtError(f"this config cannot fit: {reason}")
    echo("fits: yes")
    return est
