"""The paper's claim on the miniature, checked on every landing (`.ci/run` runs `make test-science`): the
model reads from the IMAGE whether the low view suffices. Marked `science` (left out of `make test`).

`vt demo` on a fixed seed (build `manifests/sufficiency.yaml` -> the warm start, built once (~5 min on 2 cores)
then cached in VT_CACHE -> score-judge -> curate -> one GRPO run with the paper's penalty -> eval). The SAME
question ("What pattern fills the grey box?") must be resized on fine images (1-px stripes: only the high view
shows them) and answered directly on coarse ones (4-px stripes: the low view shows them), while the warm start
called the tool at the same rate on both. The same run without the penalty (`penalty_mode none`) must keep
resizing coarse images: a broken penalty fails this test."""
import json
import os
import subprocess
import sys

import duckdb
import pytest

pytestmark = [pytest.mark.science, pytest.mark.slow]


def _vt(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "vt", *map(str, args)], capture_output=True, text=True, timeout=3000,
                         env=env)
    assert res.returncode == 0, res.stderr[-3000:]


def _eval(db, run) -> dict:
    """{source: (accuracy, resize ratio)} of one eval run."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {s: (a, r) for s, a, r in con.execute(
            "SELECT source, avg(score), avg(resized::INT) FROM eval_predictions WHERE run = ? GROUP BY 1",
            [run]).fetchall()}
    finally:
        con.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("science") / "demo"
    _vt("demo", "--out", out, "--seed", "0")
    return out


def test_the_warm_start_calls_the_tool_at_the_same_rate_on_every_source(demo):
    init = json.loads((demo / "model" / "vt_init.json").read_text())
    calls = init["call_probability"]
    rates = [calls[s] for s in ("general", "coarse", "fine")]
    assert max(rates) - min(rates) < 0.05 and 0.2 < min(rates) and max(rates) < 0.8, calls
    assert calls["choice_mass"] > 0.9 and calls["sentence_mass"] > 0.9, calls
    # what turn 1 says is the model's reading of the view, taught in SFT from its contrast: on this data it
    # coincides with the source (the README and the model card say so); the call after it is not taught
    said = init["sentence_probability"]
    assert said["fine"]["The grey box looks flat."] > 0.9 and said["coarse"]["The grey box looks striped."] > 0.9, said


def test_grpo_resizes_the_same_question_on_fine_images_only(demo):
    think, full = _eval(demo / "vt.duckdb", "demo-think"), _eval(demo / "vt.duckdb", "demo-full")
    assert think["fine"][1] >= 0.8 and think["coarse"][1] <= 0.2 and think["general"][1] <= 0.2, think
    assert think["fine"][0] >= 0.95 * full["fine"][0], (think, full)
    for s in ("coarse", "general"):
        assert think[s][0] >= full[s][0] - 0.02, (s, think, full)


def test_without_the_penalty_coarse_images_keep_resizing(demo, tmp_path):
    """The same warm start, curated set and seed, GRPO with penalty_mode none (the demo's own commands)."""
    from vt import shipped
    run = tmp_path / "train-none"
    _vt("train", shipped("train-mini.yaml"), "--model", demo / "model", "--data_dir", demo / "curated",
        "--output_dir", run, "--penalty_mode", "none", "--seed", "0")
    _vt("eval", "--model", run / "final", "--data", demo / "data", "--mode", "think", "--limit", "64",
        "--name", "none-think", "--max-new-tokens", "16", "--db", tmp_path / "vt.duckdb", "--out", tmp_path / "evals")
    resize = _eval(tmp_path / "vt.duckdb", "none-think")
    assert resize["coarse"][1] >= 0.5, resize
