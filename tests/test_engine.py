"""The rollout engine on its own: what a chunk generates, stores and judges, given what is stored already;
the think mode's turns (N turns, tool and error turns, the last turn cannot call)."""
from __future__ import annotations

import asyncio

import duckdb
import pytest

from score_helpers import small_data
from vtdata import protocol
from vtdata.dataset import iter_samples
from vtdata.judge import Verdict
from vttrain.rollout import engine
from vttrain.rollout.policy import Generation, Policy, as_request

DDL = ("CREATE TABLE t (run VARCHAR, sample_id VARCHAR, idx INTEGER, text VARCHAR, n_turns INTEGER, "
       "tool_call VARCHAR, visual_tokens INTEGER, score DOUBLE, status VARCHAR, reason VARCHAR, "
       "prediction VARCHAR, by_ VARCHAR, judge VARCHAR, PRIMARY KEY (run, sample_id, idx))")
COLUMNS = ("run", "sample_id", "idx", "text", "n_turns", "tool_call", "visual_tokens")


class Script(Policy):
    """Answers each conversation with `reply(messages)`; None = a backend failure. Records every request."""
    identity = "test:script"

    def __init__(self, reply):
        self.reply, self.requests = reply, []

    async def agenerate(self, requests):
        out = []
        for i, r in enumerate(as_request(x) for x in requests):
            self.requests.append(r)
            images = [p["image"] for m in r.messages if isinstance(m["content"], list)
                      for p in m["content"] if p.get("type") == "image"]
            visual = sum((im.size[0] // 28) * (im.size[1] // 28) for im in images)
            for j in range(r.n):
                text = self.reply(r.messages)
                out.append(Generation(text or "", 3, visual, 0.0, "stop", i, j,
                                      error=None if text is not None else "down"))
        return out


class Judge:
    identity = "test:judge"

    def __init__(self, down=False):
        self.down, self.items = down, []

    async def ajudge(self, items):
        self.items += items
        return [Verdict(None, "error", "down", None, "x") if self.down else
                Verdict(1.0, "ok", "r", it.response[-5:], "x") for it in items]


def _store(con, judge_identity=None):
    return engine.Store(con, "t", ("run", "sample_id", "idx"), COLUMNS, "text",
                        {"score": "score", "status": "status", "reason": "reason", "prediction": "prediction",
                         "judge": "by_"}, judge_column="judge" if judge_identity else None,
                        judge_identity=judge_identity)


def _record(r, now):
    run, sid, idx = r.job.key
    return {"run": run, "sample_id": sid, "idx": idx, "text": r.response, "n_turns": len(r.turns),
            "tool_call": r.tool_call, "visual_tokens": r.visual_tokens}


def _run(con, jobs, policy, judge, settings=None, judge_identity=None):
    async def go():
        return [res async for res in engine.run([jobs], policy=policy, judge=judge, store=_store(con, judge_identity),
                                                settings=settings or engine.Settings(), record=_record)]
    return asyncio.run(go())[0]


def _rows(n=3):
    return list(iter_samples(small_data()))[:n]


def test_a_chunk_generates_only_what_is_missing_and_judges_only_what_lacks_a_verdict():
    con = duckdb.connect()
    con.execute(DDL)
    rows = _rows()
    jobs = [engine.Job(("r", s["id"], i), s, "low") for s in rows for i in range(2)]
    fail_first = {"n": 0}

    def reply(messages):
        fail_first["n"] += 1
        return None if fail_first["n"] == 1 else "<answer>x</answer>"
    pol = Script(reply)
    res = _run(con, jobs, pol, Judge(down=True))
    # one request per sample and view, n = its jobs; the failed generation is not stored
    assert [r.n for r in pol.requests] == [2, 2, 2]
    assert len(res.failed) == 1 and len(res.generated) == 5
    assert con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'error') FROM t").fetchall() == [(5, 5)]
    # rerun: only the missing job is generated; every stored one (judge was down) is judged again, none regenerated
    pol2, judge = Script(lambda m: "<answer>y</answer>"), Judge()
    res = _run(con, jobs, pol2, judge)
    assert sum(r.n for r in pol2.requests) == 1 and len(res.generated) == 1
    assert len(judge.items) == 6 and len(res.judged) == 6
    assert con.execute("SELECT count(*) FROM t WHERE status = 'ok' AND score = 1").fetchall() == [(6,)]
    # everything done: nothing generated, nothing judged
    pol3, judge3 = Script(lambda m: 1 / 0), Judge()
    res = _run(con, jobs, pol3, judge3)
    assert pol3.requests == [] and judge3.items == [] and res.judged == []
    # another judge identity re-judges stored text (score-judge's rule), still without generating
    judge4 = Judge()
    res = _run(con, jobs, pol3, judge4, judge_identity="another")
    assert len(judge4.items) == 6 and pol3.requests == []
    assert con.execute("SELECT DISTINCT judge FROM t").fetchall() == [("another",)]


def test_think_mode_takes_up_to_max_turns_and_the_last_turn_cannot_call():
    con = duckdb.connect()
    con.execute(DDL)
    rows = _rows(3)
    call = f"<think>t</think>\n{protocol.CALL_EXAMPLE}"
    bad = '<think>t</think>\n<tool_call>{"name": "nope", "arguments": {}}</tool_call>'
    plan = {rows[0]["id"]: [call, "<answer>a</answer>"], rows[1]["id"]: [bad, call, call],
            rows[2]["id"]: ["<answer>b</answer>"]}
    seen: dict = {}

    def reply(messages):
        user = messages[1]["content"]
        sid = next(s["id"] for s in rows if any(p.get("text", "").endswith(s["question"]) for p in user))
        turn = sum(m["role"] == "assistant" for m in messages)
        seen.setdefault(sid, []).append([m["role"] for m in messages])
        return plan[sid][turn]
    jobs = [engine.Job(("r", s["id"], 0), s, "think") for s in rows]
    res = _run(con, jobs, Script(reply), Judge(), engine.Settings(max_turns=3))
    got = {r.job.key[1]: r for r in res.generated}
    a, b, c = (got[s["id"]] for s in rows)
    assert [len(a.turns), a.tool_call, a.response] == [2, "ok", "<answer>a</answer>"]
    assert [len(b.turns), b.tool_call] == [3, "ok"]  # an error turn, then a call answered, then a cut call
    assert [len(c.turns), c.tool_call] == [1, "none"]
    low, high = (rows[0][f"{v}_width"] // 28 * (rows[0][f"{v}_height"] // 28) for v in ("low", "high"))
    assert a.visual_tokens == low + high and c.visual_tokens == rows[2]["low_width"] // 28 * (rows[2]["low_height"] // 28)
    # b: the error turn carries no image, so its third turn saw the low and one high view
    assert seen[rows[1]["id"]][1] == ["system", "user", "assistant", "user"]
    assert b.visual_tokens == low + high
    assert con.execute("SELECT sample_id, n_turns, tool_call FROM t ORDER BY n_turns").fetchall() == \
        sorted([(s["id"], n, t) for s, n, t in zip(rows, (2, 3, 1), ("ok", "ok", "none"))], key=lambda x: x[1])


def test_store_insert_replaces_a_stored_key_and_appends_the_rest():
    """Store.insert tries a plain INSERT first (fast); a key stored already (two runs into one table) must
    still end as one row holding the new text, with the batch's other rows appended, nothing lost."""
    con = duckdb.connect()
    con.execute(DDL)
    store = engine.Store(con, "t", ("run", "sample_id", "idx"), COLUMNS, "text", {})
    store.insert([{"run": "r", "sample_id": "a", "idx": 0, "text": "old"}])
    store.insert([{"run": "r", "sample_id": "a", "idx": 0, "text": "new"},
                  {"run": "r", "sample_id": "b", "idx": 0, "text": "b0"}])
    assert con.execute("SELECT sample_id, text FROM t ORDER BY sample_id").fetchall() == [("a", "new"), ("b", "b0")]


def test_insert_rows_without_replace_still_refuses_a_stored_key():
    from vtdata.db import insert_rows
    con = duckdb.connect()
    con.execute(DDL)
    insert_rows(con, "t", [{"run": "r", "sample_id": "a", "idx": 0, "text": "old"}], COLUMNS)
    with pytest.raises(duckdb.ConstraintException):
        insert_rows(con, "t", [{"run": "r", "sample_id": "a", "idx": 0, "text": "new"}], COLUMNS)
    assert con.execute("SELECT text FROM t").fetchall() == [("old",)]
