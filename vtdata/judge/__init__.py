"""Judges: is a model's answer right? One implementation for curation, GRPO rewards and eval.

    from vtdata.judge import make_judge, JudgeItem
    judge = make_judge("openai:gpt-4o-mini", db="vt.duckdb", concurrency=64)   # or "auto", "rule:anls"
    verdicts = judge.judge([JudgeItem("What is 2+2?", ["4"], "<think>..</think><answer>4</answer>")])

Specs: `auto` (rule judge by answer_type: open->vqa, number->relaxed, mc->mc, math->math,
anls->anls), `rule:<exact|contains|relaxed|anls|vqa|mc|math|auto>`, `openai:<model>` (the LLM judges
'open' items, or every item with scope='all', as the paper's judge did; other types use their rule judge;
an 'open' prediction equal to a gold answer after VQA normalisation is scored 1 without a call unless
shortcut=False). Every command takes the same spec (`--judge openai:<model>`) and `judge_scope`.

Every item ends with a Verdict of status 'ok' (score 0..1) or 'error' (score None: a judge failure
is never a wrong answer). A response without `<answer>` tag scores 0, status 'ok', reason
'format: no <answer> tag', and costs no call. All work runs on the judge's own event-loop thread, so
`judge()` works from plain threads and from inside a running event loop, and `ajudge()` from any loop.
"""
from __future__ import annotations

import asyncio
import gc
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

from vtdata.console import VtError
from vtdata.judge.extract import answer_of, extract_answer, release_answer
from vtdata.judge.rules import BY_TYPE, RULE_VERSION, RULES, SYNC_RULES, vqa_normalize
from vtdata.judge.spec import SCOPES, JudgeSpec, judge_options

__all__ = ["JudgeItem", "Verdict", "Judge", "JudgeSpec", "make_judge", "extract_answer", "judge_options", "ANSWER_TYPES",
           "SCOPES"]
ANSWER_TYPES = tuple(BY_TYPE)
FORMAT_REASON = "format: no <answer> tag"


@dataclass
class JudgeItem:
    question: str
    answers: list[str]
    response: str                    # raw model output; the judge extracts the answer
    answer_type: str = "open"        # open | number | mc | math | anls
    choices: list[str] | None = None
    is_answer: bool = False          # vt extension: response is already the final answer (no tags needed)
    release: bool = False            # the release's extraction (extract.release_answer: no tag = the whole text)


@dataclass
class Verdict:
    score: float | None
    status: str                      # 'ok' | 'error'
    reason: str
    prediction: str | None
    judge: str
    cached: bool = False
    latency_s: float = 0.0
    tokens: int = 0


@dataclass
class _Stats:
    items: int = 0
    ok: int = 0
    errors: int = 0
    format_failures: int = 0
    rule: int = 0
    shortcut: int = 0
    cache_hits: int = 0
    llm_verdicts: int = 0


def start_loop(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """An event loop running in its own daemon thread (the judge's, the openai policy's): clients made on
    it serve every call of a command, from any thread or loop (asyncio.run_coroutine_threadsafe)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    return loop, thread


def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, last, timeout: float = 60) -> None:
    """Run the coroutine `last` (closing clients) on a start_loop loop, then stop it and its thread."""
    try:
        asyncio.run_coroutine_threadsafe(last, loop).result(timeout=timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


MAX_PREDICTION_CHARS = 32_000  # ~8k tokens (the release's answer budget); longer: wrong by rule (Judge._run)


class Judge:
    def __init__(self, rule: str = "auto", llm=None, cache=None, scope: str = "open",
                 shortcut: bool = True, math_timeout: float = 30.0) -> None:
        if rule != "auto" and rule not in RULES:
            raise VtError(f"unknown rule judge {rule!r}; choose one of auto, {', '.join(RULES)}")
        if scope not in SCOPES:
            raise VtError(f"judge scope must be one of {', '.join(SCOPES)}; got {scope!r}")
        self.rule, self.llm, self.cache = rule, llm, cache
        self.scope, self.shortcut, self.math_timeout = scope, shortcut, math_timeout
        self.max_prediction_chars = MAX_PREDICTION_CHARS
        # the scope changes verdicts (number/mc/... items), so it is part of the identity stored with them;
        # the LLM's own cache key (llm.identity) is not affected: a verdict is reused across scopes
        self.identity = (llm.identity + ("|scope=all" if scope == "all" else "")) if llm else f"rule:{rule}/{RULE_VERSION}"
        self._stats = _Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._math_sem: asyncio.Semaphore | None = None

    # -- public API ---------------------------------------------------------------------------
    async def ajudge(self, items: Sequence[JudgeItem], progress: Callable[[int], None] | None = None) -> list[Verdict]:
        loop = self._ensure_loop()
        fut = asyncio.run_coroutine_threadsafe(self._run(list(items), progress), loop)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def judge(self, items: Sequence[JudgeItem], progress: Callable[[int], None] | None = None) -> list[Verdict]:
        """Synchronous ajudge; safe from any thread, including one running an event loop."""
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("Judge.judge() called from the judge's own loop; use ajudge()")
        fut = asyncio.run_coroutine_threadsafe(self._run(list(items), progress), loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            try:
                asyncio.run_coroutine_threadsafe(self._flush(), loop).result(timeout=30)
            except Exception:
                pass
            raise

    def stats(self) -> dict:
        s = self._stats
        llm = self.llm
        requests = llm.requests if llm else 0
        replies = llm.replies if llm else 0
        return {"items": s.items, "ok": s.ok, "errors": s.errors, "format_failures": s.format_failures,
                "rule_verdicts": s.rule, "shortcut": s.shortcut, "llm_verdicts": s.llm_verdicts,
                "requests": requests, "cache_hits": s.cache_hits, "tokens": llm.tokens if llm else 0,
                "mean_latency_s": (llm.request_latency / requests) if requests else 0.0,
                "cache_written": self.cache.written if self.cache else 0,
                # replies without a readable verdict (each paid again, or the item's error) over replies received
                "replies": replies, "unread_replies": llm.unread_replies if llm else 0,
                "miscopied_tags": llm.miscopied_tags if llm else 0,
                "judge_retry_share": (llm.unread_replies / replies) if replies else 0.0}

    def close(self) -> None:
        """Flush the cache, close clients and the loop thread. Idempotent."""
        loop = self._loop
        if loop is None:
            return

        async def _shutdown():
            await self._flush()
            if self.cache:
                self.cache.close()
            if self.llm:
                await self.llm.aclose()
        try:
            stop_loop(loop, self._thread, _shutdown(), timeout=60)
        finally:
            self._loop = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals (on the judge loop) ------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop, self._thread = start_loop("vt-judge")
            return self._loop

    async def _flush(self) -> None:
        if self.cache:
            self.cache.flush(wait=True)

    def _route(self, item: JudgeItem) -> str:
        atype = item.answer_type or "open"
        if atype not in BY_TYPE:
            raise ValueError(f"unknown answer_type {atype!r} (one of {', '.join(BY_TYPE)})")
        if self.llm and (self.scope == "all" or atype == "open"):
            return "llm"
        return self.rule if self.rule != "auto" else BY_TYPE[atype]

    def _done(self, v: Verdict, progress) -> Verdict:
        s = self._stats
        s.items += 1
        if v.status == "ok":
            s.ok += 1
        else:
            s.errors += 1
        if progress:
            progress(1)
        return v

    async def _math(self, pred: str, answers: list[str]) -> float:
        from vtdata.judge.mathcheck import POOL
        if self._math_sem is None:
            self._math_sem = asyncio.Semaphore(1)
        async with self._math_sem:
            return await POOL.acheck(pred, answers, self.math_timeout)

    async def _run(self, items: list[JudgeItem], progress) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(items)
        llm_jobs: dict[str, list] = {}   # cache key -> [indices, question, answers, prediction]
        math_jobs: list[tuple[int, str, list[str], str]] = []
        tasks: set[asyncio.Task] = set()
        try:
            for i, it in enumerate(items):
                try:
                    answers = [str(a) for a in (it.answers or [])]
                    if not answers:
                        raise ValueError("item has no gold answer")
                    route = self._route(it)
                except ValueError as err:
                    out[i] = self._done(Verdict(None, "error", f"error: {err}", None, self.identity), progress)
                    continue
                text = it.response if isinstance(it.response, str) else ""
                pred = release_answer(text) if it.release else answer_of(text) if it.is_answer else extract_answer(text)
                if pred is None:
                    self._stats.format_failures += 1
                    out[i] = self._done(Verdict(0.0, "ok", FORMAT_REASON, None, "format"), progress)
                elif route == "llm" and len(pred) > self.max_prediction_chars:
                    # bounded before the judge: an answer this long cannot be a short answer and would push the
                    # judge past its context (an HTTP 400 = an error, which must never stand in for a wrong answer)
                    self._stats.rule += 1
                    out[i] = self._done(Verdict(0.0, "ok", f"rule: prediction of {len(pred)} characters > "
                                                f"{self.max_prediction_chars}: scored wrong without a judge call",
                                                pred[:self.max_prediction_chars], f"rule:length/{RULE_VERSION}"), progress)
                elif route == "llm":
                    if self.shortcut and vqa_normalize(pred) in {vqa_normalize(a) for a in answers} and vqa_normalize(pred):
                        self._stats.shortcut += 1
                        out[i] = self._done(Verdict(1.0, "ok", "rule: matches a gold answer after VQA normalisation (no judge call)",
                                                    pred, f"rule:vqa/{RULE_VERSION}"), progress)
                        continue
                    from vtdata.judge.cache import cache_key
                    key = cache_key(self.llm.identity, it.question, answers, pred)
                    llm_jobs.setdefault(key, [[], it.question, answers, pred])[0].append(i)
                elif route == "math":
                    math_jobs.append((i, route, answers, pred))
                else:
                    try:
                        score = SYNC_RULES[route](pred, answers, it.choices)
                        v = Verdict(float(score), "ok", f"rule: {route}", pred, f"rule:{route}/{RULE_VERSION}")
                    except Exception as err:  # a rule must not take the batch down
                        v = Verdict(None, "error", f"error: rule {route}: {err}", pred, f"rule:{route}/{RULE_VERSION}")
                    self._stats.rule += 1
                    out[i] = self._done(v, progress)

            if llm_jobs and self.cache:
                hits = self.cache.lookup(list(llm_jobs))
                for key, (score, reason, tokens, latency) in hits.items():
                    idx, _, _, pred = llm_jobs.pop(key)
                    for i in idx:
                        self._stats.cache_hits += 1
                        self._stats.llm_verdicts += 1
                        out[i] = self._done(Verdict(score, "ok", reason, pred, self.llm.identity, True, latency, tokens), progress)

            async def one_llm(key, idx, question, answers, pred):
                r = await self.llm.judge(question, answers, pred)
                ok = r.score is not None
                if ok and self.cache:
                    self.cache.add(key, self.llm.identity, question, answers, pred, r.score, r.reason, r.tokens, r.latency_s)
                for n, i in enumerate(idx):
                    self._stats.llm_verdicts += 1
                    out[i] = self._done(Verdict(r.score, "ok" if ok else "error", r.reason, pred, self.llm.identity,
                                                n > 0, r.latency_s, r.tokens if n == 0 else 0), progress)

            async def one_math(i, answers, pred):
                try:
                    score = await self._math(pred, answers)
                    v = Verdict(float(score), "ok", "rule: math", pred, f"rule:math/{RULE_VERSION}")
                except Exception as err:
                    v = Verdict(None, "error", f"error: math-verify: {err}", pred, f"rule:math/{RULE_VERSION}")
                self._stats.rule += 1
                out[i] = self._done(v, progress)

            window = 2 * self.llm.concurrency if self.llm else 1
            with _old_objects_frozen(len(llm_jobs) >= FREEZE_MIN_REQUESTS):
                await asyncio.gather(_windowed((one_llm(k, *job) for k, job in llm_jobs.items()), window, tasks),
                                     _windowed((one_math(i, a, p) for i, _, a, p in math_jobs), 4, tasks))
        finally:
            for t in tasks:
                t.cancel()
            if self.cache:
                self.cache.flush(wait=True)
        assert all(v is not None for v in out)
        return out  # type: ignore[return-value]


FREEZE_MIN_REQUESTS = 256   # LLM requests in a batch from which old objects are frozen (inf: never)
_frozen_by_us = 0
_freeze_lock = threading.Lock()


@contextmanager
def _old_objects_frozen(wanted: bool):
    """While a big batch of LLM requests is in flight, keep Python's cyclic GC off the objects
    that existed before it (gc.freeze). Thousands of in-flight request objects get promoted to
    the oldest generation and trigger full collections, each of which scans the whole process
    heap and stalls every in-flight request (the README's judge section has the figures). Frozen, a
    full collection scans only what the batch made.
    gc.unfreeze() when the last such batch ends: nothing stays exempt for longer (garbage among
    the old objects is collected afterwards). Left alone when someone else froze objects."""
    global _frozen_by_us
    with _freeze_lock:
        mine = wanted and (_frozen_by_us > 0 or gc.get_freeze_count() == 0)
        if mine:
            if _frozen_by_us == 0:
                gc.freeze()
            _frozen_by_us += 1
    try:
        yield
    finally:
        if mine:
            with _freeze_lock:
                _frozen_by_us -= 1
                if _frozen_by_us == 0:
                    gc.unfreeze()


async def _windowed(coros, window: int, tasks: set) -> None:
    """Run the coroutines of an iterator as tasks, at most `window` alive at once: a new one starts
    as one ends, so a batch of thousands keeps only a few tasks (and their frames) alive. The
    first exception is raised; `tasks` holds the live tasks (the caller cancels them)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    mine: set = set()

    def start() -> None:
        coro = next(coros, None)
        if coro is None:
            if not mine and not done.done():
                done.set_result(None)
            return
        task = loop.create_task(coro)
        mine.add(task)
        tasks.add(task)
        task.add_done_callback(finished)

    def finished(task) -> None:
        mine.discard(task)
        tasks.discard(task)
        if done.done():
            return
        if task.cancelled():
            done.cancel()
        elif task.exception() is not None:
            done.set_exception(task.exception())
        else:
            start()
    for _ in range(window):
        start()
    await done


def make_judge(spec: str = "auto", db=None, **opts) -> Judge:
    """Build a judge. spec: 'auto' | 'rule:<name>' | 'openai:<model>'.

    db: a DuckDB path, an open connection (reused: a cursor of it), or None (no cache).
    opts for openai: base_url (str, comma-separated str or list), api_key_env, concurrency, rpm,
    timeout, max_attempts, temperature, max_tokens, system_prompt, user_prompt, backoff_base,
    backoff_max, scope ('open' | 'all'); for all: shortcut, math_timeout, flush_every, flush_seconds.
    """
    judge_opts = {k: opts.pop(k) for k in ("scope", "shortcut", "math_timeout") if k in opts}
    cache_opts = {k: opts.pop(k) for k in ("flush_every", "flush_seconds") if k in opts}
    spec = (spec or "auto").strip()
    if spec == "auto" or spec.startswith("rule:"):
        rule = "auto" if spec == "auto" else spec.split(":", 1)[1]
        bad = sorted(opts) + (["scope"] if judge_opts.get("scope", "open") != "open" else [])
        if bad:
            raise VtError(f"options {', '.join(bad)} only apply to an openai judge")
        return Judge(rule=rule, **judge_opts)
    if not spec.startswith("openai:") or not spec.split(":", 1)[1]:
        raise VtError(f"unknown judge {spec!r}: use auto, rule:<{'|'.join(RULES)}> or openai:<model>")
    from vtdata.judge.llm import LLMJudge
    base = opts.pop("base_url", None) or opts.pop("base_urls", None) or []
    if isinstance(base, str):
        base = [u.strip() for u in base.split(",") if u.strip()]
    try:
        llm = LLMJudge(model=spec.split(":", 1)[1], base_urls=list(base), **opts)
    except TypeError as err:
        raise VtError(f"bad judge option: {err}") from None
    cache = None
    if db is not None:
        from vtdata.judge.cache import Cache
        cache = Cache(db, **cache_opts)
    return Judge(llm=llm, cache=cache, **judge_opts)
