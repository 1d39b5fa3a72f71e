"""Class 8 of the hostile-input issue: judging without a key, judge errors hidden in accuracy, keys
sent to the wrong host.

An `openai:` judge with no key and no base URL could only fail every request; with judge errors
left out of accuracy, a run would report the right answers alone. Every judging command refuses it
before anything runs; every printed accuracy says how many judge errors it leaves out; the OpenAI
key never goes to $OPENAI_BASE_URL (a host the user did not name to vt)."""
import duckdb
import pytest
from typer.testing import CliRunner

from eval_helpers import ScriptedThink, eval_data, val_rows
from fake_openai import FakeOpenAI, Reply, judge_responder
from vtdata.console import VtError


@pytest.fixture
def no_key(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "VT_DB"):
        monkeypatch.delenv(var, raising=False)


def _cli(*args):
    from vt.cli import app
    return CliRunner().invoke(app, list(args))


def _refused(res):  # vt's main() prints a VtError as one line `error: ...`
    assert isinstance(res.exception, VtError) and "OPENAI_API_KEY" in str(res.exception), (res.exit_code, res.output)


def test_vt_eval_refuses_a_keyless_judge_before_generating(tmp_path, no_key):
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)
    with FakeOpenAI(responder=ScriptedThink(rows, {r["id"]: "full" for r in rows})) as srv:
        res = _cli("eval", "--data", str(data), "--policy", "openai:scripted", "--policy-base-url", srv.url,
                   "--mode", "full", "--db", str(db), "--out", str(tmp_path), "--judge", "openai:gpt-4o-mini",
                   "--judge-scope", "all")
        assert srv.requests == 0                       # nothing generated (nothing paid for)
    _refused(res)


def test_vt_score_judge_refuses_a_keyless_judge(tmp_path, no_key):
    data = eval_data()
    with FakeOpenAI(responder=lambda req: "<answer>x</answer>") as srv:
        res = _cli("score-judge", "--data", str(data), "--policy", "openai:p", "--policy-base-url", srv.url, "-k", "2",
                   "--split", "all", "--db", str(tmp_path / "vt.duckdb"), "--judge", "openai:gpt-4o-mini")
        assert srv.requests == 0
    _refused(res)


def test_vt_train_config_refuses_a_keyless_judge(tmp_path, no_key):
    from vttrain.grpo.config import parse_config
    with pytest.raises(VtError, match="VT_NOT_SET"):
        parse_config(None, ["--model", "m", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                            "--judge", "openai:gpt-4o-mini", "--judge_api_key_env", "VT_NOT_SET"])


def test_openai_base_url_never_gets_the_openai_key(monkeypatch):
    """$OPENAI_BASE_URL is not a server the user named to vt: with no --judge-base-url / --policy-base-url
    the key goes to OpenAI's API, never there."""
    from vtdata.judge import JudgeItem, make_judge
    from vttrain.rollout.policy import make_policy
    with FakeOpenAI() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-do-not-leak")
        j = make_judge("openai:m", timeout=0.3, max_attempts=1, shortcut=False)
        j.judge([JudgeItem("q", ["a"], "<answer>b</answer>")])
        j.close()
        policy = make_policy("openai:m", timeout_s=0.3, max_retries=0)
        from vttrain.rollout.policy import GenRequest
        try:
            policy.generate([GenRequest(messages=[{"role": "user", "content": "hi"}], n=1, max_new_tokens=4)])
        except Exception:
            pass
        assert not any("sk-secret" in a for a in srv.auth) and srv.requests == 0


def test_printed_accuracy_says_how_many_judge_errors_it_leaves_out(tmp_path, monkeypatch):
    """An eval run whose judge failed on some items: `vt eval`'s table, `vt compare` and the report show
    the judge-error share next to the accuracy."""
    from rich.console import Console

    from vttrain.eval import EvalConfig, run
    from vttrain.report.report import eval_points
    from vttrain.report.summary import compare, summarize, summary_table
    monkeypatch.setenv("VT_TEST_KEY", "k")
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)
    n = {"calls": 0}

    def flaky(req):  # every other judge request fails for good
        n["calls"] += 1
        return Reply(status=400) if n["calls"] % 2 else judge_responder(req)
    with FakeOpenAI(responder=ScriptedThink(rows, {r["id"]: "full" for r in rows})) as pol, FakeOpenAI(flaky) as jdg:
        from vtdata.judge import make_judge
        judge = make_judge("openai:j", base_url=jdg.url, api_key_env="VT_TEST_KEY", scope="all", shortcut=False,
                           max_attempts=1)
        run(EvalConfig(data=str(data), policy="openai:scripted", policy_base_url=pol.url, mode="full", name="r1",
                       db=str(db), out=str(tmp_path)), judge=judge)
    con = duckdb.connect(str(db), read_only=True)
    try:
        total = summarize(con, "r1")[-1]
        assert total["judge_errors"] > 0 and total["judge_error_share"] == pytest.approx(total["judge_errors"] / len(rows))
        out = Console(width=250, record=True)
        out.print(summary_table("r1", summarize(con, "r1")))
        out.print(compare(con, ["r1"])[0])
        text = out.export_text()
        assert text.count("judge err.") >= 2, text
        assert "judge err" in eval_points(con)[0]["acc"]
    finally:
        con.close()

