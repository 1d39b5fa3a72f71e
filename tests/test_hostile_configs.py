"""Round 3, class 2: configs that cannot mean anything are refused in one line before any work
(train: vttrain.grpo.config.check_values; every declared config: vtdata.config's bounds and nulls)."""
from __future__ import annotations

import shutil

import pytest

from build_helpers import vt
from vtdata.console import VtError


def _train(tmp_path, **kw):
    from train_helpers import config
    return config(tmp_path / "model", tmp_path / "data", tmp_path / "run", **kw)


@pytest.mark.parametrize("key,value", [
    ("beta", "nan"), ("beta", "-1"), ("penalty", "nan"), ("format_weight", "inf"),
    ("learning_rate", "nan"), ("learning_rate", "-1"), ("learning_rate", "0"),
    ("max_steps", "0"), ("max_steps", "-5"), ("per_device_train_batch_size", "0"),
    ("gradient_accumulation_steps", "0"), ("temperature", "0"), ("temperature", "nan"),
])
def test_train_value_that_means_nothing_is_one_line(tmp_path, key, value):
    with pytest.raises(VtError, match=key) as e:
        _train(tmp_path, **{key: value})
    assert "\n" not in str(e.value)


def test_limit_beyond_int64_is_refused(tmp_path):
    from vtdata.config import build
    from vttrain.score import ScoreConfig
    with pytest.raises(VtError, match="out of range"):
        build(ScoreConfig, {"data": str(tmp_path), "policy": "openai:m", "limit": 1e20})


def test_k_too_large_is_refused_before_any_request(tmp_path):
    from vtdata.config import build
    from vttrain.score import ScoreConfig
    with pytest.raises(VtError, match="rollouts"):
        build(ScoreConfig, {"data": str(tmp_path), "policy": "openai:m", "rollouts": "20000000"})


def test_data_null_in_a_config_file_is_one_line(tmp_path):
    from vtdata.config import build
    from vttrain.eval import EvalConfig
    with pytest.raises(VtError, match="needs a value"):
        build(EvalConfig, {"data": None, "model": str(tmp_path)})


def test_cli_data_null_is_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: null\npolicy: openai:m\n")
    r = vt("score-judge", "--config", cfg)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error:"), r.stderr


def test_j_is_capped_to_the_cores(tmp_path):
    import os
    from vtdata.build import BuildDataConfig
    cfg = BuildDataConfig(manifest="m.yaml", out=str(tmp_path / "o"), num_proc=256)
    assert cfg.num_proc <= (os.cpu_count() or 1)


@pytest.mark.parametrize("garbage", ["{}", "[1, 2]", '"x"'])
def test_a_garbage_tokenizer_json_is_one_line(tmp_path, garbage):
    from train_helpers import tiny_model
    from vttrain.models.build import load_processor
    m = tmp_path / "m"
    shutil.copytree(tiny_model(tmp_path), m)
    (m / "tokenizer.json").write_text(garbage)
    with pytest.raises(VtError, match="processor") as e:
        load_processor(str(m))
    assert "\n" not in str(e.value)
