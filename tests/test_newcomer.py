"""What a new user trips on first: error text shown as written (not eaten as markup), typo'd train options,
a train config without a model, a policy given as a bare directory, `vt -q train` without bars or dicts."""
from __future__ import annotations

import pytest

import train_helpers as h
from vtdata.console import VtError


def test_error_text_is_printed_as_written_not_as_markup(monkeypatch, capsys):
    from vt import cli

    def fail():
        raise VtError("report_to: wandb needs the optional package `wandb`: pip install 'vt[wandb]'")
    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out = capsys.readouterr()
    assert exit_.value.code == 2 and "pip install 'vt[wandb]'" in out.out + out.err


def test_train_options_are_not_abbreviated():
    from vttrain.train_config import parse_config
    assert parse_config("train-demo.yaml", ["--learning_rate", "1e-4"]).learning_rate == 1e-4
    with pytest.raises(VtError, match="--learning_rat"):
        parse_config("train-demo.yaml", ["--learning_rat", "1e-4"])


def test_train_without_a_model_is_a_one_line_error(tmp_path):
    from vttrain.train import run
    from vttrain.train_config import parse_config
    data = h.write_dataset(tmp_path / "data")
    cfg = parse_config("train-demo.yaml", ["--data_dir", str(data), "--output_dir", str(tmp_path / "run")])
    with pytest.raises(VtError, match="needs model"):
        run(cfg)
    assert not (tmp_path / "run").exists()


def test_policy_may_be_a_bare_checkpoint_directory(tmp_path):
    from vttrain.policy import LocalPolicy, make_policy
    model = h.tiny_model(tmp_path)
    policy = make_policy(str(model))
    assert isinstance(policy, LocalPolicy) and policy.identity == f"local:{model.resolve()}"
    with pytest.raises(VtError, match="local:PATH"):
        make_policy(str(tmp_path / "no-such-dir"))


def test_quiet_train_has_no_progress_bar_or_printed_metrics(tmp_path):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from vtdata.console import set_verbosity
    from vttrain.train import build_trainer
    model, data = h.tiny_model(tmp_path), h.write_dataset(tmp_path / "data")
    kinds = []
    for quiet in (False, True):
        set_verbosity(quiet=quiet)
        try:
            trainer, _ = build_trainer(h.config(model, data, tmp_path / f"run-{quiet}"))
        finally:
            set_verbosity()
        kinds.append({type(c) for c in trainer.callback_handler.callbacks})
        trainer.create_model_card(model_name="run")  # what TRL calls at every checkpoint
        card = (tmp_path / f"run-{quiet}" / "README.md").read_text()
        assert "VisionThink policy trained with vt" in card and "[None]" not in card and str(model) in card
        trainer.judge.close()
    assert ProgressCallback in kinds[0] or PrinterCallback in kinds[0]
    assert not {ProgressCallback, PrinterCallback} & kinds[1]
