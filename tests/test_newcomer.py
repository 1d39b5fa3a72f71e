"""What a new user trips on first: error text shown as written (not eaten as markup), typo'd train options,
a train config without a model, a policy given as a bare directory, `vt -q train` without bars or dicts."""
from __future__ import annotations

from pathlib import Path

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
    from vttrain.grpo.config import parse_config
    assert parse_config("train-demo.yaml", ["--learning_rate", "1e-4"]).learning_rate == 1e-4
    with pytest.raises(VtError, match="--learning_rat"):
        parse_config("train-demo.yaml", ["--learning_rat", "1e-4"])


def test_train_without_a_model_is_a_one_line_error(tmp_path):
    from vttrain.grpo.train import run
    from vttrain.grpo.config import parse_config
    data = h.write_dataset(tmp_path / "data")
    cfg = parse_config("train-demo.yaml", ["--data_dir", str(data), "--output_dir", str(tmp_path / "run")])
    with pytest.raises(VtError, match="needs model"):
        run(cfg)
    assert not (tmp_path / "run").exists()


def test_policy_may_be_a_bare_checkpoint_directory(tmp_path):
    from vttrain.rollout.policy import LocalPolicy, make_policy
    model = h.tiny_model(tmp_path)
    policy = make_policy(str(model))
    assert isinstance(policy, LocalPolicy) and policy.identity == f"local:{model.resolve()}"
    with pytest.raises(VtError, match="local:PATH"):
        make_policy(str(tmp_path / "no-such-dir"))


def test_quiet_train_has_no_progress_bar_or_printed_metrics(tmp_path):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from vtdata.console import set_verbosity
    from vttrain.grpo.train import build_trainer
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


def test_a_failed_eval_leaves_no_empty_evals_dir_or_database(tmp_path, monkeypatch):
    import vttrain.eval as ev
    data = h.write_dataset(tmp_path / "data", split="val")
    model = h.tiny_model(tmp_path)
    out = tmp_path / "new" / "place"

    def no_model(cfg):
        raise VtError("model does not load")
    monkeypatch.setattr(ev, "_make_policy", no_model)  # fails after the database and evals/ were opened
    cfg = ev.EvalConfig(model=str(model), data=str(data), db=str(out / "vt.duckdb"), mode="low")
    with pytest.raises(VtError, match="does not load"):
        ev.run(cfg)
    assert not (tmp_path / "new").exists()  # no evals/, no vt.duckdb, no folder made for them
    (tmp_path / "data" / "evals").mkdir()  # a folder that was there before is the user's: kept
    (tmp_path / "data" / "evals" / "mine.txt").write_text("x")
    with pytest.raises(VtError, match="does not load"):
        ev.run(ev.EvalConfig(model=str(model), data=str(data), mode="low"))
    assert (tmp_path / "data" / "evals" / "mine.txt").exists() and not (tmp_path / "data" / "vt.duckdb").exists()


def test_a_failed_writer_removes_only_an_empty_database_it_created(tmp_path):
    from vtdata import tables
    from vtdata.db import writer
    for rows, before in ((0, False), (1, False), (0, True)):
        db = tmp_path / f"d{rows}{before}" / "sub" / "vt.duckdb"
        if before:
            with writer(db) as con:
                tables.ensure(con, "curated")
        with pytest.raises(RuntimeError):
            with writer(db) as con:
                tables.ensure(con, "judgments")
                if rows:  # something paid for is stored: the database stays
                    con.execute("INSERT INTO judgments (key, judge) VALUES ('k', 'j')")
                raise RuntimeError("failed later")
        assert db.exists() == bool(rows or before), (rows, before)
        assert (tmp_path / f"d{rows}{before}").exists() == bool(rows or before)


def test_progress_in_a_log_is_whole_lines(tmp_path):
    """stderr not a terminal (a log, CI): full counts and status, no bar cut to 80 columns with '…'."""
    import subprocess
    import sys
    code = ("import vtdata.console as c\nc.PLAIN_EVERY_S = 0\n"
            "with c.progress_bar('scoring rollouts of the low and the high views', total=123456) as bar:\n"
            "    for _ in range(3):\n"
            "        bar.advance(64, status='low_ok=12 needs_high=3 ambiguous=40 incomplete=0 judged=1000')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    lines = r.stderr.splitlines()
    assert r.returncode == 0 and "…" not in r.stderr, r.stderr
    assert any(ln.startswith("scoring rollouts of the low and the high views: 192/123456") for ln in lines), lines
    assert lines[-1].endswith("judged=1000") and "64/123456" in lines[0]


def test_a_failed_build_leaves_no_folders_or_database(tmp_path, monkeypatch):
    import vtdata.build
    from build_helpers import build, write_manifest
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 2}])

    def broken(*a, **k):
        raise VtError("a source failed")
    monkeypatch.setattr(vtdata.build, "_build", broken)
    for db in (None, tmp_path / "dbs" / "x" / "vt.duckdb"):
        with pytest.raises(VtError, match="source failed"):
            build(m, tmp_path / "new" / "deep" / "data", db=db)
        assert not (tmp_path / "new").exists() and not (tmp_path / "dbs").exists()
