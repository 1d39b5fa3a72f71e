"""vt.duckdb opens with every DuckDB that pyproject allows (duckdb>=1.1): new files use 1.1's storage format.

The second-environment check runs when VT_OLD_DUCKDB_PYTHON names a Python with an older duckdb, e.g.
`python -m venv /tmp/duck11 && /tmp/duck11/bin/pip install duckdb==1.1.3` then
`VT_OLD_DUCKDB_PYTHON=/tmp/duck11/bin/python pytest tests/test_duckdb_compat.py`."""
import os
import subprocess

import pytest

from build_helpers import build, write_manifest

V1_STORAGE = 64  # the version number in the header of files DuckDB 1.0-1.1 write and read (2.x writes 999)


def _storage_number(path) -> int:
    head = open(path, "rb").read(4096 + 16)
    assert head[8:12] == b"DUCK"
    return int.from_bytes(head[12:20], "little")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = tmp_path_factory.mktemp("duck")
    m = write_manifest(d, [{"name": "g", "kind": "synthetic", "task": "general", "take": 4}])
    build(m, d / "set", db=d / "vt.duckdb")  # build-data writes the samples table through vtdata.db
    return d / "vt.duckdb"


def test_new_database_uses_the_1_1_storage_format(db):
    assert _storage_number(db) == V1_STORAGE


@pytest.mark.skipif(not os.environ.get("VT_OLD_DUCKDB_PYTHON"), reason="set VT_OLD_DUCKDB_PYTHON to a python with duckdb 1.1")
def test_duckdb_1_1_reads_it(db):
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
            "print(duckdb.__version__, c.execute('SELECT count(*) FROM samples').fetchone()[0])")
    out = subprocess.run([os.environ["VT_OLD_DUCKDB_PYTHON"], "-c", code, str(db)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    version, n = out.stdout.split()
    assert version.startswith("1.") and int(n) == 4
