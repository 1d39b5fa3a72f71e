"""`vt eval` as a user types it: a scripted policy over HTTP, the printed tables, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from eval_helpers import ScriptedThink, eval_data, val_rows
from fake_openai import FakeOpenAI

VT = [sys.executable, "-c", "from vt.cli import main; main()"]


def _vt(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "VT_TEST_KEY": "sk-test"}
    return subprocess.run(VT + [str(a) for a in args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_eval_then_compare(tmp_path):
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)
    plan = {r["id"]: ("call", "direct", "bad")[i % 3] for i, r in enumerate(rows)}
    n_requests = len(rows) + sum(1 for v in plan.values() if v != "direct")  # a call or a bad call: 2 turns
    with FakeOpenAI(responder=ScriptedThink(rows, plan)) as srv:
        res = _vt("eval", "--policy", "openai:scripted", "--policy-base-url", srv.url, "--policy-api-key-env",
                  "VT_TEST_KEY", "--data", data, "--mode", "think", "--db", db, "--out", tmp_path)
        assert res.returncode == 0, res.stderr
        assert srv.requests == n_requests
        again = _vt("eval", "--policy", "openai:scripted", "--policy-base-url", srv.url, "--data", data,
                    "--mode", "think", "--db", db, "--out", tmp_path)
        assert again.returncode == 0 and f"{len(rows)} done, 0 to run" in again.stderr
        assert srv.requests == n_requests  # nothing regenerated
    run = "scripted-think-val"  # the default name: <model>-<mode>-<split>
    assert (tmp_path / f"{run}.jsonl").is_file()
    table = res.stdout  # the per-source table goes to stdout
    assert "synth-general" in table and "synth-ocr" in table and "resize%" in table
    cmp_ = _vt("compare", run, "--db", db)
    assert cmp_.returncode == 0 and run in cmp_.stdout and "vis. tokens %" in cmp_.stdout
    # `vt judge` reads the predictions JSONL back and reaches the same verdicts
    judged = _vt("judge", tmp_path / f"{run}.jsonl", "--out", tmp_path / "rejudged.jsonl", "--judge", "auto",
                 "--extract", "tags", "--no-cache")
    assert judged.returncode == 0, judged.stderr
    mine = [json.loads(x) for x in (tmp_path / f"{run}.jsonl").read_text().splitlines()]
    theirs = [json.loads(x) for x in (tmp_path / "rejudged.jsonl").read_text().splitlines()]
    assert [(x["id"], x["score"]) for x in theirs] == [(x["id"], x["score"]) for x in mine]
    assert {x["score"] for x in mine} == {0.0, 1.0}


def test_cli_errors_are_one_line(tmp_path):
    data = eval_data()
    (tmp_path / "a-file").write_text("")
    cases = [
        (["--data", data, "--model", "x", "--mode", "bogus"], "--mode must be one of"),
        (["--data", tmp_path / "nope", "--model", "x"], "no such directory"),
        (["--data", tmp_path, "--model", "x"], "not a built vt dataset"),
        (["--data", data, "--model", "x", "--policy", "openai:y"], "exactly one of --model"),
        (["--data", data, "--model", tmp_path / "no-model"], "no such directory"),
        (["--data", data, "--model", "x", "--system-prompt", "nope"], "neither a shipped prompt"),
        (["--data", data, "--model", "x", "--judge-base-url", "http://h"], "applies to openai: judges only"),
        (["--data", data, "--model", "x", "--out", tmp_path / "a-file"], "cannot create the directory"),
    ]
    cases = [("eval", args, msg) for args, msg in cases] + [
        ("compare", ["a", "--db", tmp_path / "none.duckdb"], "does not exist"),
        ("compare", [], "missing RUNS"),
    ]
    for cmd, args, msg in cases:
        res = _vt(cmd, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert msg in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
