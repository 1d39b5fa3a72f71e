"""Same-maths speed-ups of vt's GRPO step (used by vttrain.grpo.trainer.VtGRPOTrainer; each can be switched off there).

Each one removes repeated or wasted work and leaves what is computed the same (up to float summation order;
tests/test_train_speed.py checks loss, rewards and grad norm on a fixed batch):
- `suffix_key`: the tool-result suffix ids depend only on the tool messages' text and their images' sizes
  (the count of image pads), so they are cached by that key instead of two chat-template renders per call.
- `dedupe_prompts`: TRL's sampler repeats each prompt G times; each distinct (prompt, image) is rendered once
  and its ids and image tensors copied to the repeats.
- `CachedImageProcessor`: one step processes the same images several times (turn-1 render, the tool turns, the
  log-prob forwards' processor call); within a step each distinct image is processed once.
- `install_fast_vision`: Qwen2.5-VL's patch embedding is a Conv3d whose kernel equals its stride over inputs of
  exactly one kernel each, i.e. one matmul (`F.linear` of the flattened patch with the flattened kernel);
  and the vision tower runs once per distinct image of a batch (its attention never crosses images: the
  copies' features are copies), the features expanded back to every row.
The log-prob forwards' own (length buckets, shared prompt prefixes) are in vttrain.grpo.fastlogps, generation's in
vttrain.grpo.fastgen.
"""
from __future__ import annotations

import hashlib
import types
from contextlib import contextmanager

import numpy as np
import torch


def image_key(img) -> tuple:
    """A content key of a PIL image (mode, size, digest of the pixels)."""
    return ("img", img.mode, img.size, hashlib.blake2b(img.tobytes(), digest_size=16).digest())


def _is_image(x) -> bool:
    return hasattr(x, "tobytes") and hasattr(x, "size") and hasattr(x, "mode")


def _freeze(x, image=image_key):
    """A hashable key of a message structure; images become `image(img)`."""
    if _is_image(x):
        return image(x)
    if isinstance(x, dict):
        return tuple((k, _freeze(v, image)) for k, v in sorted(x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v, image) for v in x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return ("repr", type(x).__name__, repr(x))


def suffix_key(tool_messages: list[dict]) -> tuple:
    """What the tool-result suffix ids depend on: the messages with each image reduced to its size and mode."""
    return _freeze(tool_messages, image=lambda img: ("img", img.mode, img.size))


def memo(cache: dict, key, make, limit: int = 4096) -> list:
    """A copy of cache[key] (a list), made by make() the first time; the cache is emptied beyond `limit` keys."""
    if key not in cache:
        if len(cache) >= limit:
            cache.clear()
        cache[key] = list(make())
    return list(cache[key])


def prompt_key(prompt) -> tuple:
    return _freeze(prompt)


@contextmanager
def compact_lm_head():
    """TRL's fused LM head (trl.trainer.utils.add_fused_lm_head) projects only the positions that have a label
    when `_use_triton(device)`; elsewhere it projects every prompt and padding position through the whole
    vocabulary and zeroes them after (so that Neuron does not recompile for each count of positions). On CPU
    nothing recompiles and, on vt's small models, that projection is about half the step: make TRL's CUDA
    choice there for the duration of a call. The kernels read their own `_use_triton`, unchanged."""
    import trl.trainer.utils as tu
    original = tu._use_triton
    tu._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        tu._use_triton = original


# -- prompts ------------------------------------------------------------------------------------------------
def dedupe_prompts(prompts: list, render):
    """`render(unique_prompts)` -> (prompt_ids, images, fields) as TRL's `_tokenize_prompts`; the result for every
    prompt, each distinct one rendered once. Falls back to one render of all when a field is not understood."""
    keys = [prompt_key(p) for p in prompts]
    first: dict = {}
    inv = [first.setdefault(k, len(first)) for k in keys]
    if len(first) == len(prompts):
        return render(prompts)
    uniq = [None] * len(first)
    for p, i in zip(prompts, inv):
        if uniq[i] is None:
            uniq[i] = p
    ids, images, fields = render(uniq)
    n = len(uniq)
    out = {}
    grid = fields.get("image_grid_thw")
    counts = [len(x) if x else 0 for x in images] if images is not None else [0] * n
    for k, v in fields.items():
        if k in ("pixel_values", "image_grid_thw"):
            continue
        if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.size(0) == n:
            out[k] = v[inv]
        elif isinstance(v, list) and len(v) == n:
            out[k] = [v[i] for i in inv]
        else:
            return render(prompts)
    if "pixel_values" in fields:
        pv_in, grid_in = fields["pixel_values"], grid
        grid = torch.as_tensor(np.asarray(grid))
        if grid.size(0) != sum(counts) or len(pv_in) != int(grid.prod(-1).sum()):
            return render(prompts)
        rows = grid.prod(-1)
        img_start = [0]
        for c in counts:
            img_start.append(img_start[-1] + c)
        row_cum = torch.cat([rows.new_zeros(1), rows.cumsum(0)]).tolist()
        pv, gr = [], []
        for i in inv:
            a, b = img_start[i], img_start[i + 1]
            pv.append(pv_in[row_cum[a]:row_cum[b]])
            gr.append(grid_in[a:b])
        cat = torch.cat if isinstance(pv_in, torch.Tensor) else np.concatenate
        out["pixel_values"] = cat(pv)
        out["image_grid_thw"] = (torch.cat if isinstance(grid_in, torch.Tensor) else np.concatenate)(gr)
    elif grid is not None:
        return render(prompts)
    return ([list(ids[i]) for i in inv], [images[i] for i in inv] if images is not None else None, out)


# -- image preprocessing ------------------------------------------------------------------------------------
class CachedImageProcessor:
    """Wraps an image processor: each distinct image (by content and call options) processed once while the
    cache lives; calls it does not understand go straight through."""

    def __init__(self, inner):
        self.__dict__["_inner"] = inner
        self.__dict__["_cache"] = {}

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)

    def __call__(self, images=None, *args, **kwargs):
        imgs = [images] if _is_image(images) else images
        if args or not isinstance(imgs, (list, tuple)) or not imgs or not all(_is_image(i) for i in imgs) \
                or kwargs.get("return_tensors") != "pt":
            return self._inner(images, *args, **kwargs)
        try:
            opts = _freeze(kwargs)
            hash(opts)
        except TypeError:
            return self._inner(images, *args, **kwargs)
        keys = [(image_key(i), opts) for i in imgs]
        miss, seen = [], set()
        for k, img in zip(keys, imgs):
            if k not in self._cache and k not in seen:
                seen.add(k)
                miss.append((k, img))
        if miss:
            res = self._inner([img for _, img in miss], **kwargs)
            if set(res.keys()) != {"pixel_values", "image_grid_thw"}:
                return self._inner(images, *args, **kwargs)
            rows = res["image_grid_thw"].prod(-1).tolist()
            for (k, _), pv, g in zip(miss, res["pixel_values"].split(rows), res["image_grid_thw"]):
                self._cache[k] = (pv, g)
        from transformers import BatchFeature
        parts = [self._cache[k] for k in keys]
        return BatchFeature({"pixel_values": torch.cat([p for p, _ in parts]),
                             "image_grid_thw": torch.stack([g for _, g in parts])}, tensor_type="pt")


@contextmanager
def cached_image_processing(processor):
    """For the duration: `processor.image_processor` processes each distinct image once."""
    inner = getattr(processor, "image_processor", None)
    if inner is None or isinstance(inner, CachedImageProcessor):
        yield
        return
    processor.image_processor = CachedImageProcessor(inner)
    try:
        yield
    finally:
        processor.image_processor = inner


# -- vision tower ---------------------------------------------------------------------------------------------
def _patch_embed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """Conv3d with kernel == stride on inputs of one kernel each == a linear map of the flattened patch."""
    w = self.proj.weight
    x = hidden_states.to(dtype=w.dtype).reshape(-1, w[0].numel())
    return torch.nn.functional.linear(x, w.reshape(w.size(0), -1), self.proj.bias).view(-1, self.embed_dim)


def _conv_is_matmul(conv) -> bool:
    return (isinstance(conv, torch.nn.Conv3d) and tuple(conv.kernel_size) == tuple(conv.stride)
            and all(p == 0 for p in conv.padding) and all(d == 1 for d in conv.dilation) and conv.groups == 1)


def _signature(chunk: torch.Tensor, grid: tuple) -> tuple:
    flat = chunk.reshape(-1)
    step = max(1, flat.numel() // 64)
    return (grid, tuple(chunk.shape), tuple(flat[::step][:64].tolist()))


def _unique_images(pixel_values: torch.Tensor, grid_thw: torch.Tensor):
    """(per-image chunks, index of the first equal image for each image, the distinct indices)."""
    rows = grid_thw.prod(-1).tolist()
    chunks = pixel_values.split(rows)
    reps: dict = {}
    inv, uniq = [], []
    for i, (c, g) in enumerate(zip(chunks, grid_thw.tolist())):
        sig = _signature(c, tuple(g))
        for j in reps.get(sig, ()):
            if torch.equal(chunks[uniq[j]], c):
                inv.append(j)
                break
        else:
            reps.setdefault(sig, []).append(len(uniq))
            inv.append(len(uniq))
            uniq.append(i)
    return chunks, inv, uniq


def _dedupe_visual_forward(self, hidden_states, grid_thw=None, **kwargs):
    orig = self._vt_forward
    if grid_thw is None or grid_thw.size(0) < 2 or not getattr(self, "vt_dedupe", True):
        return orig(hidden_states, grid_thw=grid_thw, **kwargs)
    chunks, inv, uniq = _unique_images(hidden_states, grid_thw)
    if len(uniq) == len(inv):
        return orig(hidden_states, grid_thw=grid_thw, **kwargs)
    out = orig(torch.cat([chunks[u] for u in uniq]), grid_thw=grid_thw[uniq], **kwargs)
    rows = grid_thw[uniq].prod(-1)
    merged = (rows // self.spatial_merge_size ** 2).tolist()
    pooled = out.pooler_output.split(merged)
    out.pooler_output = torch.cat([pooled[j] for j in inv])
    if getattr(out, "last_hidden_state", None) is not None and out.last_hidden_state.size(0) == int(rows.sum()):
        hidden = out.last_hidden_state.split(rows.tolist())
        out.last_hidden_state = torch.cat([hidden[j] for j in inv])
    return out


def _image_runs(types: torch.Tensor) -> int:
    """How many image placeholders (runs of type-1 tokens) a row's token types hold."""
    img = types == 1
    return int((img & ~torch.cat([img.new_zeros(1), img[:-1]])).sum()) if img.numel() else 0


def _memo_rope_index(self, input_ids, mm_token_type_ids=None, image_grid_thw=None, video_grid_thw=None,
                     second_per_grid_ts=None, attention_mask=None, **kwargs):
    """Qwen2.5-VL's get_rope_index once per distinct row layout: a row's positions depend only on its token types
    (text/image) where its attention mask is set, that mask, and its images' grids; rows of one layout get the
    same (integer) positions, so they are computed for one row and copied (exactly the same result)."""
    orig = self._vt_rope_index
    if video_grid_thw is not None or second_per_grid_ts is not None or kwargs or mm_token_type_ids is None \
            or image_grid_thw is None or input_ids.size(0) < 2 or not getattr(self, "vt_memo_rope", True):
        return orig(input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
                    second_per_grid_ts=second_per_grid_ts, attention_mask=attention_mask, **kwargs)
    B = input_ids.size(0)
    mask = (attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)).cpu()
    mm = mm_token_type_ids.cpu()
    grids = image_grid_thw.tolist()
    keys, first, inv, rows_grids = {}, [], [], []
    g = 0
    for i in range(B):
        types = mm[i][mask[i]]
        n = _image_runs(types)
        row_grids = tuple(map(tuple, grids[g:g + n]))
        g += n
        key = (mask[i].numpy().tobytes(), mm[i].numpy().tobytes(), row_grids)
        if key not in keys:
            keys[key] = len(first)
            first.append(i)
            rows_grids.append(image_grid_thw[g - n:g])
        inv.append(keys[key])
    if g != len(grids) or len(first) == B:
        return orig(input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw, attention_mask=attention_mask)
    idx = torch.tensor(first, device=input_ids.device)
    pos, deltas = orig(input_ids[idx], mm_token_type_ids[idx], image_grid_thw=torch.cat(rows_grids),
                       attention_mask=attention_mask[idx] if attention_mask is not None else None)
    inv_t = torch.tensor(inv, device=pos.device)
    return pos[:, inv_t], deltas[inv_t.to(deltas.device)]


def install_fast_vision(model, matmul_patch_embed: bool = True, dedupe_images: bool = True,
                        memo_rope: bool = True) -> int:
    """Patch the vision towers of `model` (Qwen2.5-VL's): the patch embedding as one matmul, the tower once per
    distinct image; and its `get_rope_index` once per distinct row layout. Instance-level attributes only
    (weights, state dict and classes untouched). Returns how many were patched."""
    n = 0
    if model is None:
        return n
    for m in model.modules():
        if memo_rope and hasattr(m, "get_rope_index") and hasattr(m, "get_vision_position_ids") \
                and "_vt_rope_index" not in m.__dict__:
            m._vt_rope_index = m.get_rope_index
            m.get_rope_index = types.MethodType(_memo_rope_index, m)
            n += 1
        if matmul_patch_embed and hasattr(m, "proj") and hasattr(m, "embed_dim") and _conv_is_matmul(m.proj) \
                and "PatchEmbed" in type(m).__name__ and "forward" not in m.__dict__:
            m.forward = types.MethodType(_patch_embed_forward, m)
            n += 1
        if dedupe_images and hasattr(m, "patch_embed") and hasattr(m, "merger") and hasattr(m, "spatial_merge_size") \
                and "_vt_forward" not in m.__dict__:
            m._vt_forward = m.forward
            m.forward = types.MethodType(_dedupe_visual_forward, m)
            n += 1
    return n
