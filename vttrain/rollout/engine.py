"""The rollout engine: the one machine behind `vt score-judge` and `vt eval` (and anything that generates
and judges).

    jobs --(conversation for the mode)--> policy.agenerate --> store --> judge.ajudge --> store verdicts

A `Job` is one rollout to produce: its key in the stage's table, the dataset row, and the mode:
  low / high  the direct prompt (system + image + question) on that view, one turn;
  think       the agent protocol of training (`vtdata.protocol`): the low view first; a valid tool call
              gets the tool turn (`vtdata.protocol.tools.respond`: the high view for resize_image, the region for
              zoom_image), an invalid one the error turn; at most `max_turns` assistant turns (a call in
              the last one is not answered: the rollout ends without an answer).
The stage's `Store` (a table and its key columns) says which jobs of a chunk are stored already and
which stored ones lack a good verdict: a rerun generates only what is missing and judges only what has
no verdict. Generations are written before they are judged, so a crash while judging loses no paid-for
generation; a generation the backend failed on is not stored (the rerun asks again); a judge failure is
stored as `status='error'` (never a wrong answer) and judged again by the next run.
Everything runs in one event loop per command (`asyncio.run(stage(...))`).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import AsyncIterator, Callable, Iterable, Iterator

import pyarrow as pa

from vtdata import prompts, protocol

from vtdata.protocol import tools
from vtdata.console import VtError
from vtdata.db import arrow_table, insert_rows, transaction
from vtdata.judge import JudgeItem, Verdict
from vtdata.resolution import view_of
from vttrain.rollout.policy import GenRequest

MODES = ("low", "high", "think")
STATUS_OK = "ok"


@dataclass(frozen=True)
class Job:
    key: tuple
    """The rollout's key in the stage's table (values in `Store.key` order)."""
    sample: dict
    """The dataset row (question, answers, answer_type, choices, image bytes, view sizes)."""
    mode: str
    """low | high | think."""


@dataclass
class Turn:
    text: str
    generated_tokens: int
    visual_tokens: int
    latency_s: float
    finish_reason: str = "stop"
    error: str | None = None


@dataclass
class Rollout:
    """What the policy did on one job, before judging."""
    job: Job
    turns: list[Turn] = field(default_factory=list)
    tool_call: str = "none"
    """none | ok (the tool answered) | error (every call was invalid)."""
    visual_tokens: int = 0
    """Image tokens in the context of the last turn (it holds every image seen)."""
    wall_s: float = 0.0
    """The chunk's generation wall time, split evenly over its rollouts."""
    used: list = field(default_factory=list)
    """The tools whose calls returned an image, in order ("resize", "zoom")."""

    @property
    def response(self) -> str:
        return self.turns[-1].text if self.turns else ""

    @property
    def error(self) -> str | None:
        return next((t.error for t in self.turns if t.error), None)

    @property
    def generated_tokens(self) -> int:
        return sum(t.generated_tokens for t in self.turns)

    @property
    def latency_s(self) -> float:
        return sum(t.latency_s for t in self.turns)


@dataclass
class Settings:
    """How the policy is asked."""
    temperature: float = 0.0
    max_new_tokens: int = 1024
    """Per assistant turn."""
    system_prompt: str = "score_system"
    """Direct modes: the system prompt (shipped name or file)."""
    agent_system_prompt: str = "agent_system"
    agent_user_prompt: str = "agent_user"
    tool_ok_prompt: str = "tool_ok"
    tool_error_prompt: str = "tool_error"
    max_turns: int = 2
    """Think mode: assistant turns at most."""
    tools: tuple = ("resize",)
    """Think mode: the tools the policy may call (vtdata/protocol/tools.py)."""
    direct_newline: bool = True
    """Direct modes: a newline between the image and the question (the release's "<image>\\n" + question);
    False = vt before issue 21."""

    def __post_init__(self) -> None:
        self.system = prompts.load(self.system_prompt)


@dataclass
class Store:
    """A table of rollouts and their verdicts.

    `verdict` maps Verdict fields (score, status, reason, prediction, judge) to the table's columns;
    `judge_column`, when set, holds the identity of the judge of the run: a verdict by another judge is
    judged again. `stamp` names a timestamp column set with each verdict."""
    con: object
    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    text_column: str
    verdict: dict
    judge_column: str | None = None
    judge_identity: str | None = None
    stamp: str | None = None

    def pending(self, jobs: list[Job]) -> tuple[list[Job], list[tuple[Job, str]]]:
        """(jobs with no stored rollout, [(job, stored text)] of stored rollouts without a good verdict)."""
        if not jobs:
            return [], []
        keys = pa.table({c: [j.key[i] for j in jobs] for i, c in enumerate(self.key)})
        status = self.verdict["status"]
        redo = f"t.{status} IS DISTINCT FROM '{STATUS_OK}'"
        params = []
        if self.judge_column:
            redo += f" OR t.{self.judge_column} IS DISTINCT FROM ?"
            params.append(self.judge_identity)
        on = " AND ".join(f"t.{c} = k.{c}" for c in self.key)
        with arrow_table(self.con, "_vt_keys", keys):
            rows = self.con.execute(f"SELECT {', '.join('k.' + c for c in self.key)}, t.{self.text_column}, ({redo}) "
                                    f"FROM _vt_keys k JOIN {self.table} t ON {on}", params).fetchall()
        stored = {tuple(r[:len(self.key)]): (r[-2], r[-1]) for r in rows}
        todo = [j for j in jobs if j.key not in stored]
        unjudged = [(j, stored[j.key][0] or "") for j in jobs if j.key in stored and stored[j.key][1]]
        return todo, unjudged

    def insert(self, rows: list[dict]) -> None:
        insert_rows(self.con, self.table, rows, self.columns, replace=True)

    def write_verdicts(self, judged: list[tuple[Job, Verdict]]) -> None:
        if not judged:
            return
        cols = {c: [j.key[i] for j, _ in judged] for i, c in enumerate(self.key)}
        for field_, column in self.verdict.items():
            values = [getattr(v, field_) for _, v in judged]
            cols[column] = pa.array([None if x is None else float(x) for x in values], pa.float64()) \
                if field_ == "score" else pa.array(values, pa.string())
        sets = [f"{c} = v.{c}" for c in self.verdict.values()]
        params = []
        if self.judge_column:
            sets.append(f"{self.judge_column} = ?")
            params.append(self.judge_identity)
        if self.stamp:
            sets.append(f"{self.stamp} = now()")
        on = " AND ".join(f"t.{c} = v.{c}" for c in self.key)
        with arrow_table(self.con, "_vt_verdicts", pa.table(cols)):
            self.con.execute(f"UPDATE {self.table} t SET {', '.join(sets)} FROM _vt_verdicts v WHERE {on}", params)


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter), from any iterable."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def judge_item(sample: dict, text: str) -> JudgeItem:
    return JudgeItem(question=sample["question"], answers=[str(a) for a in sample.get("answers") or []],
                     response=text or "", answer_type=sample.get("answer_type") or "open",
                     choices=sample.get("choices"))


# ------------------------------------------------------------------------------------------ generation

def view_image(sample: dict, view: str):
    """The image of a sample's view as the policy gets it (score-judge hashes it into its rollouts' key)."""
    return _image(sample, view)


def _image(sample: dict, view: str):
    try:
        return view_of(sample, view)
    except (ValueError, OSError) as err:
        raise VtError(f"sample {sample.get('id')}: cannot make its {view} view: {err}") from None


def seed_of(key: tuple, turn: int = 0) -> int:
    """A rollout's sampling seed from its key (and turn): the same whichever chunk or call it lands in."""
    return int(hashlib.sha256(repr((tuple(key), turn)).encode()).hexdigest()[:8], 16) % 2 ** 31


async def _turns(policy, conversations: list[tuple[list[dict], list[int]]], s: Settings) -> list[list[Turn]]:
    """One policy call: an answer per seed for each (messages, seeds); the answers grouped per conversation."""
    if not conversations:
        return []
    gens = await policy.agenerate([GenRequest(messages=m, n=len(seeds), temperature=s.temperature,
                                              max_new_tokens=s.max_new_tokens, seeds=tuple(seeds))
                                   for m, seeds in conversations])
    out: list[list[Turn]] = [[None] * len(seeds) for _, seeds in conversations]
    for g in gens:
        out[g.request][g.index] = Turn(g.text, int(g.generated_tokens), int(g.visual_tokens),
                                       float(g.latency_s), g.finish_reason or "stop", g.error)
    return out


async def _direct(policy, jobs: list[Job], s: Settings) -> list[Rollout]:
    """Direct modes: the jobs of one (sample, view) share one request with n = their count."""
    groups: dict[tuple, list[Job]] = {}
    for j in jobs:
        groups.setdefault((id(j.sample), j.mode), []).append(j)
    convs = [(protocol.direct_messages(s.system, g[0].sample["question"], _image(g[0].sample, g[0].mode),
                                       s.direct_newline), [seed_of(j.key) for j in g])
             for g in groups.values()]
    out = []
    for g, turns in zip(groups.values(), await _turns(policy, convs, s)):
        out += [Rollout(j, [t], "none", t.visual_tokens) for j, t in zip(g, turns)]
    return out


async def _think(policy, jobs: list[Job], s: Settings) -> list[Rollout]:
    """The agent protocol, turn by turn, batched across jobs."""
    names = {"ok_prompt": s.tool_ok_prompt, "error_prompt": s.tool_error_prompt}
    convs = [protocol.agent_messages(j.sample["question"], _image(j.sample, "low"), s.agent_system_prompt,
                                     s.agent_user_prompt, s.tools) for j in jobs]
    out = [Rollout(j) for j in jobs]
    active = list(range(len(jobs)))
    for turn_no in range(s.max_turns):
        turns = await _turns(policy, [(convs[i], [seed_of(jobs[i].key, turn_no)]) for i in active], s)
        nxt = []
        for i, (t,) in zip(active, turns):
            r = out[i]
            r.turns.append(t)
            r.visual_tokens = t.visual_tokens
            call = None if t.error else tools.parse_call(t.text, s.tools)
            if call is None or turn_no + 1 >= s.max_turns:
                continue  # a direct answer, or no turn left to answer in (cut: no answer)
            said = {"role": "assistant", "content": [{"type": "text", "text": t.text}]}
            reply = tools.respond(call, jobs[i].sample, s.tools, view=_image, **names)  # invalid: the error turn
            if reply.error is not None:
                r.tool_call = "error" if r.tool_call == "none" else r.tool_call
            else:
                r.tool_call = "ok"
                r.used.append(reply.tool)
            convs[i] = convs[i] + [said, {"role": "user", "content": reply.message}]
            nxt.append(i)
        active = nxt
        if not active:
            break
    return out


async def generate(policy, jobs: list[Job], s: Settings) -> list[Rollout]:
    """Rollouts of the jobs, in job order (direct jobs in one policy call, think jobs turn by turn)."""
    t0 = time.perf_counter()
    direct = [j for j in jobs if j.mode != "think"]
    think = [j for j in jobs if j.mode == "think"]
    done = {id(r.job): r for r in (await _direct(policy, direct, s) if direct else [])
            + (await _think(policy, think, s) if think else [])}
    share = (time.perf_counter() - t0) / max(1, len(jobs))
    out = [done[id(j)] for j in jobs]
    for r in out:
        r.wall_s = share
    return out


# ------------------------------------------------------------------------------------------- the run

@dataclass
class ChunkResult:
    jobs: list[Job]
    """The chunk's jobs (done before, or now)."""
    generated: list[Rollout]
    """New rollouts stored (failed generations excluded)."""
    failed: list[Rollout]
    """Rollouts the backend gave no answer for (not stored; the rerun asks again)."""
    judged: list[tuple[Job, Verdict]]
    """Verdicts written in this chunk (new rollouts and stored ones judged again)."""


async def run(chunks: Iterable[list[Job]], *, policy, judge, store: Store, settings: Settings,
              record: Callable[[Rollout, datetime], dict],
              on_verdicts: Callable[[list[Job]], None] | None = None) -> AsyncIterator[ChunkResult]:
    """Generate, store, judge and store the verdicts of each chunk of jobs; yields each chunk's result.

    `record(rollout, now)` makes the stage's table row of a new rollout; `on_verdicts(chunk)` runs in
    the verdicts' transaction (score-judge recounts and labels its samples there)."""
    for chunk in chunks:
        todo, unjudged = store.pending(chunk)
        rollouts = await generate(policy, todo, settings) if todo else []
        ok = [r for r in rollouts if not r.error]
        now = datetime.now()
        store.insert([record(r, now) for r in ok])  # paid for: on disk before judging
        to_judge = [(r.job, r.response) for r in ok] + unjudged
        verdicts = await judge.ajudge([judge_item(j.sample, text) for j, text in to_judge]) if to_judge else []
        judged = [(j, v) for (j, _), v in zip(to_judge, verdicts)]
        with transaction(store.con):
            store.write_verdicts(judged)
            if on_verdicts is not None:
                on_verdicts(chunk)
        yield ChunkResult(chunk, ok, [r for r in rollouts if r.error], judged)
