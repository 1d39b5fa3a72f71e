"""vt report: every stage's section, images that exist and are referenced, "not run yet" for missing stages."""
from __future__ import annotations

import json
import re
from html import escape as html_escape
from pathlib import Path

import pytest
from PIL import Image

from eval_helpers import ScriptedScoring, ScriptedThink, eval_data, val_rows
from fake_openai import FakeOpenAI
from vtdata.dataset import iter_samples
from vtdata.console import VtError
from vttrain.demo import vt
from vttrain.eval import EvalConfig, run as run_eval
from vttrain.report.report import NOT_RUN, ReportConfig, build_report, curated_balance, eval_points, scoring_accuracy


def _images(page: Path) -> list[str]:
    return re.findall(r"<img src='([^']+)'", page.read_text())


def _table_rows(html: str) -> list[dict]:
    """The rows of the first <table> in `html` as {header: cell text}."""
    table = html.split("<table>", 1)[1].split("</table>", 1)[0]
    head = re.findall(r"<th>(.*?)</th>", table)
    return [dict(zip(head, re.findall(r"<td>(.*?)</td>", tr))) for tr in table.split("<tr>")[2:]]


def _write_metrics(run_dir: Path, steps: int) -> None:
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"step": s, "reward": 0.1 * s, "resize_ratio": 1.0 / s, "penalty_share": 0.25,
                         "accuracy": 0.5}) for s in range(1, steps + 1)]
    lines.append(json.dumps({"step": steps, "train_runtime": 12.0}))  # the trainer's closing line
    lines.append('{"step": 9, "rew')  # a line cut by a crash is skipped
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def every_stage(tmp_path_factory):
    """A database with every stage (scoring, curation, full / low / think eval runs), two training runs'
    metrics and the report of all of it: (tmp dir, db, report dir, dataset rows, val rows)."""
    tmp_path = tmp_path_factory.mktemp("every-stage")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", "sk-test")
        return _build_every_stage(tmp_path)


def _build_every_stage(tmp_path):
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
    plan = {r["id"]: "call" if r["source"] == "synth-ocr" else "direct" for r in rows}
    with FakeOpenAI(responder=ScriptedThink(rows, plan)) as srv:  # resizes every OCR sample, no general one
        run_eval(EvalConfig(data=str(data), policy="openai:s", policy_base_url=srv.url, mode="think", db=str(db),
                            name="r-think", out=str(tmp_path)))
    _write_metrics(tmp_path / "run-a", 4)
    _write_metrics(tmp_path / "run-b", 2)
    out = tmp_path / "report"
    vt(["report", "--db", str(db), "--out", str(out), "--runs", str(tmp_path / "run-a"), "--runs",
        str(tmp_path / "run-b")])
    return tmp_path, db, out, everything, rows


def test_report_with_every_stage(every_stage):
    tmp_path, db, out, everything, rows = every_stage

    page = out / "index.html"
    html = page.read_text()
    assert NOT_RUN not in html
    imgs = _images(page)
    assert sorted(imgs) == ["plots/curated.png", "plots/scoring.png", "plots/sources.png", "plots/tradeoff.png",
                            "plots/training.png"]
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
    # the first page: per source, the latest full / low / think run; think resized exactly the OCR samples
    first = html.split("<section>")[1]
    assert first.startswith("<h2>Summary") and "think resize %" in first and "r-think" in first
    n_ocr, n_gen = (sum(1 for r in rows if r["source"] == s) for s in ("synth-ocr", "synth-general"))
    share = 100 * n_ocr / (n_ocr + n_gen)
    by_source = {r["source"]: r for r in _table_rows(first)}
    assert by_source["synth-ocr"]["think resize %"] == "100.0" and by_source["synth-general"]["think resize %"] == "0.0"
    assert by_source["all"]["think resize %"] == f"{share:.1f}"
    # think's tokens: 25 % plus the full view of the resized share; low is 25 %, full 100 %
    assert by_source["synth-ocr"]["think tokens %"] == "125.0" and by_source["synth-general"]["think tokens %"] == "25.0"
    assert by_source["all"]["low tokens %"] == "25.0" and by_source["all"]["full acc %"] == "100.0"
    assert by_source["all"]["think judge errors"] == "0"
    # the eval section's per-source table carries each source's resize %
    assert "resize synth-ocr %" in html and "resize synth-general %" in html
    # without --runs, the run directories beside the database are found
    found = build_report(ReportConfig(out=str(tmp_path / "report2"), db=str(db))).read_text()
    assert "<td>run-a</td>" in found and "<td>run-b</td>" in found and NOT_RUN not in found


PROBE = """<script>window.addEventListener('load', () => {
  const cells = t => [...t.querySelectorAll('tr')].map(r => [...r.children].map(c => c.innerText.trim()));
  const out = {images: [...document.images].map(i => [i.getAttribute('src').slice(0, 40), i.complete, i.naturalWidth,
                                                         i.getBoundingClientRect().width]),
               sections: [...document.querySelectorAll('h2')].map(h => h.innerText),
               first: cells(document.querySelector('section table')),
               text: document.body.innerText};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def _browser():
    import shutil
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)


def test_report_renders_in_a_headless_browser(every_stage, tmp_path):
    """The page as a browser shows it: every plot and thumbnail loads and has a size, the summary comes first
    with its per-source numbers, no Python reprs. Skips where no Chromium is installed (`apt-get install
    chromium`)."""
    import html as html_lib
    import subprocess
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser (chromium) installed")
    _, _, out, _, rows = every_stage
    probe = out / "probe.html"  # beside index.html, so the plots' relative paths resolve
    probe.write_text((out / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                        "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                       capture_output=True, text=True, timeout=180)
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", r.stdout, re.S)
    assert found, r.stderr[-2000:]
    page = json.loads(html_lib.unescape(found.group(1)))
    plots = [i for i in page["images"] if i[0].startswith("plots/")]
    thumbs = [i for i in page["images"] if i[0].startswith("data:image/jpeg")]
    assert len(plots) == 5 and len(thumbs) == len(page["images"]) - 5 > 0
    for src, complete, natural, shown in page["images"]:  # loaded, decoded and laid out
        assert complete and natural >= (300 if src.startswith("plots/") else 20) and shown > 20, src
    assert page["sections"][0].startswith("Summary") and len(page["sections"]) == 5
    head, *body = page["first"]
    by_source = {row[0]: dict(zip(head, row)) for row in body}
    assert set(by_source) == {r["source"] for r in rows} | {"all"}
    assert by_source["synth-ocr"]["think resize %"] == "100.0" and by_source["synth-general"]["think resize %"] == "0.0"
    assert "True" not in page["text"] and "False" not in page["text"] and "None" not in page["text"]


def test_report_missing_stages_are_not_run_yet(tmp_path, monkeypatch):
    import duckdb
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    out = tmp_path / "r"
    page = build_report(ReportConfig(out=str(out), db=str(db), runs=[str(tmp_path / "no-such-run")]))
    html = page.read_text()
    assert html.count(NOT_RUN) == 5 and _images(page) == []  # the summary and the four stages
    assert list((out / "plots").iterdir()) == []
    # no database at all (the cwd has no vt.duckdb, no $VT_DB): an error, not an empty page
    monkeypatch.delenv("VT_DB", raising=False)
    with pytest.raises(VtError, match="no such database"):
        build_report(ReportConfig(out=str(tmp_path / "r2"), db=None))
    assert not (tmp_path / "r2").exists()
    monkeypatch.setenv("VT_DB", str(db))  # $VT_DB stands for --db
    assert build_report(ReportConfig(out=str(tmp_path / "r3"), db=None)).read_text().count(NOT_RUN) == 5
    (tmp_path / "a-file").write_text("")
    with pytest.raises(VtError, match="is a file"):
        build_report(ReportConfig(out=str(tmp_path / "a-file"), db=str(db)))
    assert (tmp_path / "a-file").read_text() == ""
    with pytest.raises(VtError, match="no such database"):
        build_report(ReportConfig(out=str(tmp_path / "r3"), db=str(tmp_path / "missing.duckdb")))


def test_report_shows_run_configs_example_rollouts_and_flags_all_zero_runs(tmp_path):
    import json

    import yaml

    from vttrain.report.report import ReportConfig, _training
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
    assert body.count("<code>s0</code>") == 1 and "<code>s1</code>" in body and "old" not in body  # one per group, last step
    assert "red &amp; blue" in body                                          # turns escaped
    assert "<td>0.0002</td>" in body and "<td>0.00</td>" not in body.split("Run configs")[1].split("</table>")[0]
    assert "<td>yes</td>" in body and "<td>no</td>" in body and "True" not in body  # resized, not Python bools
    assert "started from <code>m</code>" in body                             # the base model / warm start


def test_report_training_curves_are_smoothed_means_not_one_step(tmp_path):
    from vttrain.report.report import ReportConfig, _training
    from vttrain.report.plots import PANELS
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": i, "reward": float(i), "resize_ratio": 0.5, "accuracy_direct": 0.8, "accuracy_resized": 0.4,
              "format_pass_rate": 1.0, "kl": 1e-4 * i, "entropy": 0.7, "visual_tokens_per_sample": 80.0 + i,
              "judge_error_share": 0.0 if i < 20 else 0.5, "learning_rate": 1e-6} for i in range(1, 21)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    plots = tmp_path / "plots"
    plots.mkdir()
    sec = _training(ReportConfig(runs=[str(run)]), plots)
    row = _table_rows(sec.body)[0]
    assert row["logged steps"] == "20" and row["mean of last"] == "2"
    assert row["reward"] == "19.50"                       # mean of the last 2 steps, not step 20's 20.00
    assert row["kl"] == "0.00195" and row["judge_error_share"] == "0.25"
    assert row["accuracy_direct"] == "0.80" and row["accuracy_resized"] == "0.40"
    with Image.open(plots / "training.png") as im:  # one panel per curve, a 3-column grid
        assert im.size[0] > 1000 and im.size[1] > 250 * ((len(PANELS) + 2) // 3)


THUMB_RE = re.compile(r"<img class='thumb' src='data:image/jpeg;base64,([^']+)' width='(\d+)' "
                      r"alt='(low|high) view (\d+)×(\d+)'")


def _thumbs(html: str) -> list[tuple[str, Image.Image, int, tuple[int, int]]]:
    """(view, decoded thumbnail, shown width, the view's size in the alt text) of every thumbnail."""
    import base64
    import io
    out = []
    for data, shown, which, w, h in THUMB_RE.findall(html):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()
        out.append((which, im, int(shown), (int(w), int(h))))
    return out


def _check_pair(pair, row: dict) -> None:
    """Low then high view of `row`, both scaled by one factor (longer high side THUMB), shown equally wide."""
    from vttrain.report.examples import THUMB
    scale = min(1.0, THUMB / max(row["high_width"], row["high_height"]))
    for (which, im, shown, alt), view in zip(pair, ("low", "high")):
        size = (row[f"{view}_width"], row[f"{view}_height"])
        assert which == view and alt == size and im.format == "JPEG"
        assert im.size == (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        assert shown == round(row["high_width"] * scale)
    assert pair[0][1].size[0] * pair[0][1].size[1] < pair[1][1].size[0] * pair[1][1].size[1]


def test_example_rollouts_show_both_views_and_survive_a_missing_dataset(tmp_path):
    import yaml

    from vttrain.report.report import _training
    data = eval_data()
    rows = list(iter_samples(data, split="train"))[:3]
    run = tmp_path / "train-paper"
    _write_metrics(run, 2)
    (run / "vt_train_config.yaml").write_text(yaml.safe_dump({"model": "m", "data_dir": str(data)}))
    rolls = [{"step": 2, "group": g, "id": r["id"], "used_high": g == 1, "score": float(g != 2), "penalty": 0.0,
              "reward": 1.0, "turns": ["<tool_call>resize</tool_call>", f"<answer>{r['answers'][0]}</answer>"]}
             for g, r in enumerate(rows)]
    (run / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rolls))
    plots = tmp_path / "plots"
    plots.mkdir()
    body = _training(ReportConfig(runs=[str(run)]), plots).body
    thumbs = _thumbs(body)
    assert len(thumbs) == 2 * len(rows) == body.count("<img")     # two views per example rollout
    for k, row in enumerate(rows):
        _check_pair(thumbs[2 * k:2 * k + 2], row)
        assert html_escape(row["question"]) in body and f"<answer>{row['answers'][0]}" not in body
    assert "turn 1" in body and "turn 2" in body and "correct (1)" in body and "wrong (0)" in body
    assert len(body) < 60_000                                      # small inline JPEGs, not the images

    # a sample the dataset lacks: the others keep their pictures, the note says how many are missing
    rolls[0]["id"] = "not-in-the-set"
    (run / "rollouts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rolls))
    body = _training(ReportConfig(runs=[str(run)]), plots).body
    assert len(_thumbs(body)) == 4 and f"no thumbnails: 1 of these samples not in {data}" in body

    # the dataset is gone: the rollouts are still listed, with a visible note instead of pictures
    (run / "vt_train_config.yaml").write_text(yaml.safe_dump({"model": "m", "data_dir": str(tmp_path / "gone")}))
    body = _training(ReportConfig(runs=[str(run)]), plots).body
    assert "<img" not in body and "no thumbnails: dataset" in body and str(tmp_path / "gone") in body
    assert all(r["id"] in body for r in rows[1:]) and "not-in-the-set" in body
    (run / "vt_train_config.yaml").unlink()                        # a run that does not name its data
    assert "no thumbnails: the run does not name its dataset" in _training(ReportConfig(runs=[str(run)]), plots).body


def test_eval_examples_of_a_think_run_show_both_views(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)
    plan = {r["id"]: "call" if r["task"] == "ocr" else "direct" for r in rows}
    with FakeOpenAI(responder=ScriptedThink(rows, plan)) as srv:
        run_eval(EvalConfig(data=str(data), policy="openai:s", policy_base_url=srv.url, mode="think", db=str(db),
                            name="r-think", out=str(tmp_path)))
    html = build_report(ReportConfig(out=str(tmp_path / "report"), db=str(db))).read_text()
    section = html[html.index("Example rollouts (think mode"):]
    thumbs = _thumbs(section)
    shown = re.findall(r"<code>([0-9a-f]+)</code>", section)
    assert len(shown) == 4 and len(thumbs) == 8                   # PER_RUN examples, two views each
    by_id = {r["id"]: r for r in rows}
    for k, sid in enumerate(shown):
        _check_pair(thumbs[2 * k:2 * k + 2], by_id[sid])
    assert {plan[s] for s in shown} == {"call", "direct"}          # resized and direct answers both shown
