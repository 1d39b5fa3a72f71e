"""The GRPO step's speed-ups (vttrain.grpo.trainer / vttrain.models.fastpath: completion-only LM head on CPU that skips
a tool result's tokens, batched turn-1
rendering, each distinct prompt rendered once, cached tool-suffix ids, per-step image-processing cache, the patch
embedding as one matmul, the vision tower once per distinct image, length-bucketed log-prob forwards;
vttrain.grpo.config: no gradient checkpointing on CPU) leave what the trainer computes unchanged."""
import json
from pathlib import Path

import pytest

import train_helpers as h
from vttrain.grpo import fastlogps, scripted


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    return root, h.tiny_model(root), h.write_dataset(root / "data", n=4)


def _run(root, model, data, name, fast: bool, monkeypatch, head, **flags):
    import trl.trainer.utils as tu

    from vttrain.grpo.train import build_trainer
    rows = []  # positions TRL's fused head projects through the vocabulary, per call

    class Counted(head):
        @classmethod
        def apply(cls, hidden, *a):
            rows.append(hidden.shape[0])
            return super().apply(hidden, *a)
    monkeypatch.setattr(tu, "_ChunkedLogProbFunction", Counted)

    class T(scripted.ScriptedGRPOTrainer):
        compact_head = batched_render = distinct_prompts = suffix_cache = image_cache = fast
        matmul_patch_embed = dedupe_vision = length_buckets = shared_prompts = memo_rope = shared_generation = fast
        scored_only = fast
        prompts = []
        logps = []  # (log-probs, completion mask, model-token mask) of every log-prob forward (reference, policy)

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *a, **k):
            out = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *a, **k)
            own = fastlogps.own_tokens(self._tool_masks, attention_mask, logits_to_keep)  # TRL's tool_mask
            T.logps.append((out[0].detach().clone(), attention_mask[:, -logits_to_keep:].bool(), own))
            return out

        def _tokenize_prompts(self, prompts):
            out = super()._tokenize_prompts(prompts)
            T.prompts.append(out)
            return out

    for k, v in flags.items():  # a speed-up switched off on its own
        setattr(T, k, v)
    kw = {} if fast else {"gradient_checkpointing": True}
    # two groups of 4 (two distinct prompts, each repeated): the dedupe and bucket paths have work to do
    cfg = h.config(model, data, root / name, beta=0.04, per_device_train_batch_size=8, **kw)  # beta: the loss reads the log-probs (KL term)
    trainer, _ = build_trainer(cfg, T)
    assert trainer.args.gradient_checkpointing is (not fast)  # unset on CPU: off
    trainer.train()
    metrics = [json.loads(x) for x in (Path(root / name) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in metrics if "loss" in r], T.prompts, rows, T.logps


@pytest.mark.slow  # two 2-step runs of the tiny model: ~30 s of CPU
def test_fast_step_computes_the_same_losses(tiny, monkeypatch):
    import torch
    import trl.trainer.utils as tu
    root, model, data = tiny
    head = tu._ChunkedLogProbFunction
    slow, slow_prompts, slow_rows, slow_logps = _run(root, model, data, "slow", False, monkeypatch, head)
    from vttrain.models import fastpath
    took = {"buckets": 0, "vision": 0, "prompts": 0, "patch": 0, "shared": 0, "rope": 0}

    def counting(name, module, fn, hit):
        def wrapped(*a, **k):
            out = fn(*a, **k)
            took[name] += bool(hit(a, out))
            return out
        monkeypatch.setattr(module, fn.__name__, wrapped)
    counting("buckets", fastlogps, fastlogps.bucketed_logps, lambda a, out: out is not None)
    counting("vision", fastpath, fastpath._unique_images, lambda a, out: len(out[2]) < len(out[1]))
    counting("prompts", fastpath, fastpath.prompt_key, lambda a, out: True)
    counting("patch", fastpath, fastpath._patch_embed_forward, lambda a, out: True)
    counting("shared", fastlogps, fastlogps.shared_prefix_logps, lambda a, out: out is not None)
    memo = fastpath._memo_rope_index

    def rope_checked(self, *a, **k):  # every memoised rope index exactly equal to transformers' own
        out, ref = memo(self, *a, **k), self._vt_rope_index(*a, **k)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
        took["rope"] += 1
        return out
    monkeypatch.setattr(fastpath, "_memo_rope_index", rope_checked)
    fast, fast_prompts, fast_rows, fast_logps = _run(root, model, data, "fast", True, monkeypatch, head)
    assert all(took.values()), took  # every fast path had work to do
    # on CPU the fast head projects the completion positions only (the buckets split some calls in two)
    assert len(slow_rows) > 0 and sum(fast_rows) < sum(slow_rows)
    assert [r["step"] for r in fast] == [1, 2]
    _same_scores(slow, slow_logps, fast, fast_logps, fast_rows)
    # turn 1 (one batch of 4) and the tool turns: the same ids and image tensors, rendered at once
    assert len(slow_prompts) == len(fast_prompts) >= 2
    for (ids_a, _, f_a), (ids_b, _, f_b) in zip(slow_prompts, fast_prompts):
        assert [list(x) for x in ids_a] == [list(x) for x in ids_b]
        assert f_a.keys() == f_b.keys()
        for k in f_a:
            assert torch.equal(torch.as_tensor(f_a[k]), torch.as_tensor(f_b[k])), k


def _same_scores(slow, slow_logps, fast, fast_logps, fast_rows):
    """Per-token log-probs of the model's own completion tokens within 2e-5 absolute (shared prompt prefixes,
    buckets); a tool result's tokens not scored on the fast path (0), and there are some; the head projected
    each forward's own tokens only; the logged losses and metrics within float summation order."""
    import torch
    assert len(slow_logps) == len(fast_logps) >= 4
    tool_positions = 0
    for (a, mask, own), (b, mask_b, own_b) in zip(slow_logps, fast_logps):
        assert torch.equal(mask, mask_b) and own is not None and torch.equal(own, own_b)
        assert (a - b)[mask & own].abs().max() <= 2e-5, (a - b)[mask & own].abs().max()
        assert not bool((b[mask & ~own] != 0).any()) and bool((a[mask & ~own] != 0).all())
        tool_positions += int((mask & ~own).sum())
    assert tool_positions > 0
    assert sum(fast_rows) == sum(int((mask & own).sum()) for _, mask, own in fast_logps)
    assert [r["step"] for r in fast] == [1, 2]
    for a, b in zip(slow, fast):  # step 2's values also carry step 1's gradient
        # tolerance 1e-6 relative (+1e-7 absolute): only float summation order differs (matmul vs conv,
        # bucketed batch shapes, summed gradients of the deduplicated vision features, the head's row chunks)
        for key in ("loss", "grad_norm", "kl", "entropy", "reward", "reward_std"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-7), (key, a[key], b[key])


@pytest.mark.slow  # two 2-step runs of the tiny model: ~10 s of CPU
def test_tool_results_unscored_through_trls_own_method(tiny, monkeypatch):
    """Without the shared-prefix forward (as in a multi-process run), TRL's method scores the rows and vt's
    forward pre-hook (fastlogps.masked_labels) unlabels the tool results' positions: the same numbers."""
    import trl.trainer.utils as tu
    root, model, data = tiny
    head = tu._ChunkedLogProbFunction
    slow, _, _, slow_logps = _run(root, model, data, "slow-trl", False, monkeypatch, head)
    fast, _, rows, fast_logps = _run(root, model, data, "fast-trl", True, monkeypatch, head, shared_prompts=False,
                                     length_buckets=False)
    _same_scores(slow, slow_logps, fast, fast_logps, rows)


def test_gradient_checkpointing_follows_the_config(tiny):
    root, model, data = tiny
    assert h.config(model, data, root / "x", gradient_checkpointing=True).gradient_checkpointing is True
    assert h.config(model, data, root / "y").gradient_checkpointing is False  # CPU



def test_fast_vision_tower_matches_transformers(tiny):
    """fastpath.install_fast_vision on the tiny Qwen2.5-VL: the patch embedding as one matmul and the tower run once
    per distinct image give the same features and the same weight gradients (within 1e-5) as transformers'
    own forward, for a batch where two of three images are equal."""
    import copy

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vttrain.models import fastpath
    _, model_dir, _ = tiny
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32)
    fast = copy.deepcopy(model)
    assert fastpath.install_fast_vision(fast) == 3  # patch embed, vision tower, rope index
    pe = model.model.visual.patch_embed
    dim = pe.in_channels * pe.temporal_patch_size * pe.patch_size ** 2
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, dim, generator=g), torch.randn(64, dim, generator=g)
    pixels, grid = torch.cat([a, b, a]), torch.tensor([[1, 4, 4], [1, 8, 8], [1, 4, 4]])
    outs = []
    for m in (model, fast):
        out = m.model.visual(pixels, grid_thw=grid).pooler_output
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append((out.detach(), {n: p.grad.clone() for n, p in m.model.visual.named_parameters() if p.grad is not None}))
    (ref, ref_grads), (got, got_grads) = outs
    assert got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert ref_grads.keys() == got_grads.keys()
    for n in ref_grads:
        assert torch.allclose(got_grads[n], ref_grads[n], rtol=1e-4, atol=1e-5), n
