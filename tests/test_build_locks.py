"""Leftovers and locks: what a command killed with -9 leaves is cleaned by the next one, and two
commands never write the same output directory at once."""
import subprocess
import sys
import time

import duckdb
import pytest

from build_helpers import REPO, build, write_manifest
from vtdata.console import VtError
from vtdata.db import holder_path
from vtdata.sql import SqlConfig, run_sql


def _slow_manifest(tmp_path):  # a build that takes a few seconds: 300 synthetic images of 560-880 px
    return write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 300}],
                          resolution={"min_pixels": 112 * 112, "max_pixels": 224 * 224})


def _start_build(m, out, db):
    p = subprocess.Popen([sys.executable, "-m", "vt", "build-data", str(m), "--out", str(out),
                          "--db", str(db)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tmp = out.parent / f".{out.name}.tmp-{p.pid}"
    deadline = time.time() + 60
    while not tmp.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert tmp.exists() and p.poll() is None, "the build finished before it could be observed"
    return p, tmp


def test_a_second_build_into_the_same_out_is_refused(tmp_path):
    m, out = _slow_manifest(tmp_path), tmp_path / "out"
    p, _ = _start_build(m, out, tmp_path / "a.duckdb")
    try:
        with pytest.raises(VtError, match=rf"{out} is being written by `vt build-data` \(pid {p.pid}\)"):
            build(m, out, db=tmp_path / "b.duckdb")
    finally:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    con = duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 300
    con.close()
    assert not (tmp_path / ".out.lock").exists()
    build(m, out, db=tmp_path / "b.duckdb")   # once the first is done, the lock is free


def test_a_killed_build_leaves_nothing_behind_the_next_one(tmp_path):
    m, out = _slow_manifest(tmp_path), tmp_path / "out"
    p, tmp = _start_build(m, out, tmp_path / "vt.duckdb")
    p.kill()
    p.wait()
    assert tmp.exists() and holder_path(tmp_path / "vt.duckdb").exists()   # what kill -9 leaves
    # a reader already drops the holder of a dead writer; the next build removes the temp dir
    assert run_sql(SqlConfig("SELECT 1", db=str(tmp_path / "vt.duckdb")))[1] == [(1,)]
    assert not holder_path(tmp_path / "vt.duckdb").exists()
    small = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 4}])
    build(small, out)
    assert not tmp.exists()
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".out")) == []
    # killed inside publish (out renamed away, the new one not yet in place): cleaned up as well
    out.rename(tmp_path / f".out.old-{p.pid}")
    (tmp_path / f".out.tmp-{p.pid}").mkdir()
    build(small, tmp_path / "other", db=tmp_path / "o.duckdb")      # another out's leftovers are left alone
    assert (tmp_path / f".out.old-{p.pid}").exists()
    build(small, out)
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".out")) == []
    assert (out / "build.json").exists()
