"""Round 3, class 4 (issue 30's "scores inflated by errors"): a prediction the judge cannot take is bounded
before the judge (longer than vtdata.judge.MAX_PREDICTION_CHARS: scored wrong by rule, no request) in
eval, scoring and training alike (one Judge), and the headline accuracy counts judge errors as wrong."""
from __future__ import annotations

import json

from fake_openai import FakeOpenAI, Reply, judge_responder

LONG = "no " * 20_000  # 60,000 characters of a wrong answer


def _over_context(request):
    if sum(len(m["content"]) if isinstance(m["content"], str) else 0 for m in request["messages"]) > 20_000:
        return Reply(status=400, error="This model's maximum context length is 8192 tokens")
    return judge_responder(request)


def _run_judge(tmp_path, url, preds):
    from vtdata.config import build
    from vtdata.judge.cli import JudgeConfig, run
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": str(i), "question": "q", "answer": "yes", "prediction": p}) + "\n"
                           for i, p in enumerate(preds)))
    cfg = build(JudgeConfig, {"input": str(inp), "out": str(tmp_path / "o.jsonl"), "judge": "openai:m",
                              "judge_base_url": url, "no_cache": True, "max_attempts": "1", "shortcut": False})
    return run(cfg)


def test_long_wrong_answers_are_wrong_not_errors(tmp_path):
    with FakeOpenAI(responder=_over_context) as srv:
        s = _run_judge(tmp_path, srv.url, ["yes", LONG, LONG, LONG])
        assert srv.requests == 1  # the long ones never reached the judge
    assert s["errors"] == 0 and s["accuracy"] == 0.25


def test_judge_errors_count_wrong_in_the_headline(tmp_path):
    from fake_openai import parts

    def fail_wrong(request):  # a judge that fails on every wrong answer (what a context limit does)
        return Reply(status=400, error="too long") if parts(request)[3].strip() != "yes" else judge_responder(request)
    with FakeOpenAI(responder=fail_wrong) as srv:
        s = _run_judge(tmp_path, srv.url, ["no", "no", "no", "yes"])
    assert s["errors"] == 3 and s["accuracy"] == 0.25


def test_the_judge_class_bounds_a_long_prediction_for_training_too():
    from vtdata.judge import JudgeItem, make_judge
    with FakeOpenAI(responder=_over_context) as srv:
        judge = make_judge("openai:m", base_url=srv.url, max_attempts=1)
        try:
            v = judge.judge([JudgeItem("q", ["yes"], LONG, is_answer=True)])[0]
        finally:
            judge.close()
        assert srv.requests == 0
    assert v.status == "ok" and v.score == 0.0


def test_eval_summary_accuracy_counts_errors(tmp_path):
    import duckdb
    from vtdata import tables
    from vttrain.report.summary import summarize
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    tables.ensure(con, "eval_runs", "eval_predictions")
    for i, (score, status) in enumerate([(1.0, "ok"), (None, "error"), (None, "error"), (None, "error")]):
        con.execute("INSERT INTO eval_predictions (run, sample_id, source, task, score, status) VALUES "
                    "('r', ?, 's', 'general', ?, ?)", [str(i), score, status])
    allrow = summarize(con, "r")[-1]
    assert allrow["accuracy"] == 0.25
