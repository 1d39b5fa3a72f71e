"""vt sql: read-only queries, formats, refusal of writes, a clear message while a writer holds the DB."""
import csv
import io
import json
import subprocess
import sys
import time

import pytest

from build_helpers import REPO, build, vt, write_manifest
from vtdata.console import VtError
from vtdata.sql import SqlConfig, print_result, run_sql


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = tmp_path_factory.mktemp("sql")
    m = write_manifest(d, [{"name": "g", "kind": "synthetic", "task": "general", "take": 6},
                           {"name": "o", "kind": "synthetic", "task": "ocr", "take": 4}], val_fraction=0.5)
    build(m, d / "set")
    return d / "vt.duckdb"


def test_select_and_formats(db):
    cols, rows = run_sql(SqlConfig("SELECT task, count(*) AS n FROM samples GROUP BY task ORDER BY task", db=str(db)))
    assert cols == ["task", "n"] and rows == [("general", 6), ("ocr", 4)]
    buf = io.StringIO()
    print_result(cols, rows, "csv", buf)
    assert list(csv.reader(io.StringIO(buf.getvalue()))) == [["task", "n"], ["general", "6"], ["ocr", "4"]]
    buf = io.StringIO()
    print_result(*run_sql(SqlConfig("SELECT id, answers FROM samples ORDER BY id LIMIT 2", db=str(db))), "json", buf)
    out = json.loads(buf.getvalue())
    assert len(out) == 2 and isinstance(out[0]["answers"], list)


def test_cli_prints_to_stdout(db):
    r = vt("sql", "SELECT split, count(*) AS n FROM samples GROUP BY split ORDER BY split", "--db", db, "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["split,n", "train,5", "val,5"]
    r = vt("sql", "SELECT count(*) AS n_rejects FROM rejects", "--db", db)
    lines = [x.strip() for x in r.stdout.splitlines()]
    assert r.returncode == 0 and lines[0] == "n_rejects" and lines[2:] == ["0", "(1 row)"], r.stdout


@pytest.mark.parametrize("q", ["DELETE FROM samples", "DROP TABLE samples", "INSERT INTO rejects VALUES (1,2,3,4,5)",
                               "CREATE TABLE t (a INT)", "UPDATE samples SET task = 'x'",
                               "SELECT 1; DELETE FROM samples", "ATTACH 'other.db'", "COPY samples TO 'x.csv'"])
def test_writes_are_refused(db, q):
    with pytest.raises(VtError, match="read-only"):
        run_sql(SqlConfig(q, db=str(db)))
    assert run_sql(SqlConfig("SELECT count(*) FROM samples", db=str(db)))[1] == [(10,)]


@pytest.mark.parametrize("q", ["SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM read_csv('/etc/passwd')",
                               "SELECT * FROM glob('/root/**')", "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
                               "SELECT * FROM read_parquet('{data}/data/*.parquet')", "LOAD httpfs", "INSTALL httpfs",
                               "SET enable_external_access = true; SELECT * FROM read_text('/etc/passwd')",
                               "PRAGMA enable_external_access = true; SELECT * FROM read_text('/etc/passwd')"])
def test_no_file_or_network_access_by_default(db, q):
    with pytest.raises(VtError) as err:
        run_sql(SqlConfig(q.format(data=db.parent / "set"), db=str(db)))
    assert "root:" not in str(err.value)


def test_allow_files_reads_local_files_but_installs_nothing(db):
    q = f"SELECT count(*) FROM read_parquet('{db.parent}/set/**/*.parquet')"
    with pytest.raises(VtError, match="--allow-files"):
        run_sql(SqlConfig(q, db=str(db)))
    assert run_sql(SqlConfig(q, db=str(db), allow_files=True))[1] == [(10,)]
    settings = ("SELECT current_setting('autoinstall_known_extensions'), current_setting('autoload_known_extensions'), "
                "current_setting('lock_configuration')")
    assert run_sql(SqlConfig(settings, db=str(db), allow_files=True))[1] == [(False, False, True)]
    r = vt("sql", "SELECT count(*) AS n FROM read_text('/etc/hostname')", "--db", db, "--allow-files", "-f", "csv")
    assert r.returncode == 0 and r.stdout.splitlines() == ["n", "1"], r.stderr


def test_bad_sql_missing_db_and_format(db, tmp_path):
    with pytest.raises(VtError, match="SQL error"):
        run_sql(SqlConfig("SELEC 1", db=str(db)))
    with pytest.raises(VtError, match=r"sufficiency does not exist.*\(tables in .*: rejects, samples\)"):
        run_sql(SqlConfig("SELECT * FROM sufficiency", db=str(db)))
    with pytest.raises(VtError, match="does not exist"):
        run_sql(SqlConfig("SELECT 1", db=str(tmp_path / "none.duckdb")))
    with pytest.raises(VtError, match="--format"):
        run_sql(SqlConfig("SELECT 1", db=str(db), format="xml"))


def test_held_by_a_writer_gives_a_clear_message(db):
    code = ("import sys, time; from vtdata.db import writer\n"
            "with writer(sys.argv[1], 'vt score-judge'):\n    print('held', flush=True); time.sleep(30)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        r = vt("sql", "SELECT 1", "--db", db)
        assert r.returncode == 2
        assert "held by `vt score-judge`" in r.stderr and f"pid {p.pid}" in r.stderr
        assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    finally:
        p.kill()
        p.wait()
    time.sleep(0.1)
    assert run_sql(SqlConfig("SELECT 1", db=str(db)))[1] == [(1,)]
