"""Every DuckDB table and view vt writes, declared in one place, and the one query for which exist.

A stage creates what it writes with `ensure(con, name, ...)` (idempotent: CREATE ... IF NOT EXISTS,
CREATE OR REPLACE VIEW) and checks what an earlier stage left with `existing(con)`. A view's tables
are named before it. `vt sql` reads them all; the README's "Tables" section describes the columns.
"""
from __future__ import annotations

DDL: dict[str, str] = {
    # vt build-data: one row per kept sample (no image bytes) / per rejected input row
    "samples": """CREATE TABLE IF NOT EXISTS samples (
        dataset VARCHAR, id VARCHAR, source VARCHAR, task VARCHAR, question VARCHAR, answers VARCHAR[],
        answer_type VARCHAR, choices VARCHAR[], image_sha256 VARCHAR, width INTEGER, height INTEGER,
        low_width INTEGER, low_height INTEGER, high_width INTEGER, high_height INTEGER, split VARCHAR,
        meta VARCHAR)""",
    "rejects": """CREATE TABLE IF NOT EXISTS rejects (
        dataset VARCHAR, source VARCHAR, source_row VARCHAR, reason VARCHAR, stage VARCHAR)""",
    # the judges' cache (vtdata.judge.cache): one row per paid-for LLM verdict
    "judgments": """CREATE TABLE IF NOT EXISTS judgments (
        key VARCHAR PRIMARY KEY,
        judge VARCHAR,
        question VARCHAR,
        answers VARCHAR[],
        prediction VARCHAR,
        score DOUBLE,
        reason VARCHAR,
        tokens INTEGER,
        latency_s DOUBLE,
        created TIMESTAMP)""",
    # vt curate: one row per chosen sample of a named set
    "curated": """CREATE TABLE IF NOT EXISTS curated (
        name VARCHAR NOT NULL,
        sample_id VARCHAR NOT NULL,
        source VARCHAR,
        label VARCHAR,
        use_tool BOOLEAN,
        filled BOOLEAN,               -- an `ambiguous` sample chosen by --fill-short
        policy VARCHAR,
        dataset VARCHAR,
        rank INTEGER,                 -- position in the output files
        created TIMESTAMP,
        PRIMARY KEY (name, sample_id))""",
}


def ensure(con, *names: str) -> None:
    """Create the named tables and views (in this order) where they do not exist yet."""
    for name in names:
        con.execute(DDL[name])


def existing(con) -> set[str]:
    """Names of the tables and views in the database."""
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def columns(con, table: str) -> set[str]:
    """Column names of a table or view (empty when it does not exist)."""
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
