"""Round 3, class 7: `vt sql` reads only (also with --allow-files), stops a long query (--timeout), streams
its results with a row cap for tables, and escapes control characters in table output."""
from __future__ import annotations

import io
import time

import duckdb
import pytest

from vtdata.console import VtError
from vtdata.sql import SqlConfig, print_result, run, run_sql


@pytest.fixture
def db(tmp_path):
    p = tmp_path / "vt.duckdb"
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE t AS SELECT range AS i, 'x' || range AS s FROM range(5000)")
    con.execute("CREATE TABLE evil AS SELECT chr(27) || '[31mred' || chr(8238) || 'txt' AS s")
    con.close()
    return p


def test_explain_analyze_copy_is_refused_with_allow_files(tmp_path, db):
    victim = tmp_path / "victim.txt"
    with pytest.raises(VtError, match="read-only"):
        run_sql(SqlConfig(f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{victim}'", db=str(db), allow_files=True))
    assert not victim.exists()


def test_explain_analyze_of_a_query_still_works(db):
    cols, rows = run_sql(SqlConfig("EXPLAIN ANALYZE SELECT count(*) FROM t", db=str(db)))
    assert rows


def test_a_long_query_stops_at_the_timeout(db):
    t0 = time.monotonic()
    with pytest.raises(VtError, match="stopped"):
        run_sql(SqlConfig("SELECT count(*) FROM range(100000000000) a", db=str(db), timeout=1.0))
    assert time.monotonic() - t0 < 30


def test_table_output_is_capped(db, capsys):
    run(SqlConfig("SELECT * FROM t", db=str(db), max_rows=10))
    out = capsys.readouterr().out
    assert "(5000 rows; 4990 not shown" in out and "x4999" not in out


def test_control_characters_are_escaped_in_tables(db):
    buf = io.StringIO()
    print_result(*run_sql(SqlConfig("SELECT s FROM evil", db=str(db))), "table", out=buf)
    out = buf.getvalue()
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b" in out


def test_csv_has_plain_newlines(db):
    buf = io.StringIO()
    print_result(*run_sql(SqlConfig("SELECT i FROM t LIMIT 3", db=str(db))), "csv", out=buf)
    assert "\r" not in buf.getvalue()


def _has_open(pid: int, path) -> bool:
    import os
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_sigint_stops_a_long_query_within_a_second(db):
    """Ctrl-C reaches a running query through the real CLI (a subprocess): one line, within about a second."""
    import signal
    import subprocess
    import sys
    from pathlib import Path
    long_query = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b"  # minutes of work
    p = subprocess.Popen([sys.executable, "-m", "vt", "sql", "--db", str(db), long_query], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not _has_open(p.pid, db):  # imports done, the database open
            time.sleep(0.05)
        time.sleep(0.5)  # the query is running
        assert p.poll() is None, p.communicate()
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=6)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    print(f"stopped {took:.2f}s after SIGINT")
    assert took < 1.5, f"{took:.2f}s after SIGINT"
    assert p.returncode != 0 and "query stopped" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
