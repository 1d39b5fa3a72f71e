"""Round 3, class 9: failures of the machine or of a file are one-line errors, not tracebacks: disk full
(an OSError from pyarrow or the OS, a DuckDB commit failure: vt.cli.environment_error), a truncated
vt.duckdb (vtdata.db.connect), 1e308 in a run's metrics.jsonl (vttrain.report.examples.read_jsonl)."""
from __future__ import annotations

import sys

import duckdb
import pytest

from build_helpers import vt, write_manifest


def _main(monkeypatch, capsys, *argv):
    from vt.cli import main
    monkeypatch.setattr(sys, "argv", ["vt", *map(str, argv)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    return e.value.code, err


@pytest.mark.parametrize("exc", [
    OSError(28, "No space left on device"),
    OSError("Error writing bytes to file. Detail: [errno 27] File too large"),
    duckdb.TransactionException("TransactionContext Error: Failed to commit: could not write: No space left on device"),
])
def test_disk_full_in_build_data_is_one_line(tmp_path, monkeypatch, capsys, exc):
    import vtdata.build as b
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 4}])

    def full(*a, **k):
        raise exc
    monkeypatch.setattr(b, "_build", full)
    code, err = _main(monkeypatch, capsys, "build-data", m, "--out", tmp_path / "set", "--db", tmp_path / "vt.duckdb")
    assert code == 2 and err.startswith("error:") and "Traceback" not in err, err
    assert not (tmp_path / "set").exists()


def _big_db(path):
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE rollouts AS SELECT range AS i, repeat('x', 200) || range AS text FROM range(200000)")
    con.close()
    return path


@pytest.mark.parametrize("command", [["report", "--out", "{tmp}/rep"], ["sql", "SELECT count(*) FROM rollouts"]])
def test_a_truncated_database_is_one_line(tmp_path, command):
    db = _big_db(tmp_path / "vt.duckdb")
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    r = vt(*[c.format(tmp=tmp_path) for c in command], "--db", db)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error:"), r.stderr


def test_1e308_in_metrics_is_not_a_traceback(tmp_path):
    db = tmp_path / "vt.duckdb"
    duckdb.connect(str(db)).close()
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1e308, "reward": 1e308, "accuracy": 0.5}\n'
                                       '{"step": 2, "loss": -1e308, "reward": 1e308, "accuracy": 1e308}\n')
    r = vt("report", "--db", db, "--runs", run, "--out", tmp_path / "rep", timeout=600)
    assert "Traceback" not in r.stderr and r.returncode in (0, 2), r.stderr
