"""lmms-eval interop: `vt judge` reads real `--log_samples` lines, `vt eval` writes them (plus the
aggregate results JSON), and the OCRBench `contains` rule."""
import json

from typer.testing import CliRunner

from vtdata.judge import JudgeSpec
from vtdata.judge.cli import JudgeConfig, parse_line, run
try:
    from vtdata.judge.rules import contains
except ImportError:
    contains = None

# lines shaped as lmms-eval's evaluator writes them: the question only in `doc` / `arguments`
CHARTQA = {"doc_id": 0, "doc": {"type": "human_test", "question": "What is the value of the 2019 bar?", "answer": "47"},
           "target": "47", "arguments": ["What is the value of the 2019 bar?\nAnswer the question with a single word.",
                                         {"max_new_tokens": 16, "temperature": 0, "until": ["\n\n"]}, 0, "chartqa", "test"],
           "resps": [["47%"]], "filtered_resps": ["47%"], "doc_hash": "ab", "prompt_hash": "cd", "target_hash": "ef",
           "relaxed_overall": 1.0}
OCRBENCH = {"doc_id": 3, "doc": {"dataset": "IIIT5K", "question": "what is written in the image?",
                                 "answer": ["CENTRE"], "question_type": "Regular Text Recognition"},
            "target": ["CENTRE"], "arguments": ["what is written in the image?", {"max_new_tokens": 128}],
            "resps": [["The word is Centre."]], "filtered_resps": ["The word is Centre."]}
ARGS_ONLY = {"doc_id": 7, "doc": {"image_id": 12}, "target": ["yes", "yes", "no"],
             "arguments": ["Is there a dog?\nAnswer yes or no.", {"max_new_tokens": 8}],
             "resps": [["Yes"]], "filtered_resps": ["Yes"]}


def test_parse_real_lmms_eval_lines():
    c = parse_line(CHARTQA)
    assert c["question"] == "What is the value of the 2019 bar?" and c["answers"] == ["47"] and c["prediction"] == "47%"
    a = parse_line(ARGS_ONLY)
    assert a["question"].startswith("Is there a dog?") and a["answers"] == ["yes", "yes", "no"] and a["prediction"] == "Yes"
    o = parse_line(dict(OCRBENCH, target=None))  # no target: the doc's answer list
    assert o["answers"] == ["CENTRE"]


def test_contains_is_ocrbench_scoring():
    assert contains("The word is Centre.", ["CENTRE"]) == 1
    assert contains("line one\nSTOP", ["one stop"]) == 1 and contains("STOP", ["stop here"]) == 0
    assert contains("cent", ["CENTRE"]) == 0  # the gold must be in the prediction, not the reverse
    assert contains("anything", [""]) == 0


def test_vt_judge_on_an_lmms_eval_log(tmp_path):
    src = tmp_path / "samples_chartqa.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in (CHARTQA, OCRBENCH, ARGS_ONLY)))
    out = tmp_path / "judged.jsonl"
    stats = run(JudgeConfig(input=src, out=out, judging=JudgeSpec("rule:contains"), no_cache=True))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == [0, 3, 7] and [r["score"] for r in rows] == [1.0, 1.0, 1.0]
    from vt import cli
    res = CliRunner().invoke(cli.app, ["judge", str(src), "--out", str(tmp_path / "r.jsonl"), "--judge", "rule:relaxed", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])["score"] == 1.0


def test_vt_eval_writes_lmms_eval_samples_and_results(tmp_path):
    from eval_helpers import ScriptedThink, eval_data, val_rows
    from fake_openai import FakeOpenAI
    from vttrain.eval import EvalConfig, run as run_eval

    data = eval_data()
    rows = val_rows(data)
    plan = {r["id"]: "direct" for r in rows}
    with FakeOpenAI(responder=ScriptedThink(rows, plan)) as srv:
        res = run_eval(EvalConfig(data=str(data), mode="think", policy="openai:scripted", policy_base_url=srv.url,
                                  db=str(tmp_path / "vt.duckdb"), out=str(tmp_path), name="r1"))
    lines = [json.loads(x) for x in res["jsonl"].read_text().splitlines()]
    for line in lines:
        assert {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "doc_hash", "prompt_hash",
                "target_hash"} <= set(line) and "input" not in line
        assert line["doc"]["question"] == line["question"] and line["target"] == line["answers"][0]
        assert isinstance(line["arguments"][0], str) and isinstance(line["arguments"][1], dict)
        assert parse_line({k: line[k] for k in ("doc_id", "doc", "target", "arguments", "resps", "filtered_resps")})
    agg = json.loads((tmp_path / "r1_results.json").read_text())
    assert agg["results"]["r1"]["accuracy,none"] == res["summary"][-1]["accuracy"]
    assert agg["n-samples"]["r1"]["effective"] == len(rows) and "r1" in agg["configs"]
    assert any(k.startswith("r1/") for k in agg["results"])  # per source
