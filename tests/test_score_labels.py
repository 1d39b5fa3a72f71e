"""score-judge: tables, labels and thresholds, judge errors (in-process, tiny model / scripted policies)."""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math

import duckdb
import pytest

from models_helpers import tiny_model, tiny_model_dir
from score_helpers import CountingPolicy, NoCallPolicy, ScriptedPolicy, rollout_keys, samples, small_data
from vtdata.db import writer
from vtdata.judge import make_judge
from vttrain.models import build as models
from vttrain.rollout.policy import LocalPolicy
from vtdata import tables
from vttrain.score import TABLES, ScoreConfig, Thresholds, label_sql, make_judge_for, score


def expected_label(low: int, high: int, t: Thresholds) -> str:
    """The paper's rule (§3.5) with resolved thresholds: the oracle the scorer's SQL is checked against."""
    if low >= t.low_ok_low and high >= t.low_ok_high:
        return "low_ok"
    return "needs_high" if high - low >= t.needs_high_gap else "ambiguous"


def _run(cfg, db, policy, judge=None):
    with writer(db, "test") as con:
        j = judge(con) if judge else make_judge_for(cfg, con)
        try:
            return asyncio.run(score(cfg, con, policy, j))
        finally:
            j.close()


def _q(db, sql, params=None):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_tiny_model_fills_rollouts_and_sufficiency(tmp_path):
    data, db, k = small_data(), tmp_path / "vt.duckdb", 2
    model, proc = tiny_model()
    policy = LocalPolicy(str(tiny_model_dir()), model=model, processor=proc, batch_size=16)
    cfg = ScoreConfig(data=data, policy="local", rollouts=k, split="all", max_new_tokens=6, concurrency=4)
    result = _run(cfg, db, policy)
    rows = samples(data)
    assert result["samples"] == len(rows) and sum(result["labels"].values()) == len(rows)
    # exactly k rollouts per view per sample, judged
    got = _q(db, "SELECT sample_id, view, count(*), count(DISTINCT idx), max(idx), min(generated_tokens), "
                 "max(generated_tokens), count(*) FILTER (WHERE judge_status = 'ok'), min(visual_tokens), "
                 "max(visual_tokens) FROM rollouts GROUP BY ALL")
    assert len(got) == 2 * len(rows)
    by = {(r[0], r[1]): r for r in got}
    for s in rows:
        for view in ("low", "high"):
            _, _, n, distinct, top, lo, hi, judged, vmin, vmax = by[(s["id"], view)]
            assert (n, distinct, top, judged) == (k, k, k - 1, k)
            assert 1 <= lo <= hi <= 6
            assert vmin == vmax == models.visual_tokens(proc, (s[f"{view}_width"], s[f"{view}_height"]))
        assert by[(s["id"], "high")][8] == 4 * by[(s["id"], "low")][8]
    # labels agree with the stored verdicts
    suff = _q(db, "SELECT s.sample_id, s.label, s.low_correct, s.high_correct, "
                  "(SELECT count(*) FROM rollouts r WHERE r.sample_id = s.sample_id AND r.view = 'low' AND r.score >= 0.5), "
                  "(SELECT count(*) FROM rollouts r WHERE r.sample_id = s.sample_id AND r.view = 'high' AND r.score >= 0.5) "
                  "FROM sufficiency s")
    assert len(suff) == len(rows)
    t = Thresholds().resolve(k)
    for _, lab, lc, hc, lc2, hc2 in suff:
        assert (lc, hc) == (lc2, hc2) and lab == expected_label(lc, hc, t)
    # a rerun generates nothing and judges nothing
    stamp = _q(db, "SELECT max(created), max(judged) FROM rollouts")
    counting = CountingPolicy(policy)
    again = _run(cfg, db, counting)
    assert counting.rollouts == 0 and again["scored"] == 0
    assert _q(db, "SELECT max(created), max(judged) FROM rollouts") == stamp
    assert _q(db, "SELECT count(*) FROM tokens_saved") and _q(db, "SELECT count(*) FROM label_counts")


# (low correct, high correct) out of 8, the label under the paper's rule, the label with
# --needs-high-gap 5 --low-ok-high 7
PLAN = [((8, 8), "low_ok", "low_ok"), ((0, 6), "needs_high", "needs_high"), ((2, 8), "needs_high", "needs_high"),
        ((3, 8), "ambiguous", "needs_high"), ((8, 7), "ambiguous", "low_ok"), ((7, 8), "ambiguous", "ambiguous"),
        ((0, 0), "ambiguous", "ambiguous"), ((1, 6), "ambiguous", "needs_high")]


def _store_rollouts(db, rows, k, cfg, policy, plan):
    """Rollouts as if generated (under cfg's protocol): correct ones answer the gold answer, the others a wrong string."""
    now = dt.datetime.now()
    proto, inputs = rollout_keys(cfg, policy, cfg.data)
    out = []
    for s, ((lc, hc), _, _) in zip(rows, itertools.cycle(plan)):
        for view, c in (("low", lc), ("high", hc)):
            for i in range(k):
                text = f"<think>t</think><answer>{s['answers'][0] if i < c else 'qqqqqqqqqqqqqqqqqq'}</answer>"
                out.append((policy.identity, proto, inputs[s["id"]], s["id"], view, i, text, 5,
                            16 if view == "low" else 64, 0.1, "stop", 1.0, now))
    with writer(db, "test") as con:
        tables.ensure(con, *TABLES)
        con.executemany("INSERT INTO rollouts (policy, protocol, input_sha, sample_id, view, idx, text, generated_tokens, "
                        "visual_tokens, latency_s, finish_reason, temperature, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        out)


def test_labels_follow_thresholds_on_constructed_verdicts(tmp_path):
    data, db, k = small_data(), tmp_path / "vt.duckdb", 8
    rows = samples(data)
    cfg = ScoreConfig(data=data, policy="x", rollouts=k, split="all")
    _store_rollouts(db, rows, k, cfg, NoCallPolicy(), PLAN)
    _run(cfg, db, NoCallPolicy())
    got = dict(_q(db, "SELECT sample_id, label FROM sufficiency"))
    counts = {r[0]: r[1:] for r in _q(db, "SELECT sample_id, low_correct, high_correct FROM sufficiency")}
    for s, ((lc, hc), paper, _) in zip(rows, itertools.cycle(PLAN)):
        assert counts[s["id"]] == (lc, hc), s
        assert got[s["id"]] == paper, (s["id"], lc, hc)
    # new thresholds relabel the stored counts without any call
    cfg.thresholds = Thresholds(low_ok_high=7, needs_high_gap=5)
    _run(cfg, db, NoCallPolicy())
    got = dict(_q(db, "SELECT sample_id, label FROM sufficiency"))
    for s, (_, _, custom) in zip(rows, itertools.cycle(PLAN)):
        assert got[s["id"]] == custom


@pytest.mark.parametrize("k", [1, 2, 3, 8, 16])
def test_label_sql_follows_the_rule(k):
    con = duckdb.connect()
    combos = [(lo, hi) for lo in range(k + 1) for hi in range(k + 1)]
    for t in (Thresholds(), Thresholds(max(1, k - 1), k, 1), Thresholds(1, 1, k)):
        r = t.resolve(k)
        assert r.needs_high_gap == (t.needs_high_gap or math.ceil(6 * k / 8))
        con.execute("CREATE OR REPLACE TABLE s AS SELECT * FROM (VALUES " +
                    ", ".join(f"({lo}, {hi}, {k}, {k}, {k})" for lo, hi in combos) +
                    f", ({k}, {k}, {k}, {k - 1}, {k})) v(low_correct, high_correct, k, low_judged, high_judged)")
        sql = con.execute(f"SELECT low_correct, high_correct, low_judged, {label_sql(r)} FROM s").fetchall()
        full = {(lo, hi): lab for lo, hi, judged, lab in sql if judged == k}
        assert full == {(lo, hi): expected_label(lo, hi, r) for lo, hi in combos}
        assert [lab for _, _, judged, lab in sql if judged < k] == ["incomplete"]  # a rollout without a verdict


def test_judge_errors_leave_samples_incomplete_then_finish(tmp_path, monkeypatch):
    from fake_openai import FakeOpenAI, Reply, judge_responder
    monkeypatch.setenv("VT_TEST_KEY", "sk-test")
    data, db, k = small_data(), tmp_path / "vt.duckdb", 2
    rows = samples(data)
    open_ids = {s["id"] for s in rows if s["answer_type"] == "open"}
    assert open_ids and len(open_ids) < len(rows)
    # wrong answers of 'open' samples go to the LLM judge; the others are judged by rules
    policy = ScriptedPolicy(lambda q, size, j: f"<answer>guess {q[:12]} {size[0]} {j}</answer>")
    broken = {"on": True}

    def responder(req):
        return Reply(status=500) if broken["on"] else judge_responder(req)

    with FakeOpenAI(responder) as srv:
        def judge(con):
            return make_judge("openai:fake-judge", db=con, base_url=srv.url, api_key_env="VT_TEST_KEY",
                              max_attempts=1)
        cfg = ScoreConfig(data=data, policy="x", rollouts=k, split="all")
        first = _run(cfg, db, policy, judge)
        assert first["labels"].get("incomplete") == len(open_ids)
        bad = _q(db, "SELECT DISTINCT sample_id FROM rollouts WHERE judge_status = 'error' AND score IS NULL")
        assert {r[0] for r in bad} == open_ids
        assert {r[0] for r in _q(db, "SELECT sample_id FROM sufficiency WHERE label = 'incomplete'")} == open_ids
        errored = _q(db, "SELECT count(*) FROM rollouts WHERE judge_status = 'error'")[0][0]
        broken["on"] = False
        srv.reset()
        counting = CountingPolicy(policy)
        second = _run(cfg, db, counting, judge)
        assert counting.rollouts == 0  # nothing regenerated
        assert srv.requests == errored  # only the failed verdicts asked again
        assert "incomplete" not in second["labels"] and sum(second["labels"].values()) == len(rows)
        assert _q(db, "SELECT count(*) FROM rollouts WHERE judge_status <> 'ok' OR judge_status IS NULL")[0][0] == 0
