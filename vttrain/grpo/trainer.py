"""`VtGRPOTrainer`: TRL's GRPOTrainer plus the VisionThink group penalty, dynamic sampling and metrics.

TRL SURFACE: everything vt relies on beyond TRL's public constructor and config (hence the `trl>=1.16,<1.17`
pin); check this list when moving TRL. Private methods overridden (each calls TRL's own first):
- `_calculate_rewards`: TRL returns the rewards GATHERED across processes (rows grouped by prompt, G consecutive
  rows per group, the layout its advantage code uses). The penalty column is filled here, on the whole group,
  so a group split over several GPUs gets the same penalty as on one.
- `_generate_and_score_completions`: the optional zero-variance-group filter (dynamic sampling): such groups
  leave the loss, and with `max_refill_rounds` > 0 more prompt groups are generated (calling TRL's own method
  again on fresh rows) until the batch holds as many informative groups as asked, as the release's "rejection
  sample" and DAPO do. TRL 1.16 has no such filter or hook.
- `_get_train_sampler`: with refill, TRL's RepeatSampler becomes vttrain.grpo.refill.EpochSampler (same order), whose
  `take` hands refills the epoch's next prompts; `_save_checkpoint` / `_load_from_checkpoint` store / read its log.
- `_tokenize_prompts`: hands TRL's tool loop tensors for image_grid_thw / pixel_values.
- `_generate_single_turn`: refuses a generated vision token (it would break the next forward); in one plain
  process samples through vttrain.grpo.fastgen (shared prefills, later turns on the last turn's cache); `_generate`
  clears fastgen's cache around each batch.
- `_compute_loss`: keeps inputs["tool_mask"] for the policy forward (below), then TRL's own.
- `_load_from_checkpoint` (transformers' Trainer): resumes Qwen2.5-VL weights through from_pretrained.
- `_get_per_token_logps_and_entropies`: vttrain.grpo.fastlogps.trainer_logps (reads its argument names): on CPU
  `trl.trainer.utils._use_triton` answers True for the call (the head projects the completion positions only,
  as on CUDA); length buckets; the head on the model's own tokens (tool_mask kept by `_generate`, `_compute_loss`).
- `_get_tool_suffix_ids`: cached by the tool messages' text and image sizes (fastpath.suffix_key).
- the vision tower's `forward`s (Qwen2.5-VL's PatchEmbed and VisionTransformer, per instance): fastpath.
Also read: `environment_factories`, `tools`, `_env_tools`, `_batch_environments` (`_tokenize_prompts`),
`generation_config`, `generation_kwargs`, `use_vllm`, `use_transformers_continuous_batching`, `model_wrapped`.
Private attributes and helpers read: `_metrics[mode]` (metric buffers), `environments` (one ResizeEnv per
rollout, `environment_factory`), `num_generations`, `num_generations_eval`, `reward_weights`,
`trl.trainer.utils.split_pixel_values_by_grid` / `unsplit_pixel_values_by_grid`; config fields set by
vttrain.grpo.train: `max_tool_calling_iterations`, `generation_kwargs`, `reward_weights`, `model_init_kwargs`.
vt's own settings are read from `self.args` (a VtTrainConfig). Public method overridden: `create_model_card`
(vt's card in the run dir instead of TRL's).
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather, gather_object
from trl import GRPOTrainer

from vtdata import console, protocol
from vttrain.grpo import fastgen
from vttrain.grpo import fastlogps
from vttrain.models import fastpath
from vttrain.grpo.refill import _cat, _masked, _take
from vttrain.grpo.reward import Rollout, batch_penalties

ACC, FMT, PEN = 0, 1, 2  # reward function columns (weights 1, format_weight, 1)


def assistant_turns(messages: list[dict]) -> list[str]:
    """Raw texts of the assistant turns of one completion (TRL's message list)."""
    out = []
    for m in messages:
        if m.get("role") == "assistant":
            c = m.get("content")
            out.append(c if isinstance(c, str) else "".join(p.get("text", "") for p in c or []))
    return out


def make_reward_funcs(judge, format_rule: str = "strict", tools: tuple = ("resize",), judge_input: str = "vt",
                      user_prompt: str = "agent_user"):
    """The per-process reward functions: accuracy (the judge), format, penalty placeholder.

    judge_input vt: the final turn's `<answer>` (its `\\boxed{}` unwrapped) against the bare question;
    release: every turn joined by a space, what follows the last `<answer>` (the whole text without one),
    against the whole user turn (instruction + question), as the release's reward did."""
    from vtdata.judge import JudgeItem
    release = judge_input == "release"

    def accuracy(prompts, completions, question, answers, answer_type=None, choices=None, log_metric=None,
                 **_):
        items = []
        for i, c in enumerate(completions):
            turns = assistant_turns(c)
            items.append(JudgeItem(question=protocol.user_text(question[i], user_prompt) if release else question[i],
                                   answers=list(answers[i] or []), release=release,
                                   response=" ".join(turns) if release else (turns[-1] if turns else ""),
                                   answer_type=(answer_type[i] if answer_type else None) or "open",
                                   choices=list(choices[i]) if choices and choices[i] is not None else None))
        t0 = time.perf_counter()
        verdicts = judge.judge(items)
        elapsed = time.perf_counter() - t0
        n = max(len(verdicts), 1)
        if log_metric:
            log_metric("judge_cache_hit_rate", sum(v.cached for v in verdicts) / n)
            log_metric("judge_latency_s", sum(v.latency_s for v in verdicts) / n)
            log_metric("judge_batch_s", elapsed)
            log_metric("judge_error_share", sum(v.status != "ok" for v in verdicts) / n)
        return [v.score if v.status == "ok" else None for v in verdicts]

    def format(completions, **_):  # noqa: A001 - the reward's name in TRL's logs
        return [0.0 if protocol.check_format(assistant_turns(c), format_rule, tools) else 1.0 for c in completions]

    def penalty(completions, **_):
        """Placeholder column: VtGRPOTrainer._calculate_rewards fills it after the cross-process gather."""
        return [0.0] * len(completions)

    return [accuracy, format, penalty]


class VtGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, judge=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.judge = judge  # the accuracy reward's judge (make_reward_funcs); closed by whoever made it
        vt = self.args
        tok = self.processing_class.tokenizer
        self._pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
        from vttrain.grpo.env import vision_token_ids
        self._vision_ids = torch.tensor(vision_token_ids(tok))
        self._zero_var_rows = None
        self._over_rows = None  # rollouts that ended without an answer (mask_over_turns)
        self.run_dir = Path(self.args.output_dir)
        per_process = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if vt.dynamic_sampling and vt.max_refill_rounds > 0 and per_process % self.num_generations:
            from vtdata.console import VtError
            raise VtError(f"max_refill_rounds needs whole groups per process: per_device_train_batch_size x "
                          f"steps_per_generation ({per_process}) must be a multiple of num_generations "
                          f"({self.num_generations})")
        self._install_fast_vision()

    def create_model_card(self, *args, **kwargs):
        """vt's card (base model, data, reward settings) in the run dir, where TRL writes its stock one at
        every checkpoint ("fine-tuned version of [None]")."""
        if self.accelerator.is_main_process:
            from vttrain.grpo.config import write_model_card
            write_model_card(self.args, Path(self.args.output_dir))

    # -- rollout facts ----------------------------------------------------------------------------
    def _facts(self, inputs, completions, completion_ids_list) -> torch.Tensor:
        """Per local rollout: used_high (extra pixels reached the model), attempted, dropped, low tokens, high
        tokens, use_tool (curated sets: 1 needs high-res, 0 low-res suffices, -1 unknown), unanswered (the last
        turn still calls a tool: cut at the turn limit), extra visual tokens (image pads in the completion),
        zoomed, resized (successful calls of each tool)."""
        from vttrain.models.build import visual_tokens
        rows = []
        for i, (c, ids) in enumerate(zip(completions, completion_ids_list)):
            env = self.environments[i] if self.environments else None
            turns = assistant_turns(c)
            attempted = any("<tool_call>" in t for t in turns)
            extra = sum(1 for t in ids if t == self._pad_id)
            used_high = extra > 0
            dropped = bool(env is not None and env.ok > 0 and not used_high)
            x = inputs[i]
            low = visual_tokens(self.processing_class, (x["low_width"], x["low_height"]))
            high = visual_tokens(self.processing_class, (x["high_width"], x["high_height"]))
            use_tool = x.get("use_tool")
            unanswered = bool(turns) and "<tool_call>" in turns[-1]
            used = getattr(env, "used", None) or {}
            rows.append([float(used_high), float(attempted), float(dropped), float(low), float(high),
                         -1.0 if use_tool is None else float(bool(use_tool)), float(unanswered), float(extra),
                         float(used.get("zoom", 0) > 0), float(used.get("resize", 0) > 0)])
        return torch.tensor(rows, dtype=torch.float32, device=self.accelerator.device)

    @torch.no_grad()
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # gathered
        facts = gather(self._facts(inputs, completions, completion_ids_list))
        mode = "train" if self.model.training else "eval"
        G = self.num_generations if mode == "train" else self.num_generations_eval
        vt = self.args
        acc = rewards[:, ACC].tolist()
        fmt = rewards[:, FMT].tolist()
        rolls = [Rollout(score=None if math.isnan(a) else a, used_high=bool(f[0]), attempted=bool(f[1]),
                         format_ok=bool(fo >= 0.5), cost=f[7] / max(f[4], 1.0))
                 for a, f, fo in zip(acc, facts.tolist(), fmt)]
        pens = batch_penalties(rolls, G, mode=vt.penalty_mode, theta=vt.theta, penalty=vt.penalty,
                               cost=vt.penalty_cost)
        rewards[:, PEN] = -torch.tensor(pens, dtype=rewards.dtype, device=rewards.device)
        failed = torch.isnan(rewards[:, ACC])
        rewards[failed] = torch.nan  # a judge failure is unscorable, never wrong (advantage 0 in TRL)
        over = facts[:, 6] > 0
        self._over_rows = over
        if vt.mask_over_turns:
            rewards[over] = torch.nan  # out of the group baseline; their loss is masked in _generate_and_score_completions

        # zero-variance groups (no gradient signal); optionally filtered from the loss
        total = (rewards * self.reward_weights.to(rewards.device)).sum(dim=1).view(-1, G).tolist()
        spread = [[v for v in g if not math.isnan(v)] for g in total]  # judge failures left out
        zero = torch.tensor([len(g) < 2 or max(g) - min(g) < 1e-6 for g in spread], device=rewards.device)
        self._zero_var_rows = zero.repeat_interleave(G)
        sources = gather_object([str(x.get("source")) for x in inputs])
        self._log_metrics(mode, rolls, pens, facts, zero, sources)
        if vt.log_rollouts:
            self._write_rollouts(inputs, completions, rewards, rolls, pens, facts, G)
        return rewards

    def _log_metrics(self, mode: str, rolls: list, pens: list[float], facts: torch.Tensor, zero: torch.Tensor,
                     sources: list[str]) -> None:
        """The VisionThink metrics of one gathered batch into TRL's metric buffers (logged every step);
        `resize_ratio/<source>` for each data source in the batch (the report's per-source curves)."""
        m = self._metrics[mode]
        scored = [r for r in rolls if r.score is not None]
        direct = [r for r in scored if not r.used_high]
        resized = [r for r in scored if r.used_high]
        n = len(rolls)
        m["resize_ratio"].append(sum(r.used_high for r in rolls) / n)
        m["tool_call_ratio"].append(sum(r.attempted for r in rolls) / n)
        m["tool_dropped_ratio"].append(float(facts[:, 2].mean()))
        m["accuracy"].append(sum(r.score for r in scored) / len(scored) if scored else math.nan)
        m["accuracy_direct"].append(sum(r.score for r in direct) / len(direct) if direct else math.nan)
        m["accuracy_resized"].append(sum(r.score for r in resized) / len(resized) if resized else math.nan)
        m["penalty_share"].append(sum(p > 0 for p, r in zip(pens, rolls) if r.score is not None) / n)
        m["format_pass_rate"].append(sum(r.format_ok for r in rolls) / n)
        used = facts[:, 3] + facts[:, 0] * facts[:, 4]
        m["visual_tokens_per_sample"].append(float(used.mean()))
        m["visual_token_ratio"].append(float((used / facts[:, 4]).mean()))  # vs full-res direct answer
        for flag, key in ((1.0, "resize_ratio_needs_high"), (0.0, "resize_ratio_low_ok")):
            sel = facts[:, 5] == flag  # curated rows only (use_tool column)
            m[key].append(float(facts[sel, 0].mean()) if bool(sel.any()) else math.nan)
        for src in sorted(set(sources)):
            sel = torch.tensor([s == src for s in sources], device=facts.device)
            m[f"resize_ratio/{src}"].append(float(facts[sel, 0].mean()))
        m["zero_variance_share"].append(float(zero.float().mean()))
        m["unanswered_ratio"].append(float(facts[:, 6].mean()))
        if self._per_tool:  # per-tool rates (a resize-only run logs as before)
            m["zoom_ratio"].append(float(facts[:, 8].mean()))
            m["resize_tool_ratio"].append(float(facts[:, 9].mean()))
            m["extra_visual_tokens"].append(float(facts[:, 7].mean()))
        m["filtered_share"].append(float(zero.float().mean()) if self.args.dynamic_sampling else 0.0)

    def _write_rollouts(self, inputs, completions, rewards, rolls, pens, facts, group_size: int) -> None:
        """One JSON line per rollout in RUN/rollouts.jsonl (what was generated and how it was scored)."""
        rank = self.accelerator.process_index
        local = [{"id": x.get("id"), "rank": rank, "turns": assistant_turns(c)} for x, c in zip(inputs, completions)]
        everything = gather_object(local)
        if not self.accelerator.is_main_process:
            return
        step = self.state.global_step + 1
        with open(self.run_dir / "rollouts.jsonl", "a", encoding="utf-8") as f:
            for i, (x, r, p) in enumerate(zip(everything, rolls, pens)):
                total = float(rewards[i] @ self.reward_weights.to(rewards.device))
                f.write(json.dumps({"step": step, "group": i // group_size, "id": x["id"], "rank": x["rank"],
                                    "score": r.score, "format_ok": r.format_ok, "used_high": r.used_high,
                                    "attempted": r.attempted, "dropped": bool(facts[i, 2]), "penalty": p,
                                    **({"extra_visual_tokens": int(facts[i, 7]), "unanswered": bool(facts[i, 6])}
                                       if self._per_tool else {}),
                                    "reward": None if math.isnan(total) else total,
                                    "turns": [console.redact(t) for t in x["turns"]]}) + "\n")

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # transformers 5.x Trainer resumes with `model.load_state_dict(raw_checkpoint, strict=False)`, but
        # Qwen2.5-VL checkpoints are saved under legacy key names ("model.embed_tokens...") that only
        # `from_pretrained` maps onto the module names ("model.language_model.embed_tokens..."): most weights
        # would silently stay at their initial values (huggingface/transformers#43701; the fix PR #44366 was
        # closed unmerged). Load through from_pretrained instead, strictly.
        from vttrain.grpo.refill import load_log
        self._refill_replay = load_log(resume_from_checkpoint)  # the refill takes before the checkpoint
        if getattr(self, "_epoch_sampler", None) is not None:
            self._epoch_sampler.replay = self._refill_replay
        model = model if model is not None else self.model
        unwrapped = self.accelerator.unwrap_model(model)
        ckpt = Path(resume_from_checkpoint)
        has_full = (ckpt / "model.safetensors").exists() or (ckpt / "model.safetensors.index.json").exists()
        if self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(unwrapped, "peft_config") or not has_full:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        dtype = next(unwrapped.parameters()).dtype
        fresh = type(unwrapped).from_pretrained(str(ckpt), dtype=dtype)
        unwrapped.load_state_dict(fresh.state_dict(), strict=True)
        del fresh

    # -- speed: the same numbers with less work (vttrain.models.fastpath; tests turn each off to compare) -------------
    # the completion-only LM head on CPU; turn-1 prompts in one processor call when the batch shares one tool
    # schema; each distinct (prompt, image) rendered once; tool-suffix ids cached by (text, image size); each
    # distinct image processed once a step; the patch embedding as one matmul; the vision tower once per distinct
    # image; log-prob forwards in two length buckets, each distinct prompt prefix once in them (keys/values
    # copied); Qwen2.5-VL's rope index once per distinct row layout; generation with one prefill per distinct
    # prompt and later turns on top of the last turn's cache (fastgen); the LM head skips a tool result's tokens
    compact_head = batched_render = distinct_prompts = suffix_cache = image_cache = scored_only = True
    matmul_patch_embed = dedupe_vision = length_buckets = shared_prompts = memo_rope = shared_generation = True
    _tool_masks = None  # the tool_mask of the batch being scored (fastlogps.own_tokens)

    @property
    def _plain(self) -> bool:
        """One plain process: DDP/FSDP/DeepSpeed need the same forwards on every rank, through their wrapper."""
        return self.accelerator.num_processes == 1 and not (self.is_fsdp_enabled or self.is_deepspeed_enabled)

    def _install_fast_vision(self):
        for m in (self.model, getattr(self, "ref_model", None)):
            fastpath.install_fast_vision(m, self.matmul_patch_embed, self.dedupe_vision, self.memo_rope)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        trl_fn = super()._get_per_token_logps_and_entropies
        if args:
            return trl_fn(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        return fastlogps.trainer_logps(self, trl_fn, model, input_ids, attention_mask, logits_to_keep, **kwargs)

    def _compute_loss(self, model, inputs):
        self._tool_masks = inputs.get("tool_mask")
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._tool_masks = None

    def _get_tool_suffix_ids(self, tool_messages):
        if not self.suffix_cache:
            return super()._get_tool_suffix_ids(tool_messages)
        return fastpath.memo(self.__dict__.setdefault("_suffix_ids", {}), fastpath.suffix_key(tool_messages),
                             lambda: super(VtGRPOTrainer, self)._get_tool_suffix_ids(tool_messages))

    def _tokenize_prompts(self, prompts):
        names = set(self._batch_environments or ()) if self.environment_factories is not None else set()
        render = super()._tokenize_prompts
        if self.batched_render and len(names) == 1:
            # TRL renders environment prompts one by one (each with its environment's tools); with one schema
            # for the whole batch its own batched path (self.tools) gives the same ids and image fields at once.
            saved = self.environment_factories, self.tools
            self.environment_factories, self.tools = None, self._env_tools[names.pop()]
            try:
                prompt_ids, images, fields = (fastpath.dedupe_prompts(prompts, render) if self.distinct_prompts
                                              else render(prompts))
            finally:
                self.environment_factories, self.tools = saved
        elif self.distinct_prompts and self.environment_factories is None:
            prompt_ids, images, fields = fastpath.dedupe_prompts(prompts, render)
        else:
            prompt_ids, images, fields = render(prompts)
        # TRL 1.16 renders environment prompts one by one and merges the processor outputs as nested
        # lists for non-tensor fields (image_grid_thw); its tool loop then calls split_pixel_values_by_grid
        # on them when a turn brings no image (an error turn) and fails. Hand it tensors.
        for key in ("image_grid_thw", "pixel_values"):
            if key in fields and not isinstance(fields[key], torch.Tensor):
                fields[key] = torch.as_tensor(np.asarray(fields[key]))
        return prompt_ids, images, fields

    def _generate(self, prompts):
        self._held = None  # generation's cache between the turns of this batch (fastgen.trainer_turn)
        try:
            out = super()._generate(prompts)
        finally:
            self._held = None
        self._tool_masks = out[2]  # for this batch's reference / old-policy forwards (fastlogps.own_tokens)
        return out

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        out = fastgen.trainer_turn(self, prompt_ids, multimodal_fields) if self.shared_generation and self._plain \
            and not (self.use_vllm or self.use_transformers_continuous_batching) else None
        ids, logprobs = out or super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                             has_tool_images)
        # Generation suppresses vision tokens (vision_token_ids); a sampled one would not match any image
        # features and break the next forward, so stop here with a clear message if a backend ever emits one.
        vision = set(self._vision_ids.tolist())
        n_bad = sum(1 for seq in ids for t in seq if t in vision)
        if n_bad:
            raise RuntimeError(f"the policy generated {n_bad} vision token(s) although generation suppresses them; "
                               f"check generation_kwargs (suppress_tokens / logit_bias)")
        return ids, logprobs

    @property
    def _per_tool(self) -> bool:
        from vtdata.protocol.tools import DEFAULT, selection
        return selection(self.args.tools) != DEFAULT

    def _generate_and_score_completions(self, inputs):
        with fastpath.cached_image_processing(self.processing_class) if self.image_cache else nullcontext():
            out = self._generate_and_score(inputs)
        self._tool_masks = None
        return out

    def _generate_and_score(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        over = self.args.mask_over_turns and self._over_rows is not None and self.model.training
        if over and not self.args.dynamic_sampling:
            rank, n = self.accelerator.process_index, len(inputs)
            return _masked(out, (~self._over_rows[rank * n:(rank + 1) * n]).cpu())
        if not (self.args.dynamic_sampling and self._zero_var_rows is not None and self.model.training):
            return out
        keep = self._local_keep(len(inputs))
        if self.args.max_refill_rounds > 0:
            out, keep = self._refill(inputs, out, keep)
        return _masked(out, keep)

    # -- dynamic sampling with refill (the release's "rejection sample", DAPO's dynamic sampling) -----------
    def _local_keep(self, n: int) -> torch.Tensor:
        """This process's rows of the last scored batch: True = its group has reward variance."""
        rank = self.accelerator.process_index
        keep = ~self._zero_var_rows[rank * n:(rank + 1) * n]
        if self.args.mask_over_turns and self._over_rows is not None:
            keep = keep & ~self._over_rows[rank * n:(rank + 1) * n]
        return keep.cpu()

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        if not (self.args.dynamic_sampling and self.args.max_refill_rounds > 0):
            return sampler
        from vttrain.grpo.refill import EpochSampler
        self._epoch_sampler = EpochSampler.like(sampler)
        self._epoch_sampler.replay = getattr(self, "_refill_replay", [])
        return self._epoch_sampler

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        sampler = getattr(self, "_epoch_sampler", None)
        ckpt = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        if sampler is not None and ckpt.is_dir() and self.args.should_save:
            sampler.save(ckpt)

    def _refill_inputs(self, n: int, round_no: int) -> list[dict]:
        """n fresh rows (n / G prompts, each repeated G times, as TRL's sampler lays them out): the epoch's
        next prompts (vttrain.grpo.refill.EpochSampler, the release's order); past the epoch's end, drawn by a
        seed of (seed, step, round, process), the same on a resumed run."""
        import random
        G, k = self.num_generations, n // self.num_generations
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        sampler = getattr(self, "_epoch_sampler", None)
        idx = sampler.take(world * k)[rank * k:(rank + 1) * k] if sampler is not None else []
        rng = random.Random(f"{self.args.seed}:{self.state.global_step}:{round_no}:{rank}")
        idx += [rng.randrange(len(self.train_dataset)) for _ in range(k - len(idx))]
        return [self.train_dataset[i] for i in idx for _ in range(G)]

    def _refill(self, inputs, out: dict, keep: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """Generate more prompt groups until this process holds as many informative groups as it was given
        (every process runs the same number of rounds, at most max_refill_rounds). Returns the batch of
        the first informative groups; groups still missing at the cap are filled with the first round's
        uninformative ones, masked out of the loss (keep = False)."""
        from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid
        G, n = self.num_generations, len(inputs)
        want = n // G
        rounds = [(split_pixel_values_by_grid(out), keep)]
        have = int(keep[::G].sum())
        r = 0
        while r < self.args.max_refill_rounds:
            short = gather(torch.tensor([want - have], device=self.accelerator.device)).max().item()
            if short <= 0:
                break
            r += 1
            extra = super()._generate_and_score_completions(self._refill_inputs(n, r))
            k = self._local_keep(n)
            rounds.append((split_pixel_values_by_grid(extra), k))
            have += int(k[::G].sum())
        picks = [(i, g, True) for i, (_, k) in enumerate(rounds) for g in range(want) if k[g * G]][:want]
        picks += [(0, g, False) for g in range(want) if not rounds[0][1][g * G]][:want - len(picks)]
        parts = [_take(rounds[i][0], list(range(g * G, (g + 1) * G))) for i, g, _ in picks]
        merged = unsplit_pixel_values_by_grid(_cat(parts, self.processing_class.tokenizer.pad_token_id))
        new_keep = torch.tensor([ok for _, _, ok in picks for _ in range(G)])
        m = self._metrics["train"]
        m["refill_rounds"].append(float(r))
        m["informative_share"].append(float(gather(new_keep.float().mean().to(self.accelerator.device)).mean()))
        if r == self.args.max_refill_rounds and len([p for p in picks if p[2]]) < want and self.accelerator.is_main_process:
            from vtdata.console import info
            info(f"dynamic sampling: {want - sum(p[2] for p in picks)} of {want} groups still uninformative after "
                 f"{r} refill rounds (max_refill_rounds); they stay masked out of the loss")
        return merged, new_keep

