"""`VtTrainConfig`: a plain dataclass subclassing TRL's GRPOConfig, importable by its module path (checkpoints
pickle it), checks in __post_init__, and a train YAML's paths resolved like a data manifest's."""
from __future__ import annotations

import dataclasses
import os
import pickle

import pytest

from vtdata.console import VtError


def test_a_plain_dataclass_that_pickles_by_its_module_path():
    from trl import GRPOConfig

    import vttrain.grpo.train as train
    from vttrain.grpo.config import VtTrainConfig

    assert issubclass(VtTrainConfig, GRPOConfig) and dataclasses.is_dataclass(VtTrainConfig)
    assert VtTrainConfig.__module__ == "vttrain.grpo.config"
    assert not hasattr(train, "__getattr__") and "VtTrainConfig" not in vars(train)  # no runtime-built class
    names = {f.name for f in dataclasses.fields(VtTrainConfig)}
    assert {"data_dir", "penalty_mode", "theta", "learning_rate", "num_generations"} <= names
    cfg = VtTrainConfig(output_dir="r", use_cpu=True, bf16=False, num_generations=4, theta=0.3)
    again = pickle.loads(pickle.dumps(cfg))  # what training_args.bin holds
    assert type(again) is VtTrainConfig and again.theta == 0.3
    with pytest.raises(VtError, match="theta must be in"):
        VtTrainConfig(output_dir="r", use_cpu=True, bf16=False, num_generations=4, theta=2.0)


def test_yaml_paths_are_relative_to_the_yaml_and_flags_to_the_cwd(tmp_path, monkeypatch):
    from vttrain.grpo.config import parse_config

    conf = tmp_path / "configs"
    (conf / "prompts").mkdir(parents=True)
    (conf / "prompts" / "sys.txt").write_text("You are a test.")
    (conf / "m").mkdir()
    f = conf / "run.yaml"
    f.write_text("data_dir: ../data\noutput_dir: runs/a\nmodel: m\nsystem_prompt: prompts/sys.txt\n"
                 "user_prompt: agent_user\nnum_generations: 4\nuse_cpu: true\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = parse_config(f, [])
    assert cfg.data_dir == os.path.abspath(tmp_path / "data") and cfg.output_dir == str(conf / "runs" / "a")
    assert cfg.model == str(conf / "m") and cfg.system_prompt == str(conf / "prompts" / "sys.txt")
    assert cfg.user_prompt == "agent_user"  # a shipped prompt name stays a name
    cfg = parse_config(f, ["--output_dir", "mine", "--model", "Qwen/Qwen2.5-VL-3B-Instruct"])
    assert cfg.output_dir == str(elsewhere / "mine")  # a flag is relative to the current directory
    assert cfg.model == "Qwen/Qwen2.5-VL-3B-Instruct"  # a hub id stays an id


def test_shipped_train_configs_name_no_paths():
    """They work from any directory (a wheel's copy too): the run's paths come from flags."""
    import yaml

    from vt import shipped

    for name in ("train-demo.yaml", "train-mini.yaml", "train-visionthink-7b.yaml", "train-visionthink-3b.yaml"):
        keys = set(yaml.safe_load(shipped(name).read_text()))
        assert not keys & {"data_dir", "output_dir", "db"}, name


def test_a_shipped_config_named_from_elsewhere_resolves_its_paths_beside_itself(tmp_path, monkeypatch):
    """`vt train train-visionthink-7b.yaml --dry-run` from outside the checkout: its `accelerate_config:
    accelerate/zero3.yaml` is the shipped file beside the YAML found, not a path under the current directory."""
    from vtdata.shipped import shipped
    from vttrain.grpo.config import parse_config
    monkeypatch.chdir(tmp_path)
    cfg = parse_config("train-visionthink-7b.yaml", ["--data_dir", "d", "--output_dir", "o"], dry_run=True)
    assert cfg.accelerate_config == str(shipped("accelerate", "zero3.yaml").resolve())
    assert cfg.data_dir == str(tmp_path / "d")  # flags stay relative to the current directory


def test_quiet_after_the_command_is_the_global_flag_not_an_unknown_option():
    """`vt train CONFIG … -q` (issue 31): the global -q/--quiet written after the command is honoured."""
    from vtdata import console
    from vttrain.grpo.config import parse_config
    before = console._level["value"]
    try:
        cfg = parse_config(None, ["--max_steps", "3", "-q", "--model", "m", "--data_dir", "d"], dry_run=True)
        assert cfg.max_steps == 3 and console.quiet()
        with pytest.raises(VtError, match="unknown train option"):
            parse_config(None, ["--max_steps", "3", "-x"], dry_run=True)
    finally:
        console._level["value"] = before


def test_the_accelerate_entry_point_answers_help_with_its_usage():
    """`python -m vttrain.grpo.train --help` (what `accelerate launch -m` runs) prints its usage, not
    "train config not found: --help"; with no config it exits 2 with the same usage."""
    import subprocess
    import sys
    ok = subprocess.run([sys.executable, "-m", "vttrain.grpo.train", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "python -m vttrain.grpo.train CONFIG.yaml" in ok.stdout, ok.stderr[-500:]
    bare = subprocess.run([sys.executable, "-m", "vttrain.grpo.train"], capture_output=True, text=True)
    assert bare.returncode == 2 and "usage:" in bare.stdout
