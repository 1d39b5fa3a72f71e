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
    # vt score-judge: one row per rollout (policy, protocol, input, view, index) and its verdict; the keys
    # (vtdata/provenance.py) say what made a row: another prompt, sampling, budget or view makes new rows
    "score_protocols": """CREATE TABLE IF NOT EXISTS score_protocols (
    protocol VARCHAR PRIMARY KEY, policy VARCHAR, settings JSON, created TIMESTAMP)""",
    "rollouts": """CREATE TABLE IF NOT EXISTS rollouts (
    policy VARCHAR NOT NULL,
    protocol VARCHAR NOT NULL,        -- score_protocols.protocol: prompt, sampling, seed, budget, weights
    input_sha VARCHAR NOT NULL,       -- question, gold answers and the pixels of both views sent
    sample_id VARCHAR NOT NULL,       -- the sample that first asked for it (input_sha is the key)
    view VARCHAR NOT NULL,            -- 'low' | 'high'
    idx INTEGER NOT NULL,             -- 0..k-1
    text VARCHAR,
    generated_tokens INTEGER,
    visual_tokens INTEGER,
    latency_s DOUBLE,
    finish_reason VARCHAR,
    temperature DOUBLE,
    score DOUBLE,                     -- NULL until judged, and when the judge failed
    judge_status VARCHAR,             -- NULL (not judged yet) | 'ok' | 'error'
    judge_reason VARCHAR,
    prediction VARCHAR,
    judge VARCHAR,                    -- the run's judge (its identity): a different judge re-judges
    verdict_by VARCHAR,               -- what produced the verdict (an LLM, a rule, the format check)
    created TIMESTAMP,
    judged TIMESTAMP,
    PRIMARY KEY (policy, protocol, input_sha, view, idx)
)""",
    # vt score-judge: one row per policy, protocol, dataset and sample: correct counts and the label
    "sufficiency": """CREATE TABLE IF NOT EXISTS sufficiency (
    policy VARCHAR NOT NULL,
    protocol VARCHAR NOT NULL,
    dataset_sha VARCHAR NOT NULL,     -- content hash of the scored dataset (all rows, all splits)
    sample_id VARCHAR NOT NULL,
    input_sha VARCHAR,                -- the rollouts' input (rollouts.input_sha)
    source VARCHAR,
    task VARCHAR,
    split VARCHAR,
    dataset VARCHAR,                  -- the scored dataset directory (vt curate reads the rows there)
    k INTEGER,
    low_correct INTEGER,
    high_correct INTEGER,
    low_judged INTEGER,               -- rollouts with an 'ok' verdict among the first k
    high_judged INTEGER,
    low_visual_tokens INTEGER,
    high_visual_tokens INTEGER,
    label VARCHAR,
    judge VARCHAR,
    updated TIMESTAMP,
    PRIMARY KEY (policy, protocol, dataset_sha, sample_id)
)""",
    # views over sufficiency (vt score-judge), one group per label set (policy, protocol, dataset);
    # tokens_saved: visual tokens if every sample used the high view vs. if the low_ok ones used the low view
    "label_counts": """CREATE OR REPLACE VIEW label_counts AS
    SELECT policy, protocol, dataset_sha, source, label, count(*) AS samples
    FROM sufficiency GROUP BY ALL ORDER BY policy, protocol, dataset_sha, source, label""",
    "low_vs_high_accuracy": """CREATE OR REPLACE VIEW low_vs_high_accuracy AS
    SELECT policy, protocol, dataset_sha, source, count(*) AS samples,
           round(sum(low_correct) / sum(k), 4) AS low_accuracy,
           round(sum(high_correct) / sum(k), 4) AS high_accuracy,
           round(sum(high_correct - low_correct) / sum(k), 4) AS high_minus_low
    FROM sufficiency WHERE label <> 'incomplete' GROUP BY ALL ORDER BY policy, protocol, dataset_sha, source""",
    "tokens_saved": """CREATE OR REPLACE VIEW tokens_saved AS
    SELECT policy, protocol, dataset_sha, source, count(*) AS samples,
           count(*) FILTER (WHERE label = 'low_ok') AS low_ok,
           sum(high_visual_tokens) AS high_visual_tokens,
           sum(CASE WHEN label = 'low_ok' THEN low_visual_tokens ELSE high_visual_tokens END) AS routed_visual_tokens,
           round(1 - sum(CASE WHEN label = 'low_ok' THEN low_visual_tokens ELSE high_visual_tokens END)
                     / sum(high_visual_tokens), 4) AS share_saved
    FROM sufficiency WHERE label <> 'incomplete' GROUP BY ALL ORDER BY policy, protocol, dataset_sha, source""",
    # vt eval: one row per run / per run and sample (verdict fields NULL until judged)
    "eval_runs": """CREATE TABLE IF NOT EXISTS eval_runs (
    run VARCHAR PRIMARY KEY, mode VARCHAR, policy VARCHAR, data VARCHAR, split VARCHAR,
    judge VARCHAR, config JSON, started TIMESTAMP, finished TIMESTAMP, samples INTEGER,
    wall_s DOUBLE, predictions_path VARCHAR)""",
    "eval_predictions": """CREATE TABLE IF NOT EXISTS eval_predictions (
    run VARCHAR, sample_id VARCHAR, doc_id INTEGER, source VARCHAR, task VARCHAR, mode VARCHAR,
    question VARCHAR, answers VARCHAR[], answer_type VARCHAR, choices VARCHAR[],
    turns VARCHAR[], response VARCHAR, prediction VARCHAR, tool_call VARCHAR, resized BOOLEAN,
    score DOUBLE, status VARCHAR, reason VARCHAR, judge VARCHAR,
    visual_tokens INTEGER, low_visual_tokens INTEGER, full_visual_tokens INTEGER,
    generated_tokens INTEGER, latency_s DOUBLE, wall_s DOUBLE, created TIMESTAMP, zoomed BOOLEAN,
    PRIMARY KEY (run, sample_id));
    ALTER TABLE eval_predictions ADD COLUMN IF NOT EXISTS zoomed BOOLEAN""",  # a database from before the zoom tool
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
