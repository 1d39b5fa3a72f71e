"""The judgments cache: DuckDB table `judgments`, one row per paid-for verdict.

Key = sha256 of (judge identity incl. model, prompt version, temperature; question; gold answers;
extracted prediction). Only LLM verdicts with status 'ok' are stored (rule verdicts are free, errors
are retried next time). Lookups are one query per batch; writes are buffered and inserted as one
Arrow batch every `flush_every` rows or `flush_seconds` seconds by one writer thread (so the event
loop never waits on the disk), and at the end of every call (waited for: what a call returns is
stored). Each insert is a DuckDB transaction, so a kill -9 loses at most the uncommitted rows (the
batch being inserted and those buffered since: under 2 x flush_every) and never corrupts the file
(DuckDB replays its WAL).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pyarrow as pa

from vtdata import tables
from vtdata.console import console
from vtdata.db import connect

COLUMNS = ("key", "judge", "question", "answers", "prediction", "score", "reason", "tokens", "latency_s", "created")


def cache_key(identity: str, question: str, answers: list[str], prediction: str) -> str:
    payload = json.dumps([identity, question, list(answers), prediction], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, db, flush_every: int = 256, flush_seconds: float = 5.0) -> None:
        """db: a path (opened read-write here) or an open DuckDB connection (a cursor of it is used,
        so the caller's connection can live in another thread)."""
        self._owned = not hasattr(db, "execute")
        self._db = connect(db) if self._owned else db
        with self._cursor() as cur:
            tables.ensure(cur, "judgments")
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self._rows: list[tuple] = []
        self._oldest = 0.0
        self.written = 0
        self.failed = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vt-judge-cache")
        self._pending = None

    @contextmanager
    def _cursor(self):
        """A short-lived cursor: lookups (loop thread) and inserts (writer thread) never share one,
        and a caller's database is not kept open after the caller closes its connection."""
        cur = self._db.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def lookup(self, keys: list[str]) -> dict[str, tuple]:
        """key -> (score, reason, tokens, latency_s) for the keys present; one query."""
        if not keys:
            return {}
        wanted = pa.table({"key": pa.array(list(dict.fromkeys(keys)), pa.string())})
        with self._cursor() as cur:
            cur.register("_vt_wanted", wanted)
            rows = cur.execute(
                "SELECT j.key, j.score, j.reason, j.tokens, j.latency_s FROM judgments j "
                "JOIN _vt_wanted w ON j.key = w.key").fetchall()
            cur.unregister("_vt_wanted")
        return {r[0]: r[1:] for r in rows}

    def add(self, key: str, judge: str, question: str, answers: list[str], prediction: str,
            score: float, reason: str, tokens: int, latency_s: float) -> None:
        if not self._rows:
            self._oldest = time.monotonic()
        self._rows.append((key, judge, question, list(answers), prediction, score, reason, tokens,
                           latency_s, time.time()))
        if len(self._rows) >= self.flush_every or time.monotonic() - self._oldest >= self.flush_seconds:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered rows to the writer thread; wait=True blocks until they are stored."""
        if self._rows:
            rows, self._rows = self._rows, []
            self._pending = self._writer.submit(self._insert, rows)
        if wait and self._pending is not None:
            self._pending.result()

    def _insert(self, rows: list[tuple]) -> None:
        cols = list(zip(*rows))
        table = pa.table({
            "key": pa.array(cols[0], pa.string()), "judge": pa.array(cols[1], pa.string()),
            "question": pa.array(cols[2], pa.string()), "answers": pa.array(cols[3], pa.list_(pa.string())),
            "prediction": pa.array(cols[4], pa.string()), "score": pa.array(cols[5], pa.float64()),
            "reason": pa.array(cols[6], pa.string()), "tokens": pa.array(cols[7], pa.int32()),
            "latency_s": pa.array(cols[8], pa.float64()),
            "created": pa.array([dt.datetime.fromtimestamp(t) for t in cols[9]], pa.timestamp("us")),
        })
        try:
            with self._cursor() as cur:
                cur.register("_vt_batch", table)
                cur.execute(f"INSERT OR IGNORE INTO judgments SELECT {', '.join(COLUMNS)} FROM _vt_batch")
                cur.unregister("_vt_batch")
        except Exception as err:  # the verdicts are still returned; only their caching failed
            self.failed += len(rows)
            console.print(f"warning: could not cache {len(rows)} judgments: {err}", highlight=False)
            return
        self.written += len(rows)

    def close(self) -> None:
        try:
            self.flush(wait=True)
        finally:
            self._writer.shutdown(wait=True)
            if self._owned:
                self._db.close()
