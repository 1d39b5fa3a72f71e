"""The VisionThink reward: accuracy (shared judge) + format_weight x format - penalty (paper Eq. 4-5).

The balanced penalty is a GROUP statistic, so it is computed on the rewards of the whole group after TRL
gathers them across processes (`VtGRPOTrainer._calculate_rewards` in vttrain/grpo/trainer.py calls
`batch_penalties` there); the per-process reward functions only return accuracy and format.

penalty_mode (r = C_direct / (C_direct + C_high) over the group's CORRECT answers):
- paper    Eq. 5: P = penalty x [1_direct I(r < theta) + 1_high I(r >= theta)]. "high" = the high-res image
           really reached the model (a successful resize call); every rollout of the penalised kind pays,
           right or wrong. A group without any correct answer (r undefined) pays nothing.
- released the released verl code: a rollout that ATTEMPTED a tool call counts as "high"; only correct
           answers pay; a correct tool answer always pays; correct direct answers also pay when
           0 < r < theta (r = 0 exempt).
- none     no penalty (the paper's ablation: the policy drifts to always resizing).
- always   every rollout that received the high-res image pays, whatever r (the paper's other Fig. 3a
           ablation: the policy drifts to always answering directly).
"high" is any rollout that received extra pixels (a resized view or a zoomed region). penalty_cost says
what such a rollout pays when its kind is penalised:
- flat     the penalty (Eq. 5 as written);
- tokens   the penalty x its extra visual tokens / the high view's (`Rollout.cost`): a zoom into a quarter of
           the image pays a quarter of a resize, so among correct answers the cheaper tool scores higher.
A rollout whose judge failed (score None) is not counted as wrong: it is left out of C_direct/C_high and
its reward is NaN, which TRL treats as unscorable (advantage 0, excluded from the group baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

from vtdata.console import VtError

MODES = ("paper", "released", "none", "always")
COSTS = ("flat", "tokens")


@dataclass
class Rollout:
    """What the penalty needs to know about one rollout."""
    score: float | None  # judge score in [0, 1]; None = judge failure
    used_high: bool       # the high-res image reached the model (successful resize)
    attempted: bool       # the model emitted a <tool_call> (valid or not)
    format_ok: bool = True
    cost: float = 1.0     # extra visual tokens received / the high view's (penalty_cost tokens)

    @property
    def correct(self) -> bool:
        return self.score is not None and self.score >= 0.5


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise VtError(f"penalty_mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def check_cost(cost: str) -> str:
    if cost not in COSTS:
        raise VtError(f"penalty_cost must be one of {', '.join(COSTS)}; got {cost!r}")
    return cost


def group_ratio(group: list[Rollout], by_attempt: bool = False) -> float | None:
    """r = C_direct / (C_direct + C_high); None when the group has no correct answer."""
    high = [(r.attempted if by_attempt else r.used_high) for r in group]
    c_direct = sum(1 for r, h in zip(group, high) if r.correct and not h)
    c_high = sum(1 for r, h in zip(group, high) if r.correct and h)
    return None if c_direct + c_high == 0 else c_direct / (c_direct + c_high)


def group_penalties(group: list[Rollout], mode: str = "paper", theta: float = 0.2,
                    penalty: float = 0.1, cost: str = "flat") -> list[float]:
    """The penalty (>= 0, subtracted from the reward) of each rollout of one group."""
    check_mode(mode)
    check_cost(cost)

    def high(x: Rollout) -> float:  # what a rollout of the "high" kind pays
        return penalty * x.cost if cost == "tokens" else penalty
    if mode == "none":
        return [0.0] * len(group)
    if mode == "always":
        return [high(x) if x.used_high else 0.0 for x in group]
    if mode == "paper":
        r = group_ratio(group)
        if r is None:
            return [0.0] * len(group)
        if r >= theta:
            return [high(x) if x.used_high else 0.0 for x in group]
        return [0.0 if x.used_high else penalty for x in group]
    # released
    r = group_ratio(group, by_attempt=True)
    out = []
    for x in group:
        if not x.correct:
            out.append(0.0)
        elif x.attempted:
            out.append(high(x) if x.used_high else penalty)
        else:
            out.append(penalty if r is not None and 0 < r < theta else 0.0)
    return out


def batch_penalties(rollouts: list[Rollout], group_size: int, **kw) -> list[float]:
    """`group_penalties` over a gathered batch laid out as consecutive groups of `group_size` (TRL's layout)."""
    if len(rollouts) % group_size:
        raise ValueError(f"{len(rollouts)} rollouts do not split into groups of {group_size}")
    out: list[float] = []
    for i in range(0, len(rollouts), group_size):
        out += group_penalties(rollouts[i:i + group_size], **kw)
    return out
