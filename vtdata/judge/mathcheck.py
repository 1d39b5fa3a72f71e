"""The `math` rule judge: math-verify, run safely off the caller's thread.

math-verify bounds its parsing and comparison with `signal.alarm`, which only works in a process's
main thread; a judge runs in an event-loop thread (and inside trainers). So the check runs in one
spawned worker process, whose main thread executes each call, with math-verify's own timeouts on;
the caller additionally waits at most `timeout` seconds, and a worker that overruns is killed and
replaced. The definition: 1 if `verify(parse(gold), parse(prediction))` holds for some gold answer,
gold first (math-verify is asymmetric); a bare LaTeX string that parses to nothing is retried
wrapped in `$...$`.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool


def _parse(text: str):
    from math_verify import parse
    out = parse(text, parsing_timeout=5)
    if not out:
        out = parse(f"${text}$", parsing_timeout=5)
    return out


def check(prediction: str, answers: list[str]) -> float:
    """Runs in the worker process (its main thread, so math-verify's signal timeouts work)."""
    from math_verify import verify
    pred = _parse(prediction)
    if not pred:
        return 0.0
    for gold in answers:
        g = _parse(gold)
        if g and verify(g, pred, timeout_seconds=5):
            return 1.0
    return 0.0


class MathPool:
    """One spawned worker process shared by all math judgments of a process."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def _kill(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    async def acheck(self, prediction: str, answers: list[str], timeout: float = 30.0) -> float:
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            try:
                fut = loop.run_in_executor(self._get(), check, prediction, list(answers))
                return await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                self._kill()
                raise TimeoutError(f"math-verify took longer than {timeout:.0f}s") from None
            except BrokenProcessPool:
                self._kill()
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def shutdown(self) -> None:
        self._kill()


POOL = MathPool()
