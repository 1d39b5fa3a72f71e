"""`vt judge`: vt and lmms-eval inputs, malformed lines, the summary, and kill -9 safety of the cache."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from fake_openai import FakeOpenAI, Reply
from vtdata.console import VtError
from vtdata.judge import JudgeSpec
from vtdata.judge.cli import JudgeConfig, run

ROOT = Path(__file__).resolve().parents[1]


def write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def read(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_cli_rules_vt_and_lmms_eval_lines_and_malformed_ones(tmp_path):
    from vt.cli import app
    src = write(tmp_path / "in.jsonl", [
        {"id": 1, "question": "Color?", "answer": "red", "prediction": "<think>.</think><answer>Red</answer>"},
        {"id": 2, "question": "How many?", "answers": ["47"], "prediction": "<answer>47%</answer>", "answer_type": "number"},
        "{broken json",
        {"id": 4, "question": "Pick", "answer": "B", "prediction": "<answer>\\boxed{B}</answer>",
         "answer_type": "mc", "choices": ["x", "y"]},
        {"id": 5, "question": "q"},                                                   # no answer
        {"doc_id": 6, "input": "Which city?", "target": "Paris", "filtered_resps": [["paris"]]},
        {"id": 7, "question": "q", "answer": "a", "prediction": "a", "answer_type": "weird"},
        {"id": 8, "question": "no tag", "answer": "x", "prediction": "I think x"},
        "",
    ])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["judge", str(src), "--out", str(out), "--judge", "auto", "--extract", "auto"])
    assert res.exit_code == 0, res.output
    rows = read(out)
    assert [r.get("id", r.get("doc_id")) for r in rows] == [1, 2, 4, 6, 8]
    assert [r["score"] for r in rows] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert all(r["status"] == "ok" and r["judge"] and r["reason"] for r in rows)
    assert rows[3]["extracted"] == "paris" and rows[3]["filtered_resps"] == [["paris"]]   # input kept
    # --extract tags: a prediction without <answer> tag is a format failure
    res = CliRunner().invoke(app, ["judge", str(src), "--out", str(out), "--judge", "auto", "--extract", "tags"])
    rows = read(out)
    assert rows[-1]["reason"] == "format: no <answer> tag" and rows[-1]["score"] == 0.0


def test_cli_reports_skipped_lines_and_refuses_an_empty_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vt", "judge",
                           str(write(tmp_path / "bad.jsonl", ["nope", {"question": "q"}])), "--out", str(tmp_path / "o.jsonl")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "skipped line 1" in proc.stderr and "skipped line 2" in proc.stderr
    assert "no judgeable line" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(VtError):
        run(JudgeConfig(input=tmp_path / "missing.jsonl", out=tmp_path / "o.jsonl"))


def test_cli_llm_errors_are_null_not_zero_and_rerun_is_cached(tmp_path):
    src = write(tmp_path / "in.jsonl", [{"id": i, "question": f"q{i}", "answer": f"gold {i}",
                                          "prediction": f"<answer>{'gold' if i % 2 else 'nope'} {i}</answer>"}
                                         for i in range(12)])
    out, db = tmp_path / "out.jsonl", tmp_path / "cache.duckdb"
    with FakeOpenAI() as srv:
        srv.push(Reply(status=500), Reply(status=500))    # the first item(s) to arrive fail (1 attempt each)
        cfg = JudgeConfig(input=src, out=out, judging=JudgeSpec("openai:fake", srv.url), db=db, concurrency=1,
                          max_attempts=1, shortcut=False)
        s = run(cfg)
        rows = read(out)
        assert s["errors"] == 2 and s["requests"] == 12
        errs = [r for r in rows if r["status"] == "error"]
        assert len(errs) == 2 and all(r["score"] is None for r in errs)
        assert all(r["score"] == (1.0 if r["id"] % 2 else 0.0) for r in rows if r["status"] == "ok")
        srv.reset()
        s = run(cfg)
        assert srv.requests == 2 and s["cache_hits"] == 10 and s["errors"] == 0   # only the failed ones
        srv.reset()
        s = run(cfg)
        assert srv.requests == 0 and s["cache_hits"] == 12


def test_kill_9_loses_at_most_the_unflushed_batch(tmp_path):
    n, conc, flush = 150, 4, 5
    src = write(tmp_path / "in.jsonl", [{"id": i, "question": f"question {i}", "answer": f"gold {i}",
                                          "prediction": f"<answer>pred {i}</answer>"} for i in range(n)])
    out, db = tmp_path / "out.jsonl", tmp_path / "vt.duckdb"
    with FakeOpenAI(latency=0.05) as srv:
        proc = subprocess.Popen([sys.executable, "-m", "vt", "-q", "judge", str(src), "--out", str(out),
                                 "--judge", "openai:fake", "--judge-base-url", srv.url, "--db", str(db), "--concurrency", str(conc),
                                 "--flush-every", str(flush)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while srv.requests < 60 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        time.sleep(0.1)
        paid = srv.requests
        assert 60 <= paid < n, proc.stderr.read()
        con = duckdb.connect(str(db), read_only=True)     # opens: not corrupted
        saved = con.execute("SELECT count(*) FROM judgments").fetchone()[0]
        con.close()
        # lost at most: the in-flight requests, the batch the writer thread was inserting, and the
        # rows buffered since (fewer than a batch)
        assert paid - conc - (2 * flush - 1) <= saved <= paid
        assert not out.exists()
        srv.reset()
        s = run(JudgeConfig(input=src, out=out, judging=JudgeSpec("openai:fake", srv.url), db=db, concurrency=conc))
        assert srv.requests == n - saved and s["cache_hits"] == saved      # resumes, pays only the rest
        assert len(read(out)) == n and all(r["status"] == "ok" for r in read(out))
