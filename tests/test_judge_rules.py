"""Answer extraction and the rule judges at their boundaries."""
import asyncio
import threading

import pytest

from vtdata.judge import JudgeItem, extract_answer, make_judge
from vtdata.judge.rules import anls, exact, levenshtein, mc, mc_letter, relaxed, vqa, vqa_normalize


def test_extract_last_answer_and_boxed():
    assert extract_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert extract_answer("<think>x</think><answer>so \\boxed{\\frac{1}{2}} is it</answer>") == "\\frac{1}{2}"
    assert extract_answer("<answer>\\boxed{a} or \\boxed{b{c}}</answer>") == "b{c}"
    assert extract_answer("\\boxed{3} but no tag") is None
    assert extract_answer("<answer>unclosed") is None
    assert extract_answer("") is None and extract_answer(None) is None


def test_no_answer_tag_is_a_format_zero_without_a_call():
    j = make_judge("auto")
    v = j.judge([JudgeItem("q", ["yes"], "yes")])[0]
    assert (v.score, v.status, v.reason, v.prediction) == (0.0, "ok", "format: no <answer> tag", None)
    assert j.stats()["format_failures"] == 1
    j.close()


def test_exact_normalises_case_space_quotes_period():
    assert exact("  The  Cat. ", ["the cat"]) == 1
    assert exact('"yes"', ["Yes"]) == 1
    assert exact("the cats", ["the cat"]) == 0


@pytest.mark.parametrize("pred,gold,expected", [
    ("47%", "47", 1),        # the paper's flaw fixed: a % sign is a unit
    ("47", "47%", 1),
    ("47%", "0.47", 1),
    ("105", "100", 1),       # exactly 5 % relative error: included
    ("95", "100", 1),
    ("105.01", "100", 0),    # just past 5 %
    ("94.99", "100", 0),
    ("1,234", "1234", 1),
    ("$12", "12", 1),
    ("0", "0", 1),
    ("0.01", "0", 0),        # gold 0 needs exact 0
    ("blue", "Blue", 1),     # non-numeric: exact match
    ("blue", "blues", 0),
    ("12 apples", "12", 0),  # not a number: exact match fails
])
def test_relaxed_boundaries(pred, gold, expected):
    assert relaxed(pred, [gold]) == expected


def test_anls_threshold_and_max_over_golds():
    assert levenshtein("kitten", "sitting") == 3
    assert anls("abcd", ["abcx"]) == pytest.approx(0.75)
    assert anls("abcd", ["abxy"]) == 0.0           # NL = 0.5 exactly -> 0 (tau = 0.5)
    assert anls("abcde", ["abcxy"]) == pytest.approx(0.6)  # NL = 0.4 < 0.5
    assert anls("ABC  d", ["abc d"]) == 1.0        # case and whitespace
    assert anls("abcd", ["zzzz", "abcd"]) == 1.0   # max over golds
    assert anls("", [""]) == 1.0


def test_vqa_normalisation_and_accuracy():
    assert vqa_normalize("Two dogs!") == "2 dogs"
    assert vqa_normalize("The answer is: a cat.") == "answer is cat"
    assert vqa_normalize("dont") == "don't"
    assert vqa_normalize("1,000") == "1000" and vqa_normalize("3.5") == "3.5"
    assert vqa_normalize("well-known") == "well known"
    assert vqa("two", ["2"]) == 1 and vqa("three", ["2"]) == 0
    golds = ["yes"] * 3 + ["no"] * 7
    # official: min(1, matches among the other 9 / 3) averaged over the 10 leave-one-out subsets
    assert vqa("yes", golds) == pytest.approx((3 * (2 / 3) + 7 * 1) / 10)
    assert vqa("no", golds) == 1.0
    assert vqa("maybe", golds) == 0.0


@pytest.mark.parametrize("text,letter", [
    ("B", "B"), ("(C)", "C"), ("b", None), ("D.", "D"),
    ("The answer is (A), no wait, the answer is (C)", "C"),   # last explicit match
    ("Option B seems right but I choose answer: D", "D"),
    ("A dog is shown, so B", "B"),                             # 'A dog': the article
    ("I think B is right", "B"),
    ("(A) first, final C", "A"),                               # explicit beats bare letter
    ("it is the cat", "B"),                                    # choice text
    ("nothing", None),
    ("(E)", None),                                             # no choice E of 4
])
def test_mc_letter(text, letter):
    assert mc_letter(text, ["dog", "cat", "bird", "fish"]) == letter


def test_mc_gold_as_letter_or_text():
    choices = ["dog", "cat", "bird"]
    assert mc("(B)", ["B"], choices) == 1
    assert mc("B", ["cat"], choices) == 1
    assert mc("cat", ["B"], choices) == 1
    assert mc("A", ["B"], choices) == 0


def test_math_rule_off_the_main_thread():
    j = make_judge("auto")
    items = [JudgeItem("q", ["\\frac{1}{2}"], "<answer>\\boxed{0.5}</answer>", "math"),
             JudgeItem("q", ["\\frac{\\sqrt{3}}{2}"], "<answer>\\boxed{\\sqrt{3}/2}</answer>", "math"),
             JudgeItem("q", ["3"], "<answer>\\boxed{4}</answer>", "math"),
             JudgeItem("q", ["x^2+2x+1"], "<answer>(x+1)^2</answer>", "math")]
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("v", j.judge(items)))  # a non-main thread
    t.start()
    t.join(60)
    assert [v.score for v in out["v"]] == [1.0, 1.0, 0.0, 1.0]
    assert all(v.status == "ok" and v.judge.startswith("rule:math") for v in out["v"])
    j.close()


def test_auto_routes_by_answer_type_and_rejects_unknown_type():
    j = make_judge("auto")
    v = j.judge([JudgeItem("q", ["47"], "<answer>47%</answer>", "number"),
                 JudgeItem("q", ["abcd"], "<answer>abcx</answer>", "anls"),
                 JudgeItem("q", ["x"], "<answer>x</answer>", "bogus"),
                 JudgeItem("q", [], "<answer>x</answer>")])
    assert [x.score for x in v[:2]] == [1.0, pytest.approx(0.75)]
    assert v[2].status == "error" and v[2].score is None and "answer_type" in v[2].reason
    assert v[3].status == "error" and v[3].score is None
    assert make_judge("rule:exact").judge([JudgeItem("q", ["47"], "<answer>47%</answer>", "number")])[0].score == 0.0


def test_prediction_saying_score_1_does_not_win_a_rule_judge():
    j = make_judge("auto")
    for atype in ("open", "number", "anls", "mc"):
        v = j.judge([JudgeItem("Capital of France?", ["Paris"], "<answer>Score: 1</answer>", atype, ["Paris", "Rome"])])[0]
        assert v.score == 0.0, atype


def test_sync_judge_inside_a_running_event_loop():
    j = make_judge("auto")

    async def inside():
        sync = j.judge([JudgeItem("q", ["red"], "<answer>Red</answer>")])   # blocking call in a loop
        asy = await j.ajudge([JudgeItem("q", ["red"], "<answer>blue</answer>")])
        return sync[0].score, asy[0].score
    assert asyncio.run(inside()) == (1.0, 0.0)
    assert asyncio.run(j.ajudge([JudgeItem("q", ["a"], "<answer>a</answer>")]))[0].score == 1.0  # another loop
    j.close()


def test_math_overrun_is_an_error_and_the_worker_is_replaced():
    from vtdata.judge.mathcheck import POOL
    POOL.shutdown()                                   # a fresh worker: spawning it alone overruns 0.01 s
    j = make_judge("auto", math_timeout=0.01)
    v = j.judge([JudgeItem("q", ["2"], "<answer>2</answer>", "math")])[0]
    assert v.status == "error" and v.score is None and "math-verify" in v.reason
    j.close()
    j = make_judge("auto")
    assert j.judge([JudgeItem("q", ["2"], "<answer>2</answer>", "math")])[0].score == 1.0
    j.close()
