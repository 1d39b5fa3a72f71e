"""The miniature learns (marked `science`, left out of `make test`; run with `make test-science`). The
real warm start is built once, about 4 minutes on 2 cores, then cached in VT_CACHE; the GRPO runs take
about 4 minutes each.

`vt demo` on a fixed seed: after SFT the mini model calls the tool at about the same rate on both classes;
GRPO with the paper's balanced penalty makes it resize detail questions and answer general ones from the
low view. The same run without the penalty (`penalty_mode none`) must not get the general class down:
a broken penalty fails this test."""
import json
import os
import subprocess
import sys

import duckdb
import pytest

pytestmark = [pytest.mark.science, pytest.mark.slow]


def _demo(out, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "vt", "demo", "--out", str(out), "--seed", "0", *extra],
                         capture_output=True, text=True, timeout=3000, env=env)
    assert res.returncode == 0, res.stderr[-3000:]


def _think_resize(db, run="demo-think") -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT source, avg(resized::INT) FROM eval_predictions WHERE run = ? GROUP BY 1",
                                [run]).fetchall())
    finally:
        con.close()


def _first_steps(run_dir, n=10) -> tuple[float, ...]:
    """Mean resize ratio of needs_high and of low_ok rollouts over the first n steps that logged each
    (a step whose batch holds no row of a class logs null for it)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out = []
    for key in ("resize_ratio_needs_high", "resize_ratio_low_ok"):
        vals = [r[key] for r in rows if isinstance(r.get(key), float)][:n]
        out.append(sum(vals) / len(vals))
    return tuple(out)


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    out = tmp_path_factory.mktemp("science") / "demo"
    _demo(out)
    return out


def test_grpo_with_the_balanced_penalty_resizes_only_detail_questions(paper):
    needs_high, low_ok = _first_steps(paper / "train")
    assert 0.2 <= needs_high <= 0.8 and 0.2 <= low_ok <= 0.8, (needs_high, low_ok)  # untaught at the start
    resize = _think_resize(paper / "vt.duckdb")
    assert resize["mini-detail"] >= 0.7 and resize["mini-general"] <= 0.3, resize


def test_without_the_penalty_general_questions_keep_resizing(paper, tmp_path):
    """The same warm start, curated set and seed, GRPO with penalty_mode none (the demo's own commands)."""
    from vt import shipped
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    vt = [sys.executable, "-m", "vt"]
    run = tmp_path / "train-none"
    for args in (["train", shipped("train-mini.yaml"), "--model", paper / "model", "--data_dir", paper / "curated",
                  "--output_dir", run, "--penalty_mode", "none", "--seed", "0"],
                 ["eval", "--model", run / "final", "--data", paper / "data", "--mode", "think", "--limit", "64",
                  "--name", "none-think", "--max-new-tokens", "16", "--db", tmp_path / "vt.duckdb",
                  "--out", tmp_path / "evals"]):
        res = subprocess.run(vt + [str(a) for a in args], capture_output=True, text=True, timeout=3000, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
    resize = _think_resize(tmp_path / "vt.duckdb", "none-think")
    assert resize["mini-general"] >= 0.5, resize
