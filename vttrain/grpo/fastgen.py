"""Sampling with shared prefills (vttrain.grpo.trainer.VtGRPOTrainer._generate_single_turn; switch `shared_generation`).

- Turn 1: the G rollouts of a group share their prompt and image; each distinct (prompt ids, images) is prefilled
  once and its keys/values copied to the group's rows.
- Later turns: each row's conversation so far (prompt + the last turn's tokens) is already in the last call's
  cache; only what TRL appended (the last sampled token and the tool suffix with its image) is run on top, with
  the 3-D rope positions Qwen2.5-VL gives the whole conversation (get_rope_index on the full rows).
- Sampling as transformers' `generate` (its own logits processors for the generation config, one multinomial
  draw for every row per step, finished rows fed the pad token, at most max_new_tokens), so a fixed seed draws
  the same tokens up to the float summation order of the forwards (same attention over the same tokens at the
  same positions; cache columns that hold no token of a row are masked out).
`generate` returns None for what it does not handle (the caller then runs transformers' generate).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# logits processors that read only the scores (not the ids so far): the ones a sampling config of vt builds
SCORE_ONLY = {"SuppressTokensLogitsProcessor", "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper",
              "MinPLogitsWarper"}


@dataclass
class Held:
    """What one call leaves in its cache: per row, the tokens its cache columns hold (in order), a mask of the
    columns that hold them, and the image pixel chunks among those tokens."""
    cache: object
    mask: torch.Tensor
    ids: list
    images: list


def sampler(model, generation_config, batch: int, device):
    """(logits processors, eos ids tensor, pad id, max new tokens) as transformers' generate builds them for
    `generation_config`, or None when it would do more than score-only processing and multinomial sampling."""
    gc, extra = model._prepare_generation_config(generation_config)
    if extra or not gc.do_sample or (gc.num_beams or 1) != 1 or (gc.num_return_sequences or 1) != 1 \
            or not gc.max_new_tokens or gc.stop_strings or gc.max_time or gc.min_new_tokens or gc.min_length:
        return None
    model._prepare_special_tokens(gc, True, device=device, batch_size=batch)
    procs = model._get_logits_processor(generation_config=gc, input_ids_seq_length=1,
                                        encoder_input_ids=torch.zeros(batch, 1, dtype=torch.long, device=device),
                                        device=device, model_kwargs={})
    if any(type(p).__name__ not in SCORE_ONLY for p in procs) or gc._eos_token_tensor is None \
            or gc._pad_token_tensor is None:
        return None
    return procs, gc._eos_token_tensor.view(-1), int(gc._pad_token_tensor), int(gc.max_new_tokens)


def _row_images(prompt_ids, fields, start_id):
    """Per row, its images' pixel chunks (rows' images in order, as TRL concatenates them) and their grids."""
    n = [sum(1 for t in ids if t == start_id) for ids in prompt_ids]
    if not sum(n):
        return [[] for _ in prompt_ids], [[] for _ in prompt_ids]
    pv, grid = fields.get("pixel_values"), fields.get("image_grid_thw")
    if pv is None or grid is None or grid.size(0) != sum(n) or pv.size(0) != int(grid.prod(-1).sum()):
        return None
    chunks = pv.split(grid.prod(-1).tolist())
    out, grids, k = [], [], 0
    for c in n:
        out.append(list(chunks[k:k + c]))
        grids.append(list(grid[k:k + c]))
        k += c
    return out, grids


def _same_images(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x is y or (x.shape == y.shape and torch.equal(x, y)) for x, y in zip(a, b))


def _sources(prompt_ids, images, held: Held | None):
    """For each row: the held row its conversation continues (None on turn 1), or None when one does not."""
    if held is None:
        return [None] * len(prompt_ids)
    out = []
    for ids, imgs in zip(prompt_ids, images):
        src = None
        for j, (h, h_imgs) in enumerate(zip(held.ids, held.images)):
            if len(h) <= len(ids) and ids[:len(h)] == h and _same_images(imgs[:len(h_imgs)], h_imgs):
                src = j
                break
        if src is None:
            return None
        out.append(src)
    return out


def _distinct(prompt_ids, images, sources):
    """(the first row of each distinct (source, ids, images), each row's index among them)."""
    first, inv = [], []
    for i, (ids, imgs, s) in enumerate(zip(prompt_ids, images, sources)):
        for u, f in enumerate(first):
            if sources[f] == s and prompt_ids[f] == ids and _same_images(images[f], imgs):
                inv.append(u)
                break
        else:
            inv.append(len(first))
            first.append(i)
    return first, inv


def _left_pad(rows: list, pad: int, device):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, device=device)
            mask[i, width - len(r):] = 1
    return ids, mask


def _prefill(model, rows, images, grids, sources, held, pad, image_pad, device):
    """Run each row's new tokens (after what its held source holds) on top of that source's cache. Returns
    (cache, column mask, last-position logits, next rope position) for the rows."""
    from transformers import DynamicCache
    inner = model.model
    start = [len(held.ids[s]) if s is not None else 0 for s in sources]
    n_old = [len(held.images[s]) if s is not None else 0 for s in sources]
    new = [r[k:] for r, k in zip(rows, start)]
    if any(not x for x in new):
        return None
    full, full_mask = _left_pad(rows, pad, device)
    all_grids = [g for gs in grids for g in gs]
    grid = torch.stack(all_grids) if all_grids else None
    if grid is not None:
        pos, _ = inner.get_rope_index(full, mm_token_type_ids=(full == image_pad).long(), image_grid_thw=grid,
                                      attention_mask=full_mask)
    else:
        pos = (full_mask.cumsum(-1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)
    block, block_mask = _left_pad(new, pad, device)
    W = block.size(1)
    block_pos = pos[:, :, -W:].clone()
    if held is not None:
        idx = torch.tensor(sources, device=device)
        held.cache.reorder_cache(idx)
        cache, mask = held.cache, torch.cat([held.mask[idx], block_mask], 1)
    else:
        cache, mask = DynamicCache(config=model.config), block_mask
    new_imgs = [c for imgs, k in zip(images, n_old) for c in imgs[k:]]
    new_grids = [g for gs, k in zip(grids, n_old) for g in gs[k:]]
    vision = {"pixel_values": torch.cat(new_imgs), "image_grid_thw": torch.stack(new_grids)} if new_imgs else {}
    out = model(input_ids=block, attention_mask=mask, position_ids=block_pos, cache=cache, use_cache=True,
                logits_to_keep=1, **vision)
    return cache, mask, out.logits[:, -1], block_pos[:, :, -1].max(0).values + 1


def generate(model, prompt_ids: list, fields: dict, sampling, held: Held | None, image_pad: int, start_id: int,
             record: list | None = None):
    """Sample completions for `prompt_ids` (TRL's lists, with `fields`' pixel_values / image_grid_thw in row
    order), reusing `held` (the last call's Held) when every row continues one of its rows. Returns
    (completion ids up to and including the first EOS, the Held of this call) or None. `record`: a list that
    gets each step's logits (tests)."""
    procs, eos, pad, max_new = sampling
    device = next(model.parameters()).device
    per_row = _row_images(prompt_ids, fields, start_id)
    if per_row is None:
        return None
    images, grids = per_row
    sources = _sources(prompt_ids, images, held)
    if sources is None:
        return None
    first, inv = _distinct(prompt_ids, images, sources)
    pre = _prefill(model, [prompt_ids[f] for f in first], [images[f] for f in first], [grids[f] for f in first],
                   [sources[f] for f in first], held, pad, image_pad, device)
    if pre is None:
        return None
    cache, mask, logits, next_pos = pre
    inv_t = torch.tensor(inv, device=device)
    if len(first) < len(prompt_ids):
        cache.reorder_cache(inv_t)
    mask, logits, next_pos = mask[inv_t], logits[inv_t], next_pos[inv_t]
    B = len(prompt_ids)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    tokens = []
    for step in range(max_new):
        if record is not None:
            record.append(logits.to(torch.float32))
        scores = procs(torch.stack(tokens, 1) if tokens else mask[:, -1:], logits.to(torch.float32))
        tok = torch.multinomial(torch.softmax(scores, -1), 1).squeeze(1)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        tokens.append(tok)
        done = done | torch.isin(tok, eos.to(device))
        if step == max_new - 1 or bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=device)], 1)
        pos = next_pos.view(1, B, 1).expand(3, B, 1)
        logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1]
        next_pos = next_pos + 1
    sampled = torch.stack(tokens, 1).tolist()
    eos_set = set(eos.tolist())
    completions = []
    for row in sampled:
        cut = next((i for i, t in enumerate(row) if t in eos_set), len(row) - 1)
        completions.append(row[:cut + 1])
    fed = len(tokens) - 1  # tokens run through the model after being sampled
    P = mask.size(1) - fed
    for b, c in enumerate(completions):
        mask[b, P + len(c):] = 0  # columns fed after the row ended hold no token of it
    held_ids = [list(prompt_ids[b]) + completions[b][:fed] for b in range(B)]
    return completions, Held(cache=cache, mask=mask, ids=held_ids, images=images)


def trainer_turn(trainer, prompt_ids, fields):
    """VtGRPOTrainer's generation of one turn through `generate` (None: use TRL's). A call with no Held state is a
    turn 1 (the trainer clears it before each batch); the Held state of each call is kept for the next."""
    from trl.models import unwrap_model_for_generation
    held, trainer._held = getattr(trainer, "_held", None), None
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not hasattr(model, "model") or not hasattr(model.model, "get_rope_index"):
        return None
    cfg = model.config
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                     generation_kwargs=trainer.generation_kwargs) as m, torch.no_grad():
        sampling = sampler(m, trainer.generation_config, len(prompt_ids), trainer.accelerator.device)
        if sampling is None:
            return None
        fields = {k: v.to(trainer.accelerator.device) for k, v in fields.items() if isinstance(v, torch.Tensor)}
        out = generate(m, prompt_ids, fields, sampling, held, cfg.image_token_id, cfg.vision_start_token_id)
    if out is None:
        return None
    trainer._held = out[1]
    return out[0], None
