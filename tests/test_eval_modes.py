"""vt eval: the three modes with exact visual-token bookkeeping, the two-turn protocol with a scripted
policy over real HTTP, resume, judge failures, JSONL export and the comparison table."""
from __future__ import annotations

import json

import duckdb
import pytest

from eval_helpers import ScriptedThink, eval_data, tiny_model, val_rows
from fake_openai import FakeOpenAI
from vtdata import prompts, protocol
from vtdata.console import VtError
from vtdata.judge import Verdict
from vtdata.resolution import view_of
from vttrain.eval import EvalConfig, run
from vttrain.report.summary import compare


def _preds(db, run):
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute("SELECT * FROM eval_predictions WHERE run = ? ORDER BY doc_id", [run])
        names = [d[0] for d in cur.description]
        return {r[names.index("sample_id")]: dict(zip(names, r)) for r in cur.fetchall()}
    finally:
        con.close()


def test_tiny_model_three_modes_exact_token_bookkeeping(tmp_path):
    from vttrain.models.build import load_processor, visual_tokens
    data, model, db = eval_data(), tiny_model(), tmp_path / "vt.duckdb"
    rows = {r["id"]: r for r in val_rows(data)}
    res = {}
    for mode in ("full", "low", "think"):
        res[mode] = run(EvalConfig(data=str(data), model=str(model), mode=mode, db=str(db),
                                        max_new_tokens=6, name=f"t-{mode}", out=str(tmp_path / "evals")))
        assert res[mode]["done"] == res[mode]["new"] == len(rows)
    proc = load_processor(model)
    full, low, think = (_preds(db, f"t-{m}") for m in ("full", "low", "think"))
    assert set(full) == set(low) == set(think) == set(rows)
    for sid, r in rows.items():
        high_tokens = visual_tokens(proc, view_of(r, "high"))
        low_tokens = visual_tokens(proc, view_of(r, "low"))
        # the policy counted the image tokens of what it was really given
        assert full[sid]["visual_tokens"] == full[sid]["full_visual_tokens"] == high_tokens
        assert low[sid]["visual_tokens"] * 4 == full[sid]["visual_tokens"] == low[sid]["full_visual_tokens"]
        assert low[sid]["visual_tokens"] == low_tokens
        expect_think = low_tokens + (high_tokens if think[sid]["resized"] else 0)
        assert think[sid]["visual_tokens"] == expect_think
        assert 1 <= full[sid]["generated_tokens"] <= 6
    # the all-row: low is exactly a quarter of full, whatever the sizes
    share = {m: next(s for s in res[m]["summary"] if s["source"] == "all")["visual_tokens_rel"] for m in res}
    assert share["full"] == 1.0 and share["low"] == 0.25
    # lmms-eval-style JSONL that `vt judge` reads: one line per sample, in doc order
    lines = [json.loads(x) for x in res["think"]["jsonl"].read_text().splitlines()]
    assert [x["doc_id"] for x in lines] == list(range(len(rows)))
    for x in lines:
        assert {"doc_id", "doc", "arguments", "target", "resps", "filtered_resps", "prediction", "answers", "score",
                "visual_tokens", "mode"} <= set(x)
        assert x["target"] == rows[x["id"]]["answers"][0] and x["mode"] == "think"
        assert x["resps"][0][-1] == x["prediction"]


def test_think_protocol_with_scripted_policy(tmp_path):
    """Resize call -> the high view arrives in a second turn; token bookkeeping = low + high;
    an invalid call gets the error turn and no image; direct answers stay at the low view."""
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)
    plans = ["call", "direct", "bad"]
    plan = {r["id"]: plans[i % 3] for i, r in enumerate(rows)}
    script = ScriptedThink(rows, plan)
    with FakeOpenAI(responder=script) as srv:
        cfg = EvalConfig(data=str(data), policy="openai:scripted", policy_base_url=srv.url, mode="think",
                         db=str(db), name="scripted-think", batch_size=4, out=str(tmp_path))
        res = run(cfg)
    preds = _preds(db, "scripted-think")
    for r in rows:
        p, sid = preds[r["id"]], r["id"]
        lo = (r["low_width"] // 28) * (r["low_height"] // 28)
        hi = (r["high_width"] // 28) * (r["high_height"] // 28)
        assert p["full_visual_tokens"] == hi == 4 * lo
        seen = script.seen[sid]
        if plan[sid] == "call":
            assert p["tool_call"] == "ok" and p["resized"] and len(p["turns"]) == 2
            assert p["visual_tokens"] == lo + hi
            assert [s["views"] for s in seen] == [["low"], ["low", "high"]]
            assert protocol.TOOL_OK_HEAD.strip() in seen[1]["text"] and prompts.load("tool_ok") in seen[1]["text"]
            assert p["score"] == 1.0
        elif plan[sid] == "direct":
            assert p["tool_call"] == "none" and not p["resized"] and len(p["turns"]) == 1
            assert p["visual_tokens"] == lo and p["score"] == 1.0
        else:  # invalid call: error turn without an image, then a wrong answer
            assert p["tool_call"] == "error" and not p["resized"] and len(p["turns"]) == 2
            assert [s["views"] for s in seen] == [["low"], ["low"]]
            assert "ERROR occurs during the function tool call" in seen[1]["text"] and "zoom_in" in seen[1]["text"]
            assert p["visual_tokens"] == lo and p["score"] == 0.0
        # the agent prompt of training: system = agent_system, user = agent_user instruction + question
        first = seen[0]["request"]["messages"]
        assert first[0]["role"] == "system" and first[0]["content"][0]["text"] == prompts.load("agent_system")
        assert r["question"] in seen[0]["text"] and "resize_image" in seen[0]["text"]
        assert seen[0]["request"]["temperature"] == 0.0  # greedy by default
    allrow = next(s for s in res["summary"] if s["source"] == "all")
    n_call = sum(1 for v in plan.values() if v == "call")
    assert allrow["resize_ratio"] == pytest.approx(n_call / len(rows))
    assert allrow["accuracy"] == pytest.approx(sum(1 for v in plan.values() if v != "bad") / len(rows))
    lo_sum = sum((r["low_width"] // 28) * (r["low_height"] // 28) for r in rows)
    hi_called = sum((r["high_width"] // 28) * (r["high_height"] // 28) for r in rows if plan[r["id"]] == "call")
    assert allrow["visual_tokens_rel"] == pytest.approx((lo_sum + hi_called) / (4 * lo_sum))


def test_resume_skips_done_and_rejudges_failed_verdicts(tmp_path):
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)
    script = ScriptedThink(rows, {r["id"]: "full" for r in rows})

    class FlakyJudge:
        """Fails open-answer verdicts while `down`; otherwise exact match."""
        identity, down, calls = "test:flaky", True, 0

        async def ajudge(self, items):
            out = []
            for it in items:
                self.calls += 1
                pred = it.response.split("<answer>")[-1].split("</answer>")[0]
                if self.down and it.answer_type == "open":
                    out.append(Verdict(None, "error", "judge down", pred, self.identity))
                else:
                    out.append(Verdict(float(pred == it.answers[0]), "ok", "exact", pred, self.identity))
            return out

    judge = FlakyJudge()
    with FakeOpenAI(responder=script) as srv:
        cfg = dict(data=str(data), policy="openai:scripted", policy_base_url=srv.url, mode="low", db=str(db),
                   name="resume", out=str(tmp_path))
        first = run(EvalConfig(**cfg, limit=3), judge=judge)
        assert first["new"] == 3 and srv.requests == 3
        res = run(EvalConfig(**cfg), judge=judge)  # extends to all rows, generating only the rest
        assert res["new"] == len(rows) - 3 and srv.requests == len(rows)
        n_open = sum(1 for r in rows if r["answer_type"] == "open")
        allrow = next(s for s in res["summary"] if s["source"] == "all")
        assert allrow["judge_errors"] == n_open > 0
        assert allrow["accuracy_ok"] == 1.0 and allrow["accuracy"] < 1.0  # errors count wrong in the headline (issue 30)
        preds = _preds(db, "resume")
        assert all(p["score"] is None for p in preds.values() if p["status"] == "error")
        judge.down = False
        calls = judge.calls
        again = run(EvalConfig(**cfg), judge=judge)
        assert again["new"] == 0 and srv.requests == len(rows)  # nothing regenerated
        assert judge.calls - calls == n_open  # only the failed verdicts were judged again
        allrow = next(s for s in again["summary"] if s["source"] == "all")
        assert allrow["judge_errors"] == 0 and allrow["accuracy"] == 1.0
    with pytest.raises(VtError, match="already exists with mode='low'"):
        run(EvalConfig(**{**cfg, "mode": "full"}), judge=judge)


def test_compare_table_from_two_runs(tmp_path):
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)
    plan = {r["id"]: ("call" if i % 2 == 0 else "bad") for i, r in enumerate(rows)}
    base = dict(data=str(data), policy="openai:scripted", db=str(db), out=str(tmp_path))
    with FakeOpenAI(responder=ScriptedThink(rows, {r["id"]: "full" for r in rows})) as srv:
        run(EvalConfig(**base, policy_base_url=srv.url, mode="full", name="A-full"))
    with FakeOpenAI(responder=ScriptedThink(rows, plan)) as srv:
        run(EvalConfig(**base, policy_base_url=srv.url, mode="think", name="B-think"))
    con = duckdb.connect(str(db), read_only=True)
    try:
        table, out = compare(con, ["B-think", "A-full"])
        with pytest.raises(VtError, match="unknown eval run"):
            compare(con, ["A-full", "nope"])
    finally:
        con.close()
    b, a = out
    sources = sorted({r["source"] for r in rows})
    assert list(a["accuracy"]) == list(b["accuracy"]) == sources
    think_acc = {s: sum(1 for r in rows if r["source"] == s and plan[r["id"]] == "call")
                 / sum(1 for r in rows if r["source"] == s) for s in sources}
    assert a["accuracy"] == {s: 1.0 for s in sources} and b["accuracy"] == pytest.approx(think_acc)
    # rel. is taken against the full run even when it is not listed first
    assert a["rel"] == 1.0 and b["rel"] == pytest.approx(sum(think_acc.values()) / len(sources))
    assert a["visual_tokens_rel"] == 1.0 and a["resize_ratio"] == 0.0
    called = {s: sum(1 for r in rows if r["source"] == s and plan[r["id"]] == "call")
              / sum(1 for r in rows if r["source"] == s) for s in sources}
    assert a["resize_by_source"] == {s: 0.0 for s in sources} and b["resize_by_source"] == pytest.approx(called)
    assert b["resize_ratio"] == pytest.approx(sum(1 for v in plan.values() if v == "call") / len(rows))
    assert 0.25 < b["visual_tokens_rel"] < 1.0
    from rich.console import Console
    con_out = Console(width=200, record=True)
    con_out.print(table)
    text = con_out.export_text()
    assert "A-full" in text and "B-think" in text and all(s in text for s in sources)
    assert f"{100 * b['rel']:.1f}" in text


def test_think_local_backend_delivers_high_view_in_second_turn(tmp_path):
    """The local (transformers) backend with the training chat template: a turn-1 text forced to the
    resize call makes the second turn carry both images; its image tokens = low + high exactly."""
    from eval_helpers import CALL
    from vttrain.models.build import load_processor, visual_tokens
    from vttrain.rollout.policy import LocalPolicy, message_images

    class CallsFirst(LocalPolicy):
        turn2_images = []

        async def agenerate(self, requests):
            gens = await super().agenerate(requests)  # the model really runs on every turn
            for g, r in zip(gens, requests):
                n_images = len(message_images(r.messages))
                if n_images == 1:
                    g.text = CALL
                else:
                    self.turn2_images.append(n_images)
            return gens

    data, model, db = eval_data(), tiny_model(), tmp_path / "vt.duckdb"
    rows = val_rows(data)[:3]
    policy = CallsFirst(str(model), chat_template=protocol.CHAT_TEMPLATE, batch_size=4)
    res = run(EvalConfig(data=str(data), model=str(model), mode="think", db=str(db), limit=3,
                              max_new_tokens=4, name="local-think", out=str(tmp_path)), policy=policy)
    assert policy.turn2_images == [2, 2, 2]
    proc = load_processor(model)
    preds = _preds(db, "local-think")
    for r in rows:
        p = preds[r["id"]]
        assert p["resized"] and p["tool_call"] == "ok" and p["turns"][0] == CALL
        assert p["visual_tokens"] == visual_tokens(proc, view_of(r, "low")) + visual_tokens(proc, view_of(r, "high"))
        assert p["visual_tokens"] == p["full_visual_tokens"] + p["low_visual_tokens"]
    assert next(s for s in res["summary"] if s["source"] == "all")["resize_ratio"] == 1.0


def test_crash_mid_run_keeps_finished_batches(tmp_path):
    """A crash after some batches keeps them; the rerun generates only the rest, without duplicates."""
    from vttrain.rollout.policy import OpenAIPolicy

    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)

    class CrashesOnThirdCall(OpenAIPolicy):
        calls = 0

        async def agenerate(self, requests):
            type(self).calls += 1
            if type(self).calls == 3:
                raise RuntimeError("the machine went away")
            return await super().agenerate(requests)

    with FakeOpenAI(responder=ScriptedThink(rows, {r["id"]: "full" for r in rows})) as srv:
        cfg = dict(data=str(data), policy="openai:s", policy_base_url=srv.url, mode="low", db=str(db),
                   name="crash", batch_size=2, out=str(tmp_path))
        with pytest.raises(RuntimeError, match="went away"):
            run(EvalConfig(**cfg), policy=CrashesOnThirdCall("s", base_url=srv.url))
        assert len(_preds(db, "crash")) == 4 and srv.requests == 4  # two batches of two were kept
        res = run(EvalConfig(**cfg))
        assert res["new"] == len(rows) - 4 and srv.requests == len(rows)
    con = duckdb.connect(str(db), read_only=True)
    try:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT sample_id) FROM eval_predictions").fetchone()
    finally:
        con.close()
    assert n == distinct == len(rows)


def test_judge_crash_keeps_the_generations(tmp_path):
    """A crash while judging keeps the batch's generations; the rerun judges them without regenerating."""
    data, db = eval_data(), tmp_path / "vt.duckdb"
    rows = val_rows(data)[:4]

    class CrashingJudge:
        identity = "test:crash"

        async def ajudge(self, items):
            raise RuntimeError("judge process killed")

    with FakeOpenAI(responder=ScriptedThink(rows, {r["id"]: "full" for r in rows})) as srv:
        cfg = dict(data=str(data), policy="openai:s", policy_base_url=srv.url, mode="low", db=str(db),
                   name="jcrash", batch_size=4, limit=4, out=str(tmp_path))
        with pytest.raises(RuntimeError, match="judge process killed"):
            run(EvalConfig(**cfg), judge=CrashingJudge())
        kept = _preds(db, "jcrash")
        assert len(kept) == 4 and srv.requests == 4
        assert all(p["status"] is None and p["response"] for p in kept.values())
        res = run(EvalConfig(**cfg))  # the real judge: nothing regenerated, everything judged
        assert res["new"] == 0 and srv.requests == 4
    preds = _preds(db, "jcrash")
    assert all(p["status"] == "ok" and p["score"] == 1.0 for p in preds.values())
    allrow = next(s for s in res["summary"] if s["source"] == "all")
    assert allrow["judge_errors"] == 0 and allrow["accuracy"] == 1.0
