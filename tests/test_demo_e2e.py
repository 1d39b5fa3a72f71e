"""`vt demo` end to end (a subprocess, as `make demo` runs it), then a second run that reuses every stage."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import duckdb
import pytest

from vttrain.demo import EXAMPLE_QUERIES, MODES

VT = [sys.executable, "-c", "from vt.cli import main; main()"]
STAGES = ["build-data", "init-model", "score-judge", "curate", "train", "eval-full", "eval-low", "eval-think", "report"]


def _vt(args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(VT + list(args), capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_demo_runs_every_stage_then_reuses_them(tmp_path):
    out = tmp_path / "demo-out"
    # the defaults but smaller, so the suite stays quick; the code path is the one `make demo` takes
    # (a 10-step warm start: the real one is built and checked by the `science` tests)
    args = ["demo", "--out", str(out), "--score-limit", "8", "--eval-limit", "4", "--train-steps", "1",
            "--warm-steps", "10"]
    first = _vt(args)
    assert first.returncode == 0, first.stderr[-3000:]
    err = first.stderr
    for i, stage in enumerate(STAGES, 1):  # one summary line per stage
        assert re.search(rf"\[{i}/9\] {re.escape(stage)}\s+done in [\d.]+ s: \S", err), stage
    # artefacts where the epilogue says they are
    for rel in ("data/build.json", "model/config.json", "curated/build.json", "train/metrics.jsonl",
                "train/final/config.json", "report/index.html"):
        assert (out / rel).exists(), rel
        assert str(out / rel.split("/")[0]) in err
    for mode in MODES:
        lines = (out / "evals" / f"demo-{mode}.jsonl").read_text().splitlines()
        assert len(lines) == 4 and all(json.loads(x)["mode"] == mode for x in lines)
    html = (out / "report" / "index.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", html)
    want = {"sources", "scoring", "curated", "training", "resize_by_source", "resize_by_class", "tradeoff"}
    assert {i.removeprefix("plots/").removesuffix(".png") for i in imgs} == want, imgs  # one plot each
    assert all((out / "report" / i).is_file() for i in imgs)
    # the comparison table on stdout, with the token shares of the three modes
    assert all(f"demo-{m}" in first.stdout for m in MODES)
    con = duckdb.connect(str(out / "vt.duckdb"), read_only=True)
    try:
        per = dict(con.execute("SELECT run, sum(visual_tokens) / sum(full_visual_tokens) FROM eval_predictions "
                               "GROUP BY run").fetchall())
        scored = con.execute("SELECT count(*) FROM sufficiency").fetchone()[0]
    finally:
        con.close()
    assert per["demo-full"] == 1.0 and per["demo-low"] == 0.25 and 0.25 <= per["demo-think"] <= 1.25
    assert scored == 8
    logged = [json.loads(x) for x in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert max(x["step"] for x in logged) == 1
    # the three example queries of the epilogue run as printed
    for q in EXAMPLE_QUERIES:
        assert f"vt sql '{q}'" in err
        res = _vt(["sql", q, "--db", str(out / "vt.duckdb"), "--format", "csv"], timeout=120)
        assert res.returncode == 0 and len(res.stdout.strip().splitlines()) >= 2, (q, res.stderr)

    # second run: every stage reused, nothing rewritten
    stamp = (out / "report" / "index.html").stat().st_mtime_ns
    again = _vt(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count(" reused ") == 9 and "running vt" not in again.stderr
    assert (out / "report" / "index.html").stat().st_mtime_ns == stamp
    assert all(f"demo-{m}" in again.stdout for m in MODES)


def test_demo_force_refuses_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    res = _vt(["demo", "--out", str(tmp_path), "--force"], timeout=120)
    assert res.returncode == 2 and "not a vt demo directory" in res.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_stages_rerun_from_a_change_and_retrain_afresh(tmp_path, monkeypatch):
    """The demo's stage list through vtdata.stages, with each `vt` command replaced by one that writes the
    stage's outputs: a second run reuses everything; a changed curation reruns from there and deletes the
    old training run (trained afresh, not resumed from a checkpoint of other data)."""
    import dataclasses

    from vttrain import demo as demo_mod

    ran = []

    def fake_vt(args):
        ran.append(args[0])
        for st in d.stages():
            if st.args == list(args[:len(st.args)]):
                for p in st.outputs:
                    if p.suffix == ".duckdb":
                        duckdb.connect(str(p)).close()
                    elif p.suffix:
                        p.parent.mkdir(parents=True, exist_ok=True)
                        p.write_text("{}")
                    else:
                        p.mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(demo_mod, "vt", fake_vt)
    real_stages = demo_mod.Demo.stages
    monkeypatch.setattr(demo_mod.Demo, "stages", lambda self: [dataclasses.replace(s, summary=lambda: "ok")
                                                               for s in real_stages(self)])
    d = demo_mod.Demo(demo_mod.DemoConfig(out=str(tmp_path / "out")))
    first = d.run()
    assert [x["reused"] for x in first] == [False] * 9 and len(ran) == 9
    assert ran == ["build-data", "init-model", "score-judge", "curate", "train", "eval", "eval", "eval", "report"]
    (d.run_dir("paper") / "checkpoint-7").mkdir()
    ran.clear()
    assert all(x["reused"] for x in d.run()) and ran == []
    d = demo_mod.Demo(demo_mod.DemoConfig(out=str(tmp_path / "out"), per_class=5))
    again = d.run()
    assert [x["reused"] for x in again] == [True] * 3 + [False] * 6 and ran[0] == "curate"
    assert not (d.run_dir("paper") / "checkpoint-7").exists()


def test_a_stage_command_that_fails_stops_the_demo_with_one_line():
    """`vt()` runs a stage's command in-process: a usage error or a non-zero exit is a VtError, never a
    traceback or a status the demo would ignore (typer bundles its own click exceptions)."""
    from vtdata.console import VtError
    from vttrain.demo import vt
    with pytest.raises(VtError, match="No such option: --bogus"):
        vt(["eval", "--bogus"])
    with pytest.raises(VtError, match="missing RUNS"):
        vt(["compare"])
