"""`VtTrainConfig`: TRL's `GRPOConfig` plus vt's fields, one dataclass; `vt train`'s YAML keys and
`--flags` are its fields (HfArgumentParser). Also the config's way in (`parse_config`: YAML + flags, paths
resolved) and out (`write_config`: the resolved config of a run, `options_help`). Importing this module imports TRL and so torch: `vttrain.grpo.train`
imports it inside functions, so `vt --help` stays quick. Checkpoints pickle the config
(training_args.bin): the class must stay importable as `vttrain.grpo.config.VtTrainConfig`.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainerCallback
from trl import GRPOConfig

from vtdata import __version__
from vtdata.console import VtError, require
from vtdata.safeload import load_yaml
from vtdata.sources import resolve_path

CONFIG_FILE = "vt_train_config.yaml"  # the resolved config of a run, in output_dir and final/


@dataclass
class VtTrainConfig(GRPOConfig):
    """TRL's GRPOConfig plus vt's fields (each field's `help` says what it means; `vt train --options`)."""

    gradient_checkpointing: bool | None = field(default=None, metadata={"help": (
        'Recompute activations in the backward pass to save memory (TRL defaults it on: about a fifth slower). '
        'Unset: on with a GPU, off on CPU, where memory is not what limits the models vt trains there.')})
    data_dir: str | None = field(default=None, metadata={"help": (
        'Built or curated dataset directory (DIR/data/{split}-*.parquet; `vt build-data`, `vt curate`).')})
    split: str = field(default='train', metadata={"help": 'Split of data_dir to train on.'})
    max_samples: int | None = field(default=None, metadata={"help": (
        'Use only the first N rows (after rejections); None = all.')})
    model: str | None = field(default=None, metadata={"help": (
        'Policy: a checkpoint dir (`vt init-model tiny OUT`) or a hub id (Qwen/Qwen2.5-VL-7B-Instruct).')})
    judge: str = field(default='auto', metadata={"help": (
        'Accuracy judge spec (vtdata.judge.make_judge): auto | rule:<name> | openai:<model>.')})
    judge_base_url: str | None = field(default=None, metadata={"help": (
        'Base URL(s) of an OpenAI-compatible judge server (comma-separated).')})
    judge_api_key_env: str | None = field(default=None, metadata={"help": (
        'Environment variable holding the judge API key (never written anywhere).')})
    judge_scope: str = field(default='open', metadata={"help": (
        'open: an LLM judge judges `open` items, rules the rest | all: the LLM judges every item (the paper).')})
    judge_input: str = field(default='vt', metadata={"help": (
        "What the accuracy judge is given: vt (the final turn's <answer>, \\boxed{} unwrapped; no tag = 0 without "
        "a call; a VQA-normalised exact match = 1 without a call; the bare question; vt's note in the judge "
        "prompt) | release (the release: all turns joined, what follows the last <answer> or the whole text, "
        "the whole user turn as the question, the judge prompt as is, every item sent to the LLM, max_tokens "
        "16384; needs an openai: judge with judge_scope all).")})
    judge_concurrency: int | None = field(default=None, metadata={"help": (
        'Judge requests in flight over the whole run (openai judges): each of the WORLD_SIZE processes gets '
        'its share, rounded up (None = the judge default per process).')})
    db: str | None = field(default=None, metadata={"help": (
        'DuckDB file for the judge cache (default: vt.duckdb beside data_dir; openai judges only, rank 0).')})
    penalty_mode: str = field(default='paper', metadata={"help": (
        "Balanced penalty: paper (Eq. 5) | released (the released code's rule) | none | always (every resize "
        'pays: the Fig. 3a ablation).')})
    theta: float = field(default=0.2, metadata={"help": 'Threshold θ on r = C_direct / (C_direct + C_high).'})
    penalty: float = field(default=0.1, metadata={"help": 'Penalty size (subtracted from the reward).'})
    format_weight: float = field(default=0.5, metadata={"help": (
        'Weight of the format reward (1 when every turn is well-formed).')})
    format_rule: str = field(default='strict', metadata={"help": (
        'When a turn is well-formed: strict (only whitespace outside the tags, a valid tool call) | release '
        "(the released reward's looser rule; vtdata.protocol).")})
    turn2_bytes: str = field(default='release', metadata={"help": (
        "How the tool turn follows the model's turn: release (the release's bytes: `<|im_start|>user` straight "
        "after the model's `<|im_end|>`) | chatml (a newline between, as a stock ChatML template; vt before "
        'issue 21).')})
    tool_call_parse: str = field(default='strict', metadata={"help": (
        'Which tool calls fire the tool: strict (valid JSON, name resize_image, arguments exactly {"action": '
        '"resize"}; anything else gets the error turn) | release (the release: any closed <tool_call> holding one '
        'JSON object whose arguments.action is "resize", whatever its name or other arguments; an unclosed tag '
        'is a direct answer). resize only.')})
    max_turns: int = field(default=2, metadata={"help": (
        'Assistant turns per rollout (1 tool call + the answer = 2); a rollout still calling at the limit ends '
        'without an answer (scored 0, logged as unanswered_ratio).')})
    tools: str = field(default='resize', metadata={"help": (
        "Tools the policy may call (vtdata/protocol/tools.py): resize (VisionThink) | zoom (a region of the original at "
        "the high view's scale) | resize,zoom. YAML may give a list.")})
    penalty_cost: str = field(default='flat', metadata={"help": (
        "What a rollout that received extra pixels pays in the penalty: flat (the penalty, Eq. 5) | tokens "
        "(penalty x its extra visual tokens / the high view's: a zoom pays less than a resize).")})
    mask_over_turns: bool = field(default=False, metadata={"help": (
        'Rollouts that end without an answer (still calling at max_turns) contribute no loss and leave the '
        'group baseline, instead of scoring 0.')})
    dynamic_sampling: bool = field(default=False, metadata={"help": (
        'Drop zero-reward-variance groups from the loss (their share is always logged).')})
    max_refill_rounds: int = field(default=0, metadata={"help": (
        'With dynamic_sampling: extra generation rounds per step that replace dropped groups with informative'
        " ones (the release's rejection sampling); 0 = drop without refill. Logged: refill_rounds, "
        'informative_share.')})
    system_prompt: str = field(default='agent_system', metadata={"help": (
        'System prompt: shipped name or file path (vtdata/prompts).')})
    user_prompt: str = field(default='agent_user', metadata={"help": (
        'User prompt template with {question}: shipped name or file path.')})
    tool_ok_prompt: str = field(default='tool_ok', metadata={"help": (
        'Instruction after the high-res image in the tool turn.')})
    tool_error_prompt: str = field(default='tool_error', metadata={"help": 'Instruction after a tool error.'})
    max_turn_tokens: int | None = field(default=None, metadata={"help": (
        "Most tokens the policy generates in one turn (None = max_completion_length, TRL's default); the "
        'trajectory as a whole is bounded by max_completion_length.')})
    max_prompt_length: int | None = field(default=None, metadata={"help": (
        'Reject (never truncate) rows whose turn-1 prompt, image tokens included, is longer; None = the '
        "model's context minus max_completion_length.")})
    min_answer_tokens: int = field(default=16, metadata={"help": (
        'Reject rows whose high-res tool turn leaves fewer than this many completion tokens.')})
    use_peft: bool = field(default=False, metadata={"help": (
        'Train a LoRA adapter (peft) instead of all weights; the final model is merged.')})
    lora_r: int = field(default=16, metadata={"help": 'LoRA rank.'})
    lora_alpha: int = field(default=32, metadata={"help": 'LoRA alpha.'})
    lora_dropout: float = field(default=0.05, metadata={"help": 'LoRA dropout.'})
    lora_target_modules: str = field(default='q_proj,k_proj,v_proj,o_proj', metadata={"help": (
        'Comma-separated module names LoRA wraps.')})
    log_rollouts: bool = field(default=True, metadata={"help": (
        'Write every rollout (turns, score, penalty, reward) to output_dir/rollouts.jsonl.')})
    torch_threads: int | None = field(default=None, metadata={"help": (
        "torch CPU threads (None = torch's default, one per core); on a small shared CPU one thread can be "
        'several times faster than two.')})
    accelerate_config: str | None = field(default=None, metadata={"help": (
        'The accelerate config the run is launched with (manifests/accelerate/zero3.yaml); `vt train --dry-run` '
        'reads its ZeRO stage, offloads and process count.')})
    gpus: int | None = field(default=None, metadata={"help": (
        "GPUs of the whole run (all nodes) for `--dry-run`'s estimate; None = accelerate_config's num_processes.")})
    gpu_memory_gb: float = field(default=80.0, metadata={"help": 'Memory of each GPU (GB) for `--dry-run`.'})
    resume: bool = field(default=False, metadata={"help": (
        'Continue from the latest checkpoint in output_dir (same step count and data position).')})

    def __post_init__(self):
        check_values(self)  # before TRL's own checks and before any work: one line, never a traceback later
        if self.gradient_checkpointing is None:
            self.gradient_checkpointing = not self.use_cpu and torch.cuda.is_available()
        super().__post_init__()
        from vtdata.judge import judge_options
        from vtdata import protocol
        from vtdata.protocol import FORMAT_RULES
        from vtdata.protocol.tools import parse_call, selection
        from vttrain.grpo.reward import check_cost, check_mode
        check_mode(self.penalty_mode)
        check_cost(self.penalty_cost)
        selection(self.tools)
        parse_call("", self.tools, self.tool_call_parse)  # a VtError for an unknown rule or release with zoom
        if self.format_rule not in FORMAT_RULES:
            raise VtError(f"format_rule must be one of {', '.join(FORMAT_RULES)}; got {self.format_rule!r}")
        protocol.chat_template(self.turn2_bytes)
        if self.max_turns < 1:
            raise VtError("max_turns must be >= 1")
        judge_options(self.judge, self.judge_base_url, self.judge_api_key_env, self.judge_scope)
        if self.judge_input not in ("vt", "release"):
            raise VtError(f"judge_input must be vt or release; got {self.judge_input!r}")
        if self.judge_input == "release" and not (self.judge.startswith("openai:") and self.judge_scope == "all"):
            raise VtError("judge_input: release needs an LLM judge on every item (judge: openai:<model>, judge_scope: all)")
        if self.max_refill_rounds < 0:
            raise VtError("max_refill_rounds must be >= 0")
        if not 0 <= self.theta <= 1:
            raise VtError("theta must be in [0, 1]")
        if self.num_generations is None or self.num_generations < 2:
            raise VtError("num_generations must be >= 2 (GRPO needs a group)")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise VtError(f"torch_threads must be >= 1 (or unset for torch's default), got {self.torch_threads}")
        if self.max_samples is not None and self.max_samples < 1:
            raise VtError(f"max_samples must be >= 1 (or unset for all rows), got {self.max_samples}")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_values(cfg) -> None:
    """Values that cannot mean anything, refused in one line before any work: non-finite or negative
    weights (a NaN beta trains every weight to NaN and still "saves the trained model"), a learning rate
    that is not a finite positive number, a temperature <= 0, counts below 1, max_steps 0 or below -1
    (-1 = train by epochs, HF's default)."""
    for name in ("beta", "penalty", "format_weight", "theta", "lora_dropout", "weight_decay", "max_grad_norm",
                 "gpu_memory_gb", "num_train_epochs", "warmup_ratio"):
        v = getattr(cfg, name, None)
        if v is not None and (not _finite(v) or v < 0):
            raise VtError(f"{name} must be a finite number >= 0, got {v!r}")
    if not _finite(cfg.learning_rate) or cfg.learning_rate <= 0:
        raise VtError(f"learning_rate must be a finite number > 0, got {cfg.learning_rate!r}")
    if not _finite(cfg.temperature) or cfg.temperature <= 0:
        raise VtError(f"temperature must be a finite number > 0 (sampling; GRPO needs varied rollouts), "
                      f"got {cfg.temperature!r}")
    for name in ("top_p",):
        v = getattr(cfg, name, None)
        if v is not None and (not _finite(v) or not 0 < v <= 1):
            raise VtError(f"{name} must be in (0, 1], got {v!r}")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length",
                 "max_turns", "lora_r", "lora_alpha"):
        v = getattr(cfg, name, None)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise VtError(f"{name} must be an integer >= 1, got {v!r}")
    for name in ("max_turn_tokens", "max_prompt_length", "num_generations", "judge_concurrency", "gpus"):
        v = getattr(cfg, name, None)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise VtError(f"{name} must be an integer >= 1 (or unset), got {v!r}")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise VtError(f"max_steps must be >= 1 (or -1: train by num_train_epochs), got {cfg.max_steps}")
    if cfg.min_answer_tokens < 0:
        raise VtError(f"min_answer_tokens must be >= 0, got {cfg.min_answer_tokens}")


# A train YAML's paths are relative to the YAML's directory, as a data manifest's are; flags are relative to
# the current directory. Both end absolute in the config (and in the vt_train_config.yaml dump).
PATH_KEYS = ("data_dir", "output_dir", "db", "accelerate_config")
# a file or directory beside the YAML, else as written: a hub id (model) or a shipped prompt name
PATH_OR_NAME_KEYS = ("model", "system_prompt", "user_prompt", "tool_ok_prompt", "tool_error_prompt")


def resolve_paths(values: dict, base: Path) -> dict:
    """`values` with PATH_KEYS absolute (relative to `base`) and PATH_OR_NAME_KEYS absolute when they name
    something that exists there (else as written: a hub id, a shipped prompt name)."""
    out = dict(values)
    for k in PATH_KEYS:
        if isinstance(out.get(k), str) and out[k]:
            out[k] = os.path.abspath(resolve_path(out[k], base))
    for k in PATH_OR_NAME_KEYS:
        if isinstance(out.get(k), str) and out[k]:
            p = resolve_path(out[k], base)
            if p.exists():
                out[k] = os.path.abspath(p)
    return out


def parse_config(config_file: str | os.PathLike | None, overrides: list[str], dry_run: bool = False):
    """YAML file + `--key value` overrides -> VtTrainConfig. Unknown keys are a user error. `dry_run`: the
    precision flags are checked against the GPUs the config names, not this machine's (set back after)."""
    cls = VtTrainConfig
    values = {}
    if config_file is not None:
        from vtdata.shipped import find  # a shipped train config by name (`train-demo.yaml`) from any directory
        p = find(config_file)
        values = load_yaml(p, "train config") or {}
        if not isinstance(values, dict):
            raise VtError(f"train config {p} must be a mapping of option: value")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise VtError(f"unknown train option(s) in {config_file}: {', '.join(unknown)} (see `vt train --options`)")
    if config_file is not None:
        values = resolve_paths(values, Path(p).resolve().parent)  # the YAML found, also a shipped one
    parser = HfArgumentParser(cls)
    if "bf16" not in values and not torch.cuda.is_available():
        values["bf16"] = False  # GRPOConfig defaults to bf16, which a CPU-only machine refuses
    parser.set_defaults(**values)

    def refuse(message: str):  # argparse would print its usage and exit; one line instead
        raise VtError(f"bad train option: {message} (see `vt train --options`)")
    parser.error = refuse
    parser.allow_abbrev = False  # `--learning_rat` is a typo, not `--learning_rate`
    overrides = list(overrides)
    if any(a in ("-q", "--quiet") for a in overrides):  # the global flag written after the command: honoured
        from vtdata.console import set_verbosity
        set_verbosity(verbose=False, quiet=True)
        overrides = [a for a in overrides if a not in ("-q", "--quiet")]
    namespace, rest = parser.parse_known_args(args=overrides)
    if rest:
        raise VtError(f"unknown train option(s): {' '.join(rest)} (see `vt train --options`)")
    values = resolve_paths(vars(namespace), Path.cwd())  # flags: relative to the current dir
    precision = {k: values[k] for k in ("bf16", "fp16")} if dry_run and not torch.cuda.is_available() else {}
    values.update(dict.fromkeys(precision, False))
    from vtdata.judge.spec import KEY_CHECK
    token = KEY_CHECK.set(not dry_run)  # a dry run calls no judge: it needs no key
    try:
        cfg = cls(**values)  # value checks: VtTrainConfig.__post_init__
        for k, v in precision.items():
            setattr(cfg, k, v)
        return cfg
    except (ValueError, TypeError) as err:
        raise VtError(f"bad train config: {str(err).splitlines()[0]}") from None
    finally:
        KEY_CHECK.reset(token)


def validate(cfg) -> None:
    """What a run needs beyond valid values: the data and the model (a YAML may leave them to flags), and
    the optional packages the config asks for."""
    if not cfg.data_dir:
        raise VtError("train config needs data_dir (a `vt build-data` or `vt curate` output; --data_dir DIR)")
    if not cfg.model:
        raise VtError("train config needs model (e.g. a `vt init-model tiny OUT` directory; --model DIR)")
    check_extras(cfg)


def check_extras(cfg) -> None:
    """Optional packages the config asks for, as one-line errors naming the extra (not a traceback later)."""
    if cfg.use_vllm:
        require("vllm", "use_vllm: true (never needed on CPU)", "vllm")
    report_to = [cfg.report_to] if isinstance(cfg.report_to, str) else list(cfg.report_to or [])
    for name in ("tensorboard", "wandb"):
        if name in report_to:
            require(name, f"report_to: {name}", name)
    if cfg.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        require("deepspeed", "DeepSpeed (an accelerate ZeRO config or `deepspeed:`)", "deepspeed")


DERIVED = {"generation_batch_size", "logging_dir"}  # set from other fields; giving them back is refused or moot


def write_config(cfg, path: Path) -> Path:
    """The resolved config (YAML + flags + defaults) as YAML; `vt train path` reruns it."""
    names = {f.name for f in dataclasses.fields(cfg) if f.init} - DERIVED
    from vtdata.console import redact  # URL credentials and tokens never reach the run directory
    values = {k: redact(v) for k, v in cfg.to_dict().items() if k in names and not k.startswith("_")}
    path.write_text("# the resolved config of this run (vt train CONFIG + flags + defaults)\n"
                    + yaml.safe_dump(values, sort_keys=True, default_flow_style=None))
    return path


def redacted(args):
    """A copy of the run's config with URL credentials and query tokens redacted from every text field: what a
    run directory stores (the live config keeps them: the judge client needs its URL)."""
    import copy
    from vtdata.console import redact
    out = copy.copy(args)
    for f in dataclasses.fields(args):
        value = getattr(args, f.name, None)
        if isinstance(value, str) and redact(value) != value:
            object.__setattr__(out, f.name, redact(value))
    return out


def store_args(args, directory: Path) -> None:
    """Replace the training_args.bin transformers wrote in `directory` by the redacted config."""
    path = Path(directory) / "training_args.bin"
    if path.is_file():
        torch.save(redacted(args), path)


class RedactedArgs(TrainerCallback):
    """Every checkpoint's training_args.bin stores the redacted config (transformers pickles the live one)."""

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            store_args(args, Path(args.output_dir) / f"checkpoint-{state.global_step}")


def options_help() -> str:
    cls = VtTrainConfig
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        help_ = " ".join((f.metadata or {}).get("help", "").split())
        default = f.default if f.default is not dataclasses.MISSING else "(factory)"
        lines.append(f"--{f.name} (default {default!r}): {help_}")
    return "\n".join(lines)


def write_model_card(cfg, out: Path) -> Path:
    """`out/README.md`: base model, data, reward settings, vt version (replaces TRL's card)."""
    base = str(cfg.model)
    front = {"library_name": "transformers", "pipeline_tag": "image-text-to-text",
             "tags": ["vt", "visionthink", "grpo", "trl"], "base_model": base if not Path(base).exists() else None}
    front = {k: v for k, v in front.items() if v is not None}
    judge = cfg.judge
    text = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
            f"# VisionThink policy trained with vt {__version__}", "",
            f"GRPO (TRL) on `{cfg.data_dir}` (split `{cfg.split}`) from the base model `{base}`: the model sees a "
            "half-resolution image and may call `resize_image` for the original (arXiv 2507.13348).", "",
            "| setting | value |", "|---|---|",
            f"| base model | `{base}` |", f"| data | `{cfg.data_dir}` ({cfg.split}) |",
            f"| judge | `{judge}` |", f"| penalty mode | `{cfg.penalty_mode}` |",
            f"| theta / penalty / format weight | {cfg.theta} / {cfg.penalty} / {cfg.format_weight} |",
            f"| group size / max turns | {cfg.num_generations} / {cfg.max_turns} |",
            f"| learning rate / steps | {cfg.learning_rate} / {cfg.max_steps} |", f"| seed | {cfg.seed} |",
            f"| vt version | {__version__} |", "",
            f"The resolved training config is `{CONFIG_FILE}`. Load with "
            "`AutoModelForImageTextToText.from_pretrained(dir)` and `AutoProcessor.from_pretrained(dir)`, or "
            "`pipeline(\"image-text-to-text\", model=dir)` (the stock processor needs `torchvision`); without "
            "torchvision, `from vttrain.models.build import load; model, processor = load(dir)`."]
    path = out / "README.md"
    path.write_text("\n".join(text) + "\n")
    return path
