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
import sys
from dataclasses import dataclass, field
from typing import Literal

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
    """Let queries read other files (read_csv, read_parquet, glob, ...) besides the database."""

    def __post_init__(self):
        if self.format not in FORMATS:
            raise VtError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")


def sandbox(allow_files: bool) -> dict:
    """DuckDB settings of a `vt sql` connection (locked: SET/PRAGMA cannot change them)."""
    return {"enable_external_access": allow_files, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False, "lock_configuration": True}


def run_sql(cfg: SqlConfig):
    """Execute the query on a read-only connection; returns (column names, rows) of the last statement."""
    path = cfg.db or str(vtdb.default_db())
    con = vtdb.connect(path, read_only=True, config=sandbox(cfg.allow_files))
    try:
        try:
            stmts = con.extract_statements(cfg.query)
        except duckdb.Error as err:
            raise VtError(f"SQL error: {str(err).splitlines()[0]}") from None
        if not stmts:
            raise VtError("empty query")
        for s in stmts:
            kind = s.type.name
            if kind not in READ_TYPES:
                raise VtError(f"vt sql is read-only: refusing a {kind} statement (queries only: SELECT, WITH, "
                              f"SHOW, DESCRIBE, SUMMARIZE, EXPLAIN...; the vt commands write the tables)")
        cols, rows = [], []
        for s in stmts:
            try:
                rel = con.execute(s.query)
                cols = [d[0] for d in rel.description or []]
                rows = rel.fetchall() if rel.description else []
            except duckdb.Error as err:
                msg = str(err).splitlines()[0]
                if "read-only" in msg.lower():
                    raise VtError(f"vt sql is read-only: {msg}") from None
                if isinstance(err, duckdb.PermissionException) and not cfg.allow_files:
                    raise VtError(f"vt sql reads the database only: {msg} (pass --allow-files to let "
                                  f"queries read local files)") from None
                if msg.startswith("Catalog Error") and "does not exist" in msg:
                    msg += f" (tables in {path}: {_tables(con)})"
                raise VtError(f"SQL error: {msg}") from None
        return cols, rows
    finally:
        con.close()


def _tables(con) -> str:
    return ", ".join(sorted(tables.existing(con))) or "none"


def _cell(v):
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    return v


def print_result(cols, rows, fmt: str, out=None) -> None:
    out = out or sys.stdout
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(cols)
        for r in rows:
            w.writerow([json.dumps(v, default=str) if isinstance(v, (list, dict)) else _cell(v) for v in r])
    elif fmt == "json":
        out.write(json.dumps([dict(zip(cols, map(_cell, r))) for r in rows], default=str, ensure_ascii=False,
                             indent=1) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(*cols, show_edge=False, header_style="bold")
        for r in rows:
            t.add_row(*("NULL" if v is None else str(_cell(v)) for v in r))
        Console(file=out, width=max(100, 22 * len(cols)), markup=False).print(t)
        Console(file=out, markup=False).print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", highlight=False)


def run(cfg: SqlConfig) -> None:
    print_result(*run_sql(cfg), cfg.format)


sql_command = command(SqlConfig, run)
