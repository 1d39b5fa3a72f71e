"""vt report: every stage's section, images that exist and are referenced, "not run yet" for missing stages."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from eval_helpers import ScriptedScoring, ScriptedThink, eval_data, val_rows
from fake_openai import FakeOpenAI
from vtdata.dataset import iter_samples
from vtdata.console import VtError
from vttrain.demo import vt
from vttrain.eval import EvalConfig, run_eval
from vttrain.report import NOT_RUN, ReportConfig, build_report, curated_balance, eval_points, scoring_accuracy


def _images(page: Path) -> list[str]:
    return re.findall(r"<img src='([^']+)'", page.read_text())


def _write_metrics(run_dir: Path, steps: int) -> None:
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"step": s, "reward": 0.1 * s, "resize_ratio": 1.0 / s, "penalty_share": 0.25,
                         "accuracy": 0.5}) for s in range(1, steps + 1)]
    lines.append(json.dumps({"step": steps, "train_runtime": 12.0}))  # the trainer's closing line
    lines.append('{"step": 9, "rew')  # a line cut by a crash is skipped
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_report_with_every_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data, db = eval_data(), tmp_path / "vt.duckdb"
    everything = list(iter_samples(data))
    with FakeOpenAI(responder=ScriptedScoring(everything, {"synth-general"})) as srv:
        vt(["score-judge", "--data", str(data), "--db", str(db), "--policy", "openai:scripted",
            "--policy-base-url", srv.url, "--rollouts", "2", "--split", "all"])
    vt(["curate", "--db", str(db), "--name", "t", "--per-class", "3", "--out", str(tmp_path / "cur")])
    rows = val_rows(data)
    with FakeOpenAI(responder=ScriptedThink(rows, {r["id"]: "full" for r in rows})) as srv:
        for mode in ("full", "low"):
            run_eval(EvalConfig(data=str(data), policy="openai:s", policy_base_url=srv.url, mode=mode, db=str(db),
                                name=f"r-{mode}", out=str(tmp_path)))
    _write_metrics(tmp_path / "run-a", 4)
    _write_metrics(tmp_path / "run-b", 2)
    out = tmp_path / "report"
    vt(["report", "--db", str(db), "--out", str(out), "--runs", str(tmp_path / "run-a"), "--runs",
        str(tmp_path / "run-b")])

    page = out / "index.html"
    html = page.read_text()
    assert NOT_RUN not in html
    imgs = _images(page)
    assert sorted(imgs) == ["plots/curated.png", "plots/scoring.png", "plots/tradeoff.png", "plots/training.png"]
    for rel in imgs:  # each referenced image exists and is a real PNG with content
        with Image.open(out / rel) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
            assert sum(1 for c in im.convert("L").histogram() if c) > 10  # not a blank canvas
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(Path(i).name for i in imgs)

    import duckdb
    con = duckdb.connect(str(db), read_only=True)
    try:
        scoring = {r["source"]: r for r in scoring_accuracy(con)}
        curated = curated_balance(con)
        points = {p["run"]: p for p in eval_points(con)}
    finally:
        con.close()
    n_src = {s: sum(1 for r in everything if r["source"] == s) for s in ("synth-general", "synth-ocr")}
    assert scoring["synth-general"]["low_acc"] == 1.0 and scoring["synth-ocr"]["low_acc"] == 0.0
    assert scoring["synth-general"]["high_acc"] == scoring["synth-ocr"]["high_acc"] == 1.0
    assert scoring["synth-general"]["low_ok"] == n_src["synth-general"]
    assert scoring["synth-ocr"]["needs_high"] == n_src["synth-ocr"]
    assert {(r["class"], r["n"]) for r in curated} == {("low_ok", 3), ("needs_high", 3)}
    assert points["r-full"]["visual_tokens_rel"] == 1.0 and points["r-low"]["visual_tokens_rel"] == 0.25
    assert points["r-full"]["accuracy"] == points["r-low"]["accuracy"] == 1.0
    # the tables carry the numbers: both runs, both training runs with their last logged values
    for text in ("r-full", "r-low", "run-a", "run-b", "<td>4</td>", "<td>0.40</td>", "<td>2</td>", "<td>0.20</td>"):
        assert text in html
    # without --runs, the run directories beside the database are found
    found = build_report(ReportConfig(out=str(tmp_path / "report2"), db=str(db))).read_text()
    assert "<td>run-a</td>" in found and "<td>run-b</td>" in found and NOT_RUN not in found


def test_report_missing_stages_are_not_run_yet(tmp_path, monkeypatch):
    import duckdb
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    out = tmp_path / "r"
    page = build_report(ReportConfig(out=str(out), db=str(db), runs=[str(tmp_path / "no-such-run")]))
    html = page.read_text()
    assert html.count(NOT_RUN) == 4 and _images(page) == []
    assert list((out / "plots").iterdir()) == []
    # no database at all (the cwd has no vt.duckdb, no $VT_DB): an error, not an empty page
    monkeypatch.delenv("VT_DB", raising=False)
    with pytest.raises(VtError, match="no such database"):
        build_report(ReportConfig(out=str(tmp_path / "r2"), db=None))
    assert not (tmp_path / "r2").exists()
    monkeypatch.setenv("VT_DB", str(db))  # $VT_DB stands for --db
    assert build_report(ReportConfig(out=str(tmp_path / "r3"), db=None)).read_text().count(NOT_RUN) == 4
    (tmp_path / "a-file").write_text("")
    with pytest.raises(VtError, match="cannot create the directory"):
        build_report(ReportConfig(out=str(tmp_path / "a-file"), db=str(db)))
    with pytest.raises(VtError, match="no such database"):
        build_report(ReportConfig(out=str(tmp_path / "r3"), db=str(tmp_path / "missing.duckdb")))


def test_report_shows_run_configs_example_rollouts_and_flags_all_zero_runs(tmp_path):
    import json

    import yaml

    from vttrain.report import ReportConfig, _training
    run = tmp_path / "train-paper"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "reward": 0.0, "resize_ratio": 0.0,
                                                           "penalty_share": 0.0}) + "\n" for i in (1, 2)))
    (run / "vt_train_config.yaml").write_text(yaml.safe_dump({"model": "m", "penalty_mode": "paper", "seed": 3,
                                                              "learning_rate": 2e-4, "num_generations": 8}))
    rolls = [{"step": 2, "group": g, "id": f"s{g}", "used_high": g == 1, "score": 1.0, "penalty": 0.1 * g,
              "reward": 1.4, "turns": ["<think>a</think><tool_call>x</tool_call>", "<answer>red & blue</answer>"]}
             for g in (0, 0, 1)] + [{"step": 1, "group": 5, "id": "old", "turns": []}]
    (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rolls) + "{cut by a crash\n")
    plots = tmp_path / "plots"
    plots.mkdir()
    body = _training(ReportConfig(runs=[str(run)]), plots).body
    assert "Every logged value is 0" in body
    assert "<td>paper</td>" in body and "<td>3</td>" in body                # the run's config
    assert body.count("<td>s0</td>") == 1 and "<td>s1</td>" in body and "old" not in body  # one per group, last step
    assert "red &amp; blue" in body                                          # turns escaped
