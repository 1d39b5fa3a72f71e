"""score-judge killed with SIGKILL mid-run, then rerun: complete, duplicate-free, nothing paid for twice
beyond the requests in flight at the kill. Policy and judge are both an OpenAI-compatible loopback server."""
from __future__ import annotations

import hashlib
import json
import re
import os
import signal
import subprocess
import sys
import threading
from collections import Counter

import duckdb
import pytest

from fake_openai import FakeOpenAI, judge_responder
from score_helpers import samples, small_data


def _is_policy(req) -> bool:
    return any(isinstance(m.get("content"), list) for m in req["messages"])


def _untagged(messages) -> str:
    """A judge request without its per-request verdict tag (drawn afresh for every request): the same item
    sent twice gives the same text."""
    text = json.dumps(messages)
    tag = re.search(r"Verdict ([0-9a-f]{8})", text)
    return text.replace(tag.group(1), "<tag>") if tag else text


@pytest.mark.parametrize("kill_during", ["generation", "judging"])
def test_kill_and_resume(tmp_path, kill_during):
    data, db, k, conc = small_data(), tmp_path / "vt.duckdb", 2, 1
    rows = samples(data)
    n, n_open = len(rows), sum(s["answer_type"] == "open" for s in rows)
    # every 'open' rollout goes to the LLM judge (the policy's answers never equal a gold answer)
    kill_at = {"generation": 13, "judging": n_open * k}[kill_during]  # the n-th request of that kind kills
    victim = {"generation": "policy", "judging": "judge"}[kill_during]
    state = {"policy": 0, "judge": 0, "proc": None}
    lock = threading.Lock()

    def responder(req):
        kind = "policy" if _is_policy(req) else "judge"
        with lock:
            state[kind] += 1
            count = state[kind]
        if kind == victim and count == kill_at and state["proc"] is not None:
            os.kill(state["proc"].pid, signal.SIGKILL)
        return f"<think>look</think><answer>word{count}</answer>" if kind == "policy" else judge_responder(req)

    with FakeOpenAI(responder) as srv:
        env = dict(os.environ, VT_TEST_KEY="sk-test")
        cmd = [sys.executable, "-m", "vt", "-q", "score-judge", "--data", str(data), "--db", str(db),
               "--split", "all", "--rollouts", str(k), "--concurrency", str(conc),
               "--policy", "openai:fake-policy", "--policy-base-url", srv.url, "--policy-api-key-env", "VT_TEST_KEY",
               "--judge", "openai:fake-judge", "--judge-base-url", srv.url, "--judge-api-key-env", "VT_TEST_KEY"]
        state["proc"] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = state["proc"].communicate(timeout=120)
        assert state["proc"].returncode == -signal.SIGKILL, err
        first_log = list(srv.log)
        state["proc"] = None
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        log = list(srv.log)

    con = duckdb.connect(str(db), read_only=True)
    per_view = con.execute("SELECT sample_id, view, count(*), count(DISTINCT idx), max(idx) FROM rollouts "
                           "GROUP BY ALL").fetchall()
    assert len(per_view) == 2 * n and all(r[2:] == (k, k, k - 1) for r in per_view)
    assert con.execute("SELECT count(*) FROM rollouts WHERE judge_status IS DISTINCT FROM 'ok'").fetchone()[0] == 0
    labels = con.execute("SELECT label, count(*) FROM sufficiency GROUP BY 1").fetchall()
    assert sum(c for _, c in labels) == n and "incomplete" not in dict(labels)
    # every stored rollout's answer really came from the server, and each exactly once
    texts = [t for (t,) in con.execute("SELECT text FROM rollouts").fetchall()]
    assert len(set(texts)) == len(texts) == 2 * n * k

    policy_calls = [q for q in log if _is_policy(q)]
    judge_calls = Counter(hashlib.sha256(_untagged(q["messages"]).encode()).hexdigest()
                          for q in log if not _is_policy(q))
    in_flight = conc * 2 * k  # one chunk's requests at most were lost with the process
    assert 0 < len([q for q in first_log if _is_policy(q)]) < 2 * n * k  # killed mid-run
    assert 2 * n * k <= len(policy_calls) <= 2 * n * k + in_flight
    assert len(judge_calls) == n_open * 2 * k
    repeated = sum(c - 1 for c in judge_calls.values())
    if kill_during == "generation":
        assert repeated == 0  # every verdict before the kill was kept
    else:
        assert repeated <= in_flight


def test_a_resumed_run_asks_the_server_for_the_same_samples(tmp_path):
    """Each rollout's `seed` comes from its key, not from its position in a call: scoring 3 samples and then
    the rest sends every (input, answer) the seed that one uninterrupted run sends (a seeded server such as
    vLLM then returns the same rollouts either way)."""
    data = small_data()

    def sent(log) -> Counter:
        return Counter((json.dumps(q["messages"]), q["seed"]) for q in log if _is_policy(q))

    with FakeOpenAI(lambda req: "<answer>x</answer>") as srv:
        def run(db, *extra):
            r = subprocess.run([sys.executable, "-m", "vt", "-q", "score-judge", "--data", str(data), "--db", str(db),
                                "--split", "all", "--rollouts", "3", "--concurrency", "2", "--judge", "auto",
                                "--policy", "openai:fake-policy", "--policy-base-url", srv.url, *extra],
                               capture_output=True, text=True, timeout=120, env=dict(os.environ, OPENAI_API_KEY="x"))
            assert r.returncode == 0, r.stderr
            out = list(srv.log)
            srv.log.clear()
            return sent(out)

        whole = run(tmp_path / "a.duckdb")
        resumed = run(tmp_path / "b.duckdb", "--limit", "3") + run(tmp_path / "b.duckdb")
    assert sum(whole.values()) == 2 * 3 * len(samples(data)) and max(whole.values()) == 1
    assert resumed == whole
