"""Round 3, class 1: outputs never eat inputs. No command's --out / --output_dir (nor the lock beside it)
may be, contain or sit inside one of its inputs (data, database, runs, manifest sources), --force
included; lock and holder files are not followed through symlinks; an --out symlink is resolved once."""
from __future__ import annotations

import os

import duckdb
import pytest

from build_helpers import build, write_manifest
from vtdata.console import VtError

SYNTH = [{"name": "g", "kind": "synthetic", "task": "general", "take": 4}]


def _db(path):
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE paid AS SELECT 42 AS judgment")
    con.close()
    return path


def _one_line(err):
    assert "\n" not in str(err.value)


def test_report_out_holding_its_database_is_refused_even_with_force(tmp_path):
    from vttrain.report.report import ReportConfig, build_report
    p = tmp_path / "P"
    p.mkdir()
    db = _db(p / "vt.duckdb")
    (p / "mine.txt").write_text("user file")
    with pytest.raises(VtError, match="needs") as e:
        build_report(ReportConfig(out=str(p), db=str(db), force=True))
    _one_line(e)
    assert db.is_file() and (p / "mine.txt").read_text() == "user file"


def test_report_out_that_is_a_training_run_is_refused(tmp_path):
    from vttrain.report.report import ReportConfig, build_report
    db = _db(tmp_path / "vt.duckdb")
    run = tmp_path / "elsewhere" / "run"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(VtError, match="needs"):
        build_report(ReportConfig(out=str(run), db=str(db), runs=[str(run)], force=True))
    assert (run / "metrics.jsonl").is_file()


def test_report_out_dot_is_one_line_error(tmp_path, monkeypatch):
    from vttrain.report.report import ReportConfig, build_report
    (tmp_path / "db").mkdir()
    db = _db(tmp_path / "db" / "vt.duckdb")
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    with pytest.raises(VtError, match="current directory") as e:
        build_report(ReportConfig(out=".", db=str(db), force=True))
    _one_line(e)
    assert (work / "keep.txt").is_file()


def test_build_data_out_holding_the_manifest_sources_is_refused_with_force(tmp_path):
    src = tmp_path / "SRC"
    src.mkdir()
    (src / "q.jsonl").write_text('{"question": "q", "answers": ["a"], "image": "i.png"}\n')
    (src / "i.png").write_bytes(b"png")
    m = write_manifest(tmp_path, [{"name": "j", "kind": "jsonl", "path": "SRC/q.jsonl", "image_root": "SRC"}])
    from vtdata.build import BuildDataConfig, build as build_cfg
    with pytest.raises(VtError, match="needs") as e:
        build_cfg(BuildDataConfig(manifest=str(m), out=str(src), force=True, db=str(tmp_path / "vt.duckdb")))
    _one_line(e)
    assert (src / "q.jsonl").is_file() and (src / "i.png").is_file()


def test_train_output_dir_that_is_the_data_dir_is_refused(tmp_path):
    from train_helpers import config, write_dataset
    from vttrain.grpo.train import build_trainer
    data = write_dataset(tmp_path / "data", n=2)
    before = sorted(os.listdir(data))
    cfg = config(tmp_path / "no-model", data, data)
    with pytest.raises(VtError, match="output_dir .* would replace"):
        build_trainer(cfg)
    assert sorted(os.listdir(data)) == before


def test_train_output_dir_inside_the_data_dir_is_refused(tmp_path):
    from train_helpers import config, write_dataset
    from vttrain.grpo.train import build_trainer
    data = write_dataset(tmp_path / "data", n=2)
    cfg = config(tmp_path / "no-model", data, data / "run")
    with pytest.raises(VtError, match="inside"):
        build_trainer(cfg)
    assert not (data / "run").exists()


def test_a_lock_file_that_is_a_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".set.lock").symlink_to(victim)
    m = write_manifest(tmp_path, SYNTH)
    with pytest.raises(VtError) as e:
        build(m, tmp_path / "set")
    _one_line(e)
    assert victim.read_text() == "precious"


def test_a_holder_file_that_is_a_symlink_is_not_followed(tmp_path):
    from vtdata.db import writer
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    db = tmp_path / "vt.duckdb"
    (tmp_path / "vt.duckdb.holder").symlink_to(victim)
    with pytest.raises(VtError):
        with writer(db):
            pass
    assert victim.read_text() == "precious"


def test_an_out_symlink_is_resolved_once_and_kept(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    m = write_manifest(tmp_path, SYNTH)
    build(m, link, db=tmp_path / "vt.duckdb")
    assert link.is_symlink() and (real / "build.json").is_file()
    con = duckdb.connect(str(tmp_path / "vt.duckdb"), read_only=True)
    cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'samples'").fetchall()]
    where = [c for c in cols if c in ("data_dir", "dataset", "path", "out")]
    if where:
        vals = {r[0] for r in con.execute(f"SELECT DISTINCT {where[0]} FROM samples").fetchall()}
        assert vals == {str(real.resolve())}, vals
    con.close()
