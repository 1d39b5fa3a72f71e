"""Exact penalties of constructed groups in every penalty mode (paper Eq. 4-5 and the released code): the
functions the trainer runs on the gathered batch (the reward is accuracy + format_weight x format - penalty;
the trainer tests check that sum)."""
import pytest

from vttrain.grpo.reward import Rollout, batch_penalties, group_penalties, group_ratio


def R(score, high=False, attempted=None, fmt=True):
    return Rollout(score=score, used_high=high, attempted=high if attempted is None else attempted, format_ok=fmt)


# direct right, direct wrong, high right, high wrong -> C_direct 1, C_high 1, r = 0.5 >= 0.2
BALANCED = [R(1.0), R(0.0), R(1.0, high=True), R(0.0, high=True)]
# 1 correct direct vs 5 correct high -> r = 1/6 < 0.2
MOSTLY_HIGH = [R(1.0), R(0.0)] + [R(1.0, high=True)] * 5 + [R(0.0, high=True)]
# only high answers are right -> r = 0
ONLY_HIGH = [R(0.0), R(0.0), R(1.0, high=True), R(1.0, high=True)]


def test_ratio():
    assert group_ratio(BALANCED) == 0.5
    assert group_ratio(MOSTLY_HIGH) == pytest.approx(1 / 6)
    assert group_ratio(ONLY_HIGH) == 0.0
    assert group_ratio([R(0.0), R(0.0, high=True)]) is None


def test_paper_mode_penalises_every_rollout_of_the_kind():
    # r >= theta: every high-res rollout pays, right or wrong
    assert group_penalties(BALANCED, "paper") == [0.0, 0.0, 0.1, 0.1]
    # r < theta: every direct rollout pays
    assert group_penalties(MOSTLY_HIGH, "paper") == [0.1, 0.1] + [0.0] * 6
    # r = 0 is < theta too (the paper has no exemption)
    assert group_penalties(ONLY_HIGH, "paper") == [0.1, 0.1, 0.0, 0.0]
    # no correct answer: r undefined, nobody pays
    assert group_penalties([R(0.0), R(0.0, high=True)], "paper") == [0.0, 0.0]


def test_released_mode():
    # a correct tool answer always pays; wrong answers never; r = 0.5 -> direct exempt
    assert group_penalties(BALANCED, "released") == [0.0, 0.0, 0.1, 0.0]
    # 0 < r < theta: correct direct answers pay too
    assert group_penalties(MOSTLY_HIGH, "released") == [0.1, 0.0] + [0.1] * 5 + [0.0]
    # r = 0 exempt (no correct direct answer to penalise anyway); correct tool answers still pay
    assert group_penalties(ONLY_HIGH, "released") == [0.0, 0.0, 0.1, 0.1]


def test_released_counts_attempts_paper_counts_successes():
    # rollouts 2-3 called the tool but the call was invalid: no high-res image (used_high False)
    group = [R(1.0), R(0.0), R(1.0, high=False, attempted=True), R(1.0, high=False, attempted=True)]
    # paper: all three correct answers are direct -> r = 1 >= theta -> "high" pays, but nobody saw it
    assert group_penalties(group, "paper") == [0.0, 0.0, 0.0, 0.0]
    # released: attempts count as tool answers -> r = 1/3, both correct attempts pay
    assert group_penalties(group, "released") == [0.0, 0.0, 0.1, 0.1]


def test_none_mode_never_pays():
    group = [R(1.0, fmt=False), R(0.0), R(1.0, high=True), R(0.0, high=True, fmt=False)]
    assert group_penalties(group, "none") == [0.0] * 4
    assert group_penalties(MOSTLY_HIGH, "none") == [0.0] * 8


def test_theta_and_penalty_size():
    assert group_penalties(BALANCED, "paper", theta=0.6, penalty=0.25) == [0.25, 0.25, 0.0, 0.0]
    assert group_penalties(BALANCED, "paper", theta=0.5) == [0.0, 0.0, 0.1, 0.1]  # r >= theta


def test_judge_failure_is_not_wrong():
    # the failed rollout is left out of the counts: without it r = 0 (only a high answer is right)
    group = [R(None), R(0.0), R(1.0, high=True), R(0.0, high=True)]
    assert group_ratio(group) == 0.0
    assert group_penalties(group, "paper")[1:] == [0.1, 0.0, 0.0]  # r = 0 < theta: the direct one pays
    # counted as a correct direct answer it would have flipped the penalty to the high-res side
    assert group_ratio([R(1.0)] + group[1:]) == 0.5
    assert group_penalties([R(1.0)] + group[1:], "paper")[1:] == [0.0, 0.1, 0.1]


def test_batch_is_grouped_consecutively():
    pens = batch_penalties(BALANCED + ONLY_HIGH, 4, mode="paper")
    assert pens == group_penalties(BALANCED, "paper") + group_penalties(ONLY_HIGH, "paper")
    with pytest.raises(ValueError):
        batch_penalties(BALANCED[:3], 4, mode="paper")
