"""Same-maths speed-ups of the log-prob forwards of vt's GRPO step (used by vttrain.grpo.trainer.VtGRPOTrainer's
`_get_per_token_logps_and_entropies`; each can be switched off there; tests/test_train_speed.py checks them):
- `bucketed_logps` (`length_buckets`): rows of similar length run together, each bucket trimmed of the padding
  columns all its rows share (attention and positions ignore padding, so the scores are the same).
- `shared_prefix_logps` (`shared_prompts`): each distinct (prompt, prompt images) prefix runs once per group, its
  keys/values copied to the rows that share it.
- `label_mask` (`scored_only`; both functions, and `masked_labels` around TRL's own method): the LM head scores
  only the completion positions the loss reads (the model's own tokens: TRL's tool_mask); a tool result's tokens
  (its text and the image's visual tokens) get log-prob 0, and every loss, KL and metric of TRL multiplies them
  by tool_mask = 0.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from vttrain.models import fastpath


def trainer_logps(trainer, trl_fn, model, input_ids, attention_mask, logits_to_keep, **kwargs):
    """VtGRPOTrainer._get_per_token_logps_and_entropies: TRL's `trl_fn` (same signature, model first) with the
    trainer's switches: the compact head on CPU, length buckets, shared prompt prefixes (one plain process) and
    the head on the model's own tokens only (`scored_only`, from the batch's tool_mask: `trainer._tool_masks`)."""
    from vttrain.models.fastpath import compact_lm_head
    plain = trainer._plain
    label_mask = own_tokens(trainer._tool_masks, attention_mask, logits_to_keep) if trainer.scored_only else None
    if label_mask is not None:
        kwargs["label_mask"] = label_mask

    def fn(ids, mask, keep, label_mask=None, **kw):
        out = shared_prefix_logps(model, ids, mask, keep, autocast=trainer.accelerator.autocast,
                                  label_mask=label_mask, **kw) if trainer.shared_prompts and plain else None
        if out is not None:
            return out
        with masked_labels(model, label_mask):
            return trl_fn(model, ids, mask, keep, **kw)
    with compact_lm_head() if trainer.compact_head else nullcontext():
        out = bucketed_logps(fn, input_ids, attention_mask, logits_to_keep, **kwargs) \
            if trainer.length_buckets and plain else None
        return out if out is not None else fn(input_ids, attention_mask, logits_to_keep, **kwargs)


# -- the LM head on the model's own tokens only -----------------------------------------------------------------
def own_tokens(tool_masks, attention_mask, logits_to_keep: int) -> torch.Tensor | None:
    """(B, logits_to_keep) bool: the completion positions of the batch being scored that hold the model's own
    tokens, from TRL's tool_mask of this batch: the padded tensor `_compute_loss` reads, or the per-row lists
    `_generate` returned (the reference forward); None when there is none or a row does not fit it."""
    B, C = attention_mask.size(0), logits_to_keep
    if isinstance(tool_masks, torch.Tensor):
        return tool_masks.bool() if tuple(tool_masks.shape) == (B, C) else None
    if tool_masks is None or len(tool_masks) != B:
        return None
    out = torch.ones(B, C, dtype=torch.bool, device=attention_mask.device)
    for i, (m, n) in enumerate(zip(tool_masks, attention_mask[:, -C:].sum(1).tolist())):
        if len(m) > C or n not in (0, len(m)):  # not this batch's rows (0: masked out as truncated)
            return None
        out[i, :len(m)] = torch.as_tensor(m, dtype=torch.bool)
    return out


@contextmanager
def masked_labels(model, label_mask):
    """Around TRL's `_get_per_token_logps_and_entropies`: it labels every completion position and calls `model`
    on row chunks in order; each call's labels get -100 where `label_mask` (rows, completion columns) is 0.
    A forward pre-hook on `model` (the module TRL calls, wrapper or not), removed on exit."""
    if label_mask is None:
        yield
        return
    C, done = label_mask.size(1), [0]

    def hook(module, args, kwargs):
        labels = kwargs.get("labels")
        if labels is None:
            return None
        b = labels.size(0)
        m = label_mask[done[0]:done[0] + b]
        done[0] += b
        if m.size(0) != b or labels.size(1) < C:
            raise RuntimeError(f"label mask of {label_mask.size(0)} rows does not fit a forward of {b} more rows")
        kwargs["labels"] = torch.cat([labels[:, :-C], labels[:, -C:].masked_fill(~m.to(labels.device), -100)], 1)
        return args, kwargs
    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


# -- log-prob forwards in length buckets ------------------------------------------------------------------
def bucket_split(prompt_len: list[int], comp_len: list[int], max_buckets: int = 2, overhead: int = 0):
    """Rows sorted by total length cut into at most `max_buckets` contiguous buckets minimising the padded area
    (each bucket: rows x (longest prompt + longest completion)) plus `overhead` per extra forward."""
    order = sorted(range(len(prompt_len)), key=lambda i: (prompt_len[i] + comp_len[i], i))

    def cost(rows):
        return len(rows) * (max(prompt_len[i] for i in rows) + max(comp_len[i] for i in rows)) if rows else 0
    best = [order]
    best_cost = cost(order)
    if max_buckets >= 2:
        for cut in range(1, len(order)):
            c = cost(order[:cut]) + cost(order[cut:]) + overhead
            if c < best_cost:
                best, best_cost = [order[:cut], order[cut:]], c
    return best


def bucketed_logps(fn, input_ids, attention_mask, logits_to_keep, *, min_saving: float = 0.1, **kw):
    """Call `fn` (TRL's _get_per_token_logps_and_entropies, same signature) on length buckets of the rows, each
    trimmed of its shared padding columns, and put the results back in row order (trimmed completion columns:
    0, padding positions that every loss masks out). None when the batch is not one it handles."""
    B, L = input_ids.shape
    P = L - logits_to_keep
    extra = {k: v for k, v in kw.items() if v is not None}
    allowed = {"batch_size", "compute_entropy", "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images",
               "token_type_ids", "mm_token_type_ids", "label_mask"}
    if B < 4 or set(extra) - allowed or extra.get("compute_aux_loss"):
        return None
    pv, grid, num_images = extra.get("pixel_values"), extra.get("image_grid_thw"), extra.get("num_images")
    if pv is not None and (grid is None or num_images is None or grid.size(0) != sum(num_images)):
        return None
    am = attention_mask.bool()
    p_real = am[:, :P]
    c_real = am[:, P:]
    # prompts are left-padded, completions right-padded: real spans are [P - p_len, P) and [P, P + c_len)
    p_len = [int(x) for x in p_real.sum(1)]
    c_any = c_real.any(0)
    c_len = [int(r.nonzero().max()) + 1 if bool(r.any()) else 0 for r in c_real]
    if not bool(c_any.any()):
        return None
    buckets = bucket_split(p_len, c_len)
    full = B * (max(p_len) + max(c_len))
    if len(buckets) == 1 and full >= (1 - min_saving) * B * L:
        return None
    if len(buckets) > 1:
        area = sum(len(b) * (max(p_len[i] for i in b) + max(c_len[i] for i in b)) for b in buckets)
        if area > (1 - min_saving) * full:
            buckets = [list(range(B))]
    if pv is not None:
        rows = grid.prod(-1)
        per_img = pv.split(rows.tolist())
        starts = [0]
        for c in num_images:
            starts.append(starts[-1] + c)
    outs = []
    for rows_b in buckets:
        idx = torch.tensor(rows_b, device=input_ids.device)
        pw = max(p_len[i] for i in rows_b)
        cw = max(max(c_len[i] for i in rows_b), 1)
        cols = slice(P - pw, P + cw)
        args = dict(extra)
        for k in ("token_type_ids", "mm_token_type_ids"):
            if k in args:
                if args[k].shape[:2] != (B, L):
                    return None
                args[k] = args[k][idx][:, cols]
        if "label_mask" in args:
            args["label_mask"] = args["label_mask"][idx][:, :cw]
        if pv is not None:
            args["pixel_values"] = torch.cat([per_img[j] for i in rows_b for j in range(starts[i], starts[i + 1])]) \
                if any(num_images[i] for i in rows_b) else pv[:0]
            args["image_grid_thw"] = torch.cat([grid[starts[i]:starts[i + 1]] for i in rows_b])
            args["num_images"] = [num_images[i] for i in rows_b]
        lp, e, _ = fn(input_ids[idx][:, cols], attention_mask[idx][:, cols], cw, **args)
        outs.append((idx, cw, lp, e))
    order = torch.cat([idx for idx, *_ in outs])
    inv = torch.empty_like(order)
    inv[order] = torch.arange(B, device=order.device)
    all_lp = torch.cat([torch.nn.functional.pad(lp, (0, logits_to_keep - cw)) if logits_to_keep - cw else lp
                        for _, cw, lp, _ in outs])[inv]
    all_e = None
    if outs[0][3] is not None:
        all_e = torch.cat([torch.nn.functional.pad(e, (0, logits_to_keep - cw)) if logits_to_keep - cw else e
                           for _, cw, _, e in outs])[inv]
    return all_lp, all_e, None


# -- group-shared prompts in the log-prob forwards ------------------------------------------------------------
def shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, *, autocast=None, compute_entropy=False,
                        pixel_values=None, image_grid_thw=None, num_images=None, mm_token_type_ids=None,
                        batch_size=None, compute_aux_loss=False, label_mask=None, **rest):
    """TRL's per-token log-probs (and entropies) with each distinct (prompt, prompt images) prefix run once: the
    prompt minus its last token goes through the backbone once per distinct prefix, its keys/values are copied
    to the rows that share it, and the rest (the prompt's last token and the completion, with the tool images)
    runs on top with the same 3-D rope positions as the whole sequence (get_rope_index on the full rows).
    Same maths as one forward of the whole rows. `label_mask` (B, logits_to_keep; 0 = not scored): positions the
    LM head skips (log-prob and entropy 0). None when the batch or model is not one it handles."""
    from transformers import DynamicCache
    B, L = input_ids.shape
    C = logits_to_keep
    P = L - C
    inner = getattr(model, "model", None)
    if any(v is not None for v in rest.values()) or compute_aux_loss or P < 2 or B < 2 or inner is None \
            or not hasattr(inner, "get_rope_index") or mm_token_type_ids is None or image_grid_thw is None \
            or pixel_values is None or num_images is None or mm_token_type_ids.shape != input_ids.shape:
        return None
    start_id = getattr(model.config, "vision_start_token_id", None)
    if start_id is None or bool((attention_mask[:, P - 1] == 0).any()):
        return None
    chunks, img_inv, _ = fastpath._unique_images(pixel_values, image_grid_thw)
    n_prompt = (input_ids[:, :P - 1] == start_id).sum(1).tolist()
    starts = [0]
    for c in num_images:
        starts.append(starts[-1] + c)
    if any(n > c for n, c in zip(n_prompt, num_images)):
        return None
    keys, first, inv = {}, [], []
    for i in range(B):
        m = attention_mask[i, :P - 1].bool()
        key = (tuple(input_ids[i, :P - 1][m].tolist()), tuple(m.tolist()),
               tuple(img_inv[starts[i]:starts[i] + n_prompt[i]]))
        if key not in keys:
            keys[key] = len(first)
            first.append(i)
        inv.append(keys[key])
    if len(first) == B:
        return None
    with torch.no_grad():
        position_ids, _ = inner.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids,
                                               image_grid_thw=image_grid_thw, attention_mask=attention_mask)
    reps = torch.tensor(first)
    pre_imgs = [j for i in first for j in range(starts[i], starts[i] + n_prompt[i])]
    suf_imgs = [j for i in range(B) for j in range(starts[i] + n_prompt[i], starts[i + 1])]

    def images(idx):
        if not idx:
            return {}
        return {"pixel_values": torch.cat([chunks[j] for j in idx]), "image_grid_thw": image_grid_thw[idx]}
    labels = input_ids[:, P - 1:].masked_fill(attention_mask[:, P - 1:] == 0, -100)
    labels[:, 0] = -100
    if label_mask is not None:
        labels[:, 1:].masked_fill_(~label_mask.bool(), -100)
    with autocast() if autocast is not None else nullcontext():
        cache = DynamicCache(config=model.config)
        inner(input_ids=input_ids[reps, :P - 1], attention_mask=attention_mask[reps, :P - 1],
              position_ids=position_ids[:, reps, :P - 1], cache=cache, use_cache=True, **images(pre_imgs))
        cache.reorder_cache(torch.tensor(inv))
        out = model(input_ids=input_ids[:, P - 1:], attention_mask=attention_mask, position_ids=position_ids[:, :, P - 1:],
                    cache=cache, labels=labels, fused_lm_head=True, **images(suf_imgs))
    logps = out.log_probs[:, -C:]
    ent = out.entropy[:, -C:] if compute_entropy else None
    return logps, ent, None
