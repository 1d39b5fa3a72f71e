"""`vt sql`: read-only SQL over the vt DuckDB file (samples, rejects, judgments, rollouts, ...).

    vt sql "SELECT task, split, count(*) FROM samples GROUP BY ALL" --db demo-out/vt.duckdb
    vt sql "SELECT reason, count(*) FROM rejects GROUP BY ALL" --format csv > rejects.csv

Sandboxed: the connection sees the database file only. DuckDB's external access (read_text,
read_csv, glob, COPY, URLs, loading extensions) is off unless --allow-files, extensions are never
installed or auto-loaded, and the configuration is locked so a query cannot turn any of it back on.
"""
from __future__ import annotations

import csv
import json
import re
import signal
import sys
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal

import duckdb

from vtdata import db as vtdb
from vtdata import tables
from vtdata.config import command
from vtdata.console import VtError

READ_TYPES = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}  # DuckDB statement types (SHOW, DESCRIBE... are SELECT)
FORMATS = ("table", "csv", "json")


@dataclass
class SqlConfig:
    """Query the vt database read-only (samples, rejects, judgments, rollouts, curated, ...)."""

    query: str = field(metadata={"argument": True})
    """One or more read-only statements (SELECT, WITH, FROM, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN, PRAGMA, CALL),
    e.g. "SELECT task, count(*) FROM samples GROUP BY ALL"."""
    db: str | None = None
    """DuckDB file (default: $VT_DB, else ./vt.duckdb)."""
    format: Literal["table", "csv", "json"] = field(default="table", metadata={"flags": ["-f"]})
    """table (aligned, for people), csv or json (for programs); results go to stdout."""
    allow_files: bool = False
    """Let queries read other files (read_csv, read_parquet, glob, ...) besides the database (reading only:
    COPY, EXPLAIN ANALYZE of anything but a query, and profiling output stay refused)."""
    timeout: float = field(default=300.0, metadata={"min": 0.001, "max": 7 * 86400.0})
    """Seconds a query may run before it is stopped (Ctrl-C stops it too)."""
    max_rows: int = field(default=1000, metadata={"min": 1})
    """--format table: print at most this many rows (the count of the rest is printed); csv and json stream
    every row."""
    memory_limit: str = "2GB"
    """DuckDB's memory limit for the query (e.g. 512MB, 4GB); beyond it a query spills or fails."""

    def __post_init__(self):
        if self.format not in FORMATS:
            raise VtError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")


def sandbox(allow_files: bool, memory_limit: str | None = None) -> dict:
    """DuckDB settings of a `vt sql` connection (locked: SET/PRAGMA cannot change them)."""
    return {"enable_external_access": allow_files, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False, "lock_configuration": True,
            **({"memory_limit": memory_limit} if memory_limit else {})}


_EXPLAIN = re.compile(r"(?is)^\s*EXPLAIN\s+(?:\((?P<opts>[^)]*)\)\s*|(?P<an>ANALY[SZ]E)\s+)?(?P<rest>.*)$")


def _check_read(con, s) -> None:
    """Refuse a statement that writes: only reads pass, and EXPLAIN ANALYZE (which runs its statement)
    only of a read; profiling settings (which write a file) are refused."""
    kind = s.type.name
    if kind not in READ_TYPES:
        raise VtError(f"vt sql is read-only: refusing a {kind} statement (queries only: SELECT, WITH, "
                      f"SHOW, DESCRIBE, SUMMARIZE, EXPLAIN...; the vt commands write the tables)")
    text = s.query
    if kind == "EXPLAIN":
        m = _EXPLAIN.match(text)
        if m and (m.group("an") or "analy" in (m.group("opts") or "").lower()):
            try:
                inner = con.extract_statements(m.group("rest"))
            except duckdb.Error:
                inner = []
            if len(inner) != 1 or inner[0].type.name != "SELECT":
                raise VtError("vt sql is read-only: EXPLAIN ANALYZE runs its statement; only of a query (SELECT)")
    if kind == "PRAGMA" and re.search(r"(?i)profil|=", text):
        raise VtError("vt sql is read-only: refusing a PRAGMA that sets an option (profiling writes files)")


def _sql_error(err: Exception, cfg, con, path) -> VtError:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, duckdb.InterruptException) or "interrupt" in msg.lower():
        return VtError(f"query stopped (--timeout {cfg.timeout:g}s or Ctrl-C)")
    if "read-only" in msg.lower():
        return VtError(f"vt sql is read-only: {msg}")
    if isinstance(err, duckdb.PermissionException) and not cfg.allow_files:
        return VtError(f"vt sql reads the database only: {msg} (pass --allow-files to let "
                       f"queries read local files)")
    if isinstance(err, duckdb.OutOfMemoryException):
        return VtError(f"query needs more than --memory-limit {cfg.memory_limit}: {msg}")
    if msg.startswith("Catalog Error") and "does not exist" in msg:
        msg += f" (tables in {path}: {_tables(con)})"
    return VtError(f"SQL error: {msg}")


@contextmanager
def _watchdog(con, seconds: float) -> Iterator[None]:
    """Stop the connection's query after `seconds` and on Ctrl-C (DuckDB checks for an interrupt while it
    works: the query ends within about a second)."""
    timer = threading.Timer(seconds, con.interrupt)
    timer.daemon = True
    old = None
    if threading.current_thread() is threading.main_thread():
        def on_int(signum, frame):
            con.interrupt()
            raise KeyboardInterrupt
        old = signal.signal(signal.SIGINT, on_int)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if old is not None:
            signal.signal(signal.SIGINT, old)


BATCH = 4096  # rows fetched at a time: results are streamed, never fetched whole


@contextmanager
def stream_sql(cfg: SqlConfig):
    """Execute the query on a read-only, sandboxed connection under the watchdog; yields (column names,
    an iterator of the last statement's rows, fetched in batches)."""
    path = cfg.db or str(vtdb.default_db())
    con = vtdb.connect(path, read_only=True, config=sandbox(cfg.allow_files, cfg.memory_limit))
    try:
        try:
            stmts = con.extract_statements(cfg.query)
        except duckdb.Error as err:
            raise VtError(f"SQL error: {str(err).splitlines()[0]}") from None
        if not stmts:
            raise VtError("empty query")
        for s in stmts:
            _check_read(con, s)
        with _watchdog(con, cfg.timeout):
            try:
                for s in stmts[:-1]:
                    con.execute(s.query)
                rel = con.execute(stmts[-1].query)
            except (duckdb.Error, RuntimeError) as err:  # DuckDB 2.x: an interrupt is RuntimeError("Query interrupted")
                raise _sql_error(err, cfg, con, path) from None
            cols = [d[0] for d in rel.description or []]

            def rows():
                if not rel.description:
                    return
                while True:
                    try:
                        batch = rel.fetchmany(BATCH)
                    except (duckdb.Error, RuntimeError) as err:
                        raise _sql_error(err, cfg, con, path) from None
                    if not batch:
                        return
                    yield from batch
            yield cols, rows()
    finally:
        con.close()


def run_sql(cfg: SqlConfig):
    """Execute the query on a read-only connection; returns (column names, rows) of the last statement."""
    with stream_sql(cfg) as (cols, rows):
        return cols, list(rows)


def _tables(con) -> str:
    return ", ".join(sorted(tables.existing(con))) or "none"


def _cell(v):
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    return v


def _escape(text: str) -> str:
    """Control characters, bidi overrides and other invisible format characters as escapes (\\x1b,
    \\u202e): data cannot move the cursor, recolour or reorder the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else
                   (repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs")
                    else c) for c in text)


def print_result(cols, rows, fmt: str, out=None, max_rows: int | None = None) -> None:
    """Print a result: csv and json row by row as they come; a table of at most `max_rows` rows (the
    rows beyond are counted, not kept), its cells with control characters escaped."""
    out = out or sys.stdout
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([json.dumps(v, default=str) if isinstance(v, (list, dict)) else _cell(v) for v in r])
    elif fmt == "json":
        out.write("[")
        for n, r in enumerate(rows):
            out.write(("," if n else "") + "\n" + json.dumps(dict(zip(cols, map(_cell, r))), default=str,
                                                            ensure_ascii=False))
        out.write("\n]\n")
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(*(_escape(str(c)) for c in cols), show_edge=False, header_style="bold")
        n = 0
        for r in rows:
            n += 1
            if max_rows is None or n <= max_rows:
                t.add_row(*("NULL" if v is None else _escape(str(_cell(v))) for v in r))
        Console(file=out, width=max(100, 22 * len(cols)), markup=False).print(t)
        more = f"; {n - max_rows} not shown (--max-rows {max_rows}; --format csv or json prints every row)" \
            if max_rows is not None and n > max_rows else ""
        Console(file=out, markup=False).print(f"({n} row{'s' if n != 1 else ''}{more})", highlight=False)


def run(cfg: SqlConfig) -> None:
    with stream_sql(cfg) as (cols, rows):
        print_result(cols, rows, cfg.format, max_rows=cfg.max_rows)


sql_command = command(SqlConfig, run)
