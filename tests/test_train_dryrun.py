"""`vt train CONFIG --dry-run` (issue 21): the per-GPU memory estimate of the shipped recipes on the real
Qwen2.5-VL-3B/7B shapes (configs only: the model is built on the meta device), and the refusal of a
config that cannot fit."""
import pytest
from typer.testing import CliRunner

import train_helpers as h
from vt.cli import app
from vtdata.console import VtError
from vttrain.grpo import memory
from vttrain.grpo.config import parse_config

R7, R3 = h.ROOT / "manifests" / "train-visionthink-7b.yaml", h.ROOT / "manifests" / "train-visionthink-3b.yaml"


def _est(recipe, *flags):
    cfg = parse_config(recipe, list(flags), dry_run=True)
    return cfg, memory.estimate(cfg)


@pytest.mark.parametrize("recipe, low, high", [(R7, 8.2e9, 8.35e9), (R3, 3.7e9, 3.8e9)])
def test_parameters_of_the_real_shapes(recipe, low, high):
    """The published sizes: Qwen2.5-VL-7B 8.29 B, 3B 3.75 B (its embeddings tied, counted once)."""
    _, est = _est(recipe)
    assert low < est["parameters"] < high


@pytest.mark.parametrize("recipe", [R7, R3])
def test_shipped_recipes_fit_8_x_80gb(recipe):
    for gpus in ("8", None):  # one node, and the recipe's own launch (7B: 4 nodes)
        cfg, est = _est(recipe, *(("--gpus", gpus) if gpus else ()))
        assert memory.refusal(est) is None, memory.report(cfg, est)
        assert est["peak"] < est["capacity"]
    assert cfg.per_device_train_batch_size == 1 and cfg.vllm_enable_sleep_mode
    assert cfg.per_device_train_batch_size * cfg.gpus * cfg.gradient_accumulation_steps == 512  # the release's mini-batch
    assert cfg.vllm_importance_sampling_correction is False


def test_the_old_recipe_settings_are_refused_with_the_reason():
    # micro-batch 4 with vLLM awake through training (the recipe before issue 21)
    cfg, est = _est(R7, "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "4",
                    "--vllm_enable_sleep_mode", "false")
    reason = memory.refusal(est)
    assert reason and "logits" in reason and "\n" not in reason
    # a 7B under plain DDP: fp32 weights, gradients and Adam unsharded
    cfg, est = _est(R7, "--accelerate_config", str(h.ROOT / "manifests/accelerate/ddp.yaml"), "--gpus", "8")
    assert est["launch"].zero_stage == 0 and est["items"]["optimizer"] > 60
    assert memory.refusal(est)


def test_sleep_mode_and_zero_stage_change_the_estimate():
    _, awake = _est(R7, "--vllm_enable_sleep_mode", "false")
    _, asleep = _est(R7)
    assert awake["training"] - asleep["training"] == pytest.approx(awake["items"]["vllm (generating)"] - 2.0)
    _, z3 = _est(R7, "--gpus", "8")
    _, z3_32 = _est(R7, "--gpus", "32")
    assert z3["items"]["weights"] == pytest.approx(4 * z3_32["items"]["weights"])


def test_cli_dry_run_prints_the_estimate_and_refuses_a_config_that_cannot_fit():
    res = CliRunner().invoke(app, ["train", str(R7), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "per-GPU memory estimate" in res.output and "fits: yes" in res.output
    assert "512 completions per optimiser step" in res.output
    res = CliRunner().invoke(app, ["train", str(R7), "--dry-run", "--per_device_train_batch_size", "8"])
    assert isinstance(res.exception, VtError) and str(res.exception).startswith("this config cannot fit: needs ~")


def test_unknown_model_is_a_one_line_error(tmp_path):
    cfg = parse_config(R7, ["--model", "nobody/not-a-model"], dry_run=True)
    with pytest.raises(VtError, match="no config for model"):
        memory.estimate(cfg)
