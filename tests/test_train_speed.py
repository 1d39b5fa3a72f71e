"""The GRPO step's speed-ups (vttrain.trainer: completion-only LM head on CPU, batched turn-1 rendering;
vttrain.train_config: no gradient checkpointing on CPU) leave what the trainer computes unchanged."""
import json
from pathlib import Path

import pytest

import train_helpers as h
from vttrain import scripted


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    return root, h.tiny_model(root), h.write_dataset(root / "data", n=4)


def _run(root, model, data, name, fast: bool, monkeypatch, head):
    import trl.trainer.utils as tu

    from vttrain.train import build_trainer
    rows = []  # positions TRL's fused head projects through the vocabulary, per call

    class Counted(head):
        @classmethod
        def apply(cls, hidden, *a):
            rows.append(hidden.shape[0])
            return super().apply(hidden, *a)
    monkeypatch.setattr(tu, "_ChunkedLogProbFunction", Counted)

    class T(scripted.ScriptedGRPOTrainer):
        compact_head = fast
        batched_render = fast
        prompts = []

        def _tokenize_prompts(self, prompts):
            out = super()._tokenize_prompts(prompts)
            T.prompts.append(out)
            return out

    kw = {} if fast else {"gradient_checkpointing": True}
    cfg = h.config(model, data, root / name, beta=0.04, **kw)  # beta: the loss reads the log-probs (KL term)
    trainer, _ = build_trainer(cfg, T)
    assert trainer.args.gradient_checkpointing is (not fast)  # unset on CPU: off
    trainer.train()
    metrics = [json.loads(x) for x in (Path(root / name) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in metrics if "loss" in r], T.prompts, rows


@pytest.mark.slow  # two 2-step runs of the tiny model: ~30 s of CPU
def test_fast_step_computes_the_same_losses(tiny, monkeypatch):
    import torch
    import trl.trainer.utils as tu
    root, model, data = tiny
    head = tu._ChunkedLogProbFunction
    slow, slow_prompts, slow_rows = _run(root, model, data, "slow", False, monkeypatch, head)
    fast, fast_prompts, fast_rows = _run(root, model, data, "fast", True, monkeypatch, head)
    # the same calls (policy and reference, each step); on CPU the fast head projects the completion only
    assert len(fast_rows) == len(slow_rows) > 0 and all(f < s for f, s in zip(fast_rows, slow_rows))
    assert [r["step"] for r in fast] == [1, 2]
    for a, b in zip(slow, fast):  # step 2's values also carry step 1's gradient
        for key in ("loss", "grad_norm", "kl", "entropy", "reward"):
            assert round(a[key], 6) == round(b[key], 6), (key, a[key], b[key])
    # turn 1 (one batch of 4) and the tool turns: the same ids and image tensors, rendered at once
    assert len(slow_prompts) == len(fast_prompts) >= 2
    for (ids_a, _, f_a), (ids_b, _, f_b) in zip(slow_prompts, fast_prompts):
        assert [list(x) for x in ids_a] == [list(x) for x in ids_b]
        assert f_a.keys() == f_b.keys()
        for k in f_a:
            assert torch.equal(torch.as_tensor(f_a[k]), torch.as_tensor(f_b[k])), k


def test_gradient_checkpointing_follows_the_config(tiny):
    root, model, data = tiny
    assert h.config(model, data, root / "x", gradient_checkpointing=True).gradient_checkpointing is True
    assert h.config(model, data, root / "y").gradient_checkpointing is False  # CPU


@pytest.mark.slow  # two 3-step warm-start builds: ~1 min of CPU
def test_warm_start_sft_with_the_compact_head_trains_the_same_weights(tmp_path, monkeypatch):
    """`vt init-model mini`'s SFT scores only the assistant positions through the LM head on CPU too
    (vttrain.warmstart: compact_lm_head around SFTTrainer.compute_loss): the same weights."""
    from contextlib import nullcontext

    import torch
    import trl.trainer.utils as tu
    from safetensors.torch import load_file

    import vttrain.trainer
    from vttrain import warmstart
    cfg = warmstart.MiniConfig(steps=3, check_every=100, check_size=2, cooldown_steps=0, batch_size=4)
    head = tu._ChunkedLogProbFunction
    out = {}
    for name, compact in (("full", False), ("compact", True)):
        rows = []

        class Counted(head):
            @classmethod
            def apply(cls, hidden, *a):
                rows.append(hidden.shape[0])
                return super().apply(hidden, *a)
        monkeypatch.setattr(tu, "_ChunkedLogProbFunction", Counted)
        if not compact:
            monkeypatch.setattr(vttrain.trainer, "compact_lm_head", nullcontext)
        else:
            monkeypatch.undo()
            monkeypatch.setattr(tu, "_ChunkedLogProbFunction", Counted)
        warmstart._train(tmp_path / name, cfg)
        init = json.loads((tmp_path / name / "vt_init.json").read_text())
        assert init["steps_trained"] == 3
        out[name] = (load_file(str(tmp_path / name / "model.safetensors")), rows)
    (w_a, rows_a), (w_b, rows_b) = out["full"], out["compact"]
    # one call a step; the compact head projects the assistant positions only
    assert len(rows_a) == len(rows_b) == 3 and all(b < a for a, b in zip(rows_a, rows_b))
    assert w_a.keys() == w_b.keys()
    for k in w_a:
        assert torch.allclose(w_a[k], w_b[k], atol=1e-5), k
