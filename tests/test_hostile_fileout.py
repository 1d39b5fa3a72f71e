"""Round 3, class 6: `vt judge --out` (every file output) is written to a temp file of its own process and
renamed, under the one-writer lock directories use (vtdata.outdir.atomic_file)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from build_helpers import REPO, vt
from fake_openai import FakeOpenAI
from vtdata.console import VtError


def _input(path, n=6):
    path.write_text("".join(json.dumps({"id": str(i), "question": f"q{i}", "answer": "a", "prediction": "a"}) + "\n"
                            for i in range(n)))
    return path


def _judge(inp, out, url):
    return subprocess.Popen([sys.executable, "-c", "from vt.cli import main; main()", "judge", str(inp), "--out",
                             str(out), "--judge", "openai:m", "--judge-base-url", url, "--no-cache",
                             "--concurrency", "1", "--no-shortcut"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_judges_on_one_out_one_refused_and_the_file_whole(tmp_path):
    inp = _input(tmp_path / "in.jsonl")
    out = tmp_path / "o.jsonl"
    with FakeOpenAI(latency=1.5) as srv:  # 6 requests one at a time: the first run holds the lock ~9 s
        a = _judge(inp, out, srv.url)
        lock = out.with_name(f".{out.name}.lock")
        deadline = time.time() + 60
        while not lock.exists() and a.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # the second run starts once the first is judging (not after a fixed sleep)
        b = _judge(inp, out, srv.url)
        rb = b.communicate(timeout=120)
        ra = a.communicate(timeout=120)
    assert sorted([a.returncode, b.returncode]) == [0, 2], (ra, rb)
    loser = rb if b.returncode == 2 else ra
    assert "Traceback" not in loser[1] and "being written" in loser[1], loser[1]
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(ln)["status"] == "ok" for ln in lines)


def test_a_failed_judge_leaves_the_previous_out_untouched(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text("previous\n")
    from vtdata.outdir import atomic_file
    with pytest.raises(RuntimeError):
        with atomic_file(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["o.jsonl"]


def test_judge_out_that_is_its_input_is_refused(tmp_path):
    inp = _input(tmp_path / "in.jsonl")
    before = inp.read_text()
    r = vt("judge", inp, "--out", inp)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert inp.read_text() == before
