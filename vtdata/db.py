"""DuckDB access for every vt command.

One file (default `vt.duckdb` next to the data) holds samples, rejects, judgments, rollouts,
sufficiency labels, curated sets, training metrics and eval runs. DuckDB lets one process write a
file at a time; a writer records who it is in `<db>.holder` so that a second command gets a clear
message ("held by `vt score-judge`, pid 123") instead of a raw lock error.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from vtdata.console import VtError
from vtdata.outdir import missing_dirs, pid_alive, remove_empty


DB_ENV = "VT_DB"  # every command that takes --db reads this when --db is not given


def default_db(data_dir: str | os.PathLike | None = None) -> Path:
    """Where a command looks for the database when --db is not given: $VT_DB, else `vt.duckdb` beside
    the data (or the input), else ./vt.duckdb."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV])
    return Path(data_dir).resolve().parent / "vt.duckdb" if data_dir else Path("vt.duckdb")


def holder_path(db: str | os.PathLike) -> Path:
    return Path(str(db) + ".holder")


def _describe_holder(db: Path) -> str:
    """Who holds the database, from its holder file; a holder file whose process is gone (a writer
    killed with -9) is removed."""
    try:
        h = json.loads(holder_path(db).read_text())
        if not pid_alive(h.get("pid")):
            holder_path(db).unlink(missing_ok=True)
            return "held by another process"
        since = time.strftime("%H:%M:%S", time.localtime(h.get("started", 0)))
        return f"held by `{h.get('command', '?')}` (pid {h.get('pid', '?')}, since {since})"
    except (OSError, ValueError):
        return "held by another process"


def _lock_error(db: Path, err: Exception) -> VtError:
    who = _describe_holder(db)
    pid = re.search(r"PID (\d+)", str(err))
    if "pid" not in who and pid:
        who += f" (pid {pid.group(1)})"
    return VtError(f"database {db} is {who}; wait for that command to finish, stop it, "
                   f"or point this command at another file with --db")


# New files are written in the storage format of DuckDB 1.1 (what pyproject's `duckdb>=1.1` promises a
# reader); DuckDB 2.x would otherwise write its own format, which 1.x refuses ("version number 999").
# DuckDB < 1.2 has no such setting and writes that format anyway. A file keeps the format it was created in.
STORAGE_VERSION = "v1.1.0"


def _config() -> dict:
    major, minor = (int(x) for x in duckdb.__version__.split(".")[:2])
    return {"storage_compatibility_version": STORAGE_VERSION} if (major, minor) >= (1, 2) else {}


def connect(db: str | os.PathLike, read_only: bool = False, config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file (new ones in DuckDB 1.1's storage format), turning lock conflicts and missing
    files into one-line VtErrors."""
    path = Path(db)
    if path.exists() and not path.is_file():  # a FIFO would hang the open, a directory is a mistake
        raise VtError(f"database {path} is not a regular file")
    _describe_holder(path)  # removes a stale holder file left by a killed writer
    if read_only and not path.exists():
        raise VtError(f"database {path} does not exist (run `vt build-data` first, or pass --db)")
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise VtError(f"cannot create database {path}: {err.strerror} ({err.filename})") from None
    try:
        return duckdb.connect(str(path), read_only=read_only, config={**_config(), **(config or {})})
    except duckdb.IOException as err:
        if "lock" in str(err).lower():
            raise _lock_error(path, err) from None
        raise VtError(f"cannot open database {path}: {str(err).splitlines()[0]}") from None
    except duckdb.Error as err:  # a truncated or foreign file: serialization / internal errors
        raise VtError(f"cannot open database {path} (truncated or not a DuckDB file?): "
                      f"{str(err).splitlines()[0][:200]}") from None


@contextmanager
def writer(db: str | os.PathLike, command: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The one read-write connection of a command; records the holder for other commands to see."""
    path = Path(db)
    hp = holder_path(path)
    made = missing_dirs(path)  # the file and the folders this command creates
    con = connect(path)
    cmd = command or "vt " + " ".join(sys.argv[1:2])
    try:
        _write_holder(hp, json.dumps({"pid": os.getpid(), "command": cmd, "started": time.time()}))
    except BaseException:
        con.close()
        raise
    failed = False
    try:
        yield con
    except BaseException:
        failed = True
        raise
    finally:
        empty = failed and made and _no_rows(con)
        con.close()
        try:
            hp.unlink()
        except OSError:
            pass
        if empty:  # a command that failed leaves no empty database it created behind
            for f in (path, Path(f"{path}.wal")):
                f.unlink(missing_ok=True)
            remove_empty(made[1:])


def _write_holder(hp: Path, text: str) -> None:
    """Write the holder file without following a symlink planted in its place (its target stays untouched)."""
    if hp.is_symlink():
        raise VtError(f"{hp} is a symlink, not vt's holder file; remove it")
    try:
        fd = os.open(hp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise VtError(f"cannot write {hp}: {err.strerror}") from None
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _no_rows(con) -> bool:
    """Whether no table of the database holds a row (False when that cannot be told)."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction open
    from vtdata.tables import existing
    try:  # views count the rows of their tables: a new database is small
        return all(con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] == 0 for n in existing(con))
    except duckdb.Error:
        return False


@contextmanager
def transaction(con) -> Iterator[None]:
    """One transaction around the block: committed when it ends, rolled back when it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # the error that got us here is the one to report
        raise
    con.execute("COMMIT")


@contextmanager
def arrow_table(con, name: str, table):
    """A pyarrow table visible to SQL as `name` for the duration of the block."""
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


# columns whose text may carry a server's echo of a key or a URL with credentials: redacted when stored
SECRETIVE = ("error", "reason", "config", "url", "message", "options")


def insert_rows(con, table: str, rows: list[dict], columns, replace: bool = False) -> None:
    """Append dict rows (missing keys = NULL) to a table through Arrow: one statement, one transaction.
    score-judge's rollouts and eval's predictions are written this way (see bench/score.py for the gain).

    `replace`: a row whose key is stored already replaces it. The plain INSERT is tried first (the rollout
    engine only inserts keys it found missing, and DuckDB's OR REPLACE halves the rows/s on a 5-column
    key); a key conflict redoes the statement with OR REPLACE. Call it outside an explicit transaction:
    the failed INSERT rolls back only its own."""
    if not rows:
        return
    cols = ", ".join(columns)
    from vtdata.console import redact
    secretive = {c for c in columns if any(w in c for w in SECRETIVE)}
    with arrow_table(con, "_vt_rows", pa.table({c: [redact(r.get(c)) if c in secretive else r.get(c) for r in rows]
                                                for c in columns})):
        sql = f"INTO {table} ({cols}) SELECT {cols} FROM _vt_rows"
        try:
            con.execute("INSERT " + sql)
        except duckdb.ConstraintException:
            if not replace:
                raise
            con.execute("INSERT OR REPLACE " + sql)
