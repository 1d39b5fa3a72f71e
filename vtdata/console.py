"""Console output shared by every command: verbosity, one-line messages, progress bars.

All human-facing output goes to stderr so that stdout stays machine-readable (`vt sql --format csv`).
"""
from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")
# markup off: every message and table cell is printed as text, so data (`[/x]`, `[bold]`) can neither
# crash the printer nor be rendered; styles are given as Text objects (`error_line`)
console = Console(stderr=True, soft_wrap=True, markup=False)  # one-line messages stay one line when piped
_level = {"value": 1}  # 0 quiet, 1 normal, 2 verbose
log = logging.getLogger("vt")
PLAIN_EVERY_S = 30.0  # how often a progress line is printed where stderr is not a terminal


class VtError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2."""


_SECRETS: set[str] = set()  # API keys read from the environment this run: never written anywhere
_REDACT = [
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@?#]+(?::[^/\s@?#]*)?@"), r"\1***@"),  # URL user:pass@
    (re.compile(r"(?i)([?&;](?:[a-z_-]*token|[a-z_-]*key|apikey|auth|password|passwd|secret|sig|signature|"
                r"code|credential)=)[^&\s#\"'<>]+"), r"\1***"),                          # ?token=..., &api_key=...
    (re.compile(r"(?i)\b(bearer|basic)(\s+|=|:\s*)[A-Za-z0-9._~+/=-]{8,}"), r"\1\2***"),  # Bearer abc...
    (re.compile(r"\b(sk|pk|rk|hf|ghp|gho|xox[a-z])[-_][A-Za-z0-9_-]{8,}"), r"\1-***"),  # sk-..., hf_..., ghp_...
]
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def add_secret(value: str | None) -> None:
    """Remember a secret (an API key read from the environment) so that redact() removes it wherever it
    shows up, e.g. echoed back in a server's error message."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text):
    """`text` with secrets replaced by *** (the keys this run read, URL credentials, query tokens, bearer
    tokens, sk-... keys): what every stored error text, config and results file goes through. Non-str
    values are returned as they are."""
    if not isinstance(text, str) or not text:
        return text
    for s in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(s, "***")
    for pat, rep in _REDACT:
        text = pat.sub(rep, text)
    return text


def check_env_name(value: str | None, flag: str) -> str | None:
    """An --...-api-key-env value must name an environment variable (a key pasted there would be stored)."""
    if value is None:
        return None
    if not isinstance(value, str) or not ENV_NAME.fullmatch(value) or len(value) > 128:
        raise VtError(f"{flag} takes the NAME of an environment variable holding the key ([A-Za-z_][A-Za-z0-9_]*), "
                      f"not the key itself (got {len(str(value))} characters, not shown)")
    return value


def set_verbosity(verbose: bool = False, quiet: bool = False) -> None:
    _level["value"] = 0 if quiet else (2 if verbose else 1)
    if not verbose:  # library deprecation notices (transformers, TRL) are not actionable for users
        warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    log.setLevel(logging.DEBUG if verbose else (logging.ERROR if quiet else logging.INFO))


def info(msg: str) -> None:
    """A one-line status message (suppressed by --quiet)."""
    if _level["value"] >= 1:
        console.print(msg, highlight=False)


def debug(msg: str) -> None:
    if _level["value"] >= 2:
        console.print(msg, style="dim", highlight=False)


def quiet() -> bool:
    return _level["value"] == 0


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator["ProgressHandle"]:
    """A rich progress bar with count, ETA and a free-text status field; silent under --quiet.

        with progress_bar("scoring", total=n) as bar:
            bar.advance(1, status="low_ok=3 needs_high=1")
    """
    if not console.is_terminal:  # a log or CI: whole lines now and then, never a bar cut to 80 columns
        bar = PlainProgress(description, total)
        try:
            yield bar
        finally:
            bar.line(final=True)
        return
    prog = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}", markup=False), console=console, disable=quiet(),
                    transient=False)
    with prog:
        task = prog.add_task(description, total=total, status="")
        yield ProgressHandle(prog, task)


class ProgressHandle:
    def __init__(self, prog: Progress, task) -> None:
        self._prog, self._task = prog, task

    def advance(self, n: int = 1, status: str | None = None) -> None:
        kw = {"status": status} if status is not None else {}
        self._prog.update(self._task, advance=n, **kw)


class PlainProgress:
    """Progress where stderr is not a terminal: a full line (count, total, elapsed, ETA, status) at most
    every PLAIN_EVERY_S seconds and at the end; silent under --quiet."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total, self.done, self.status = description, total, 0, ""
        self.t0 = self.last = time.monotonic()
        self.shown: tuple | None = None  # (count, status) of the last line printed

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self.done += n
        self.status = self.status if status is None else status
        if time.monotonic() - self.last >= PLAIN_EVERY_S:
            self.line()

    def line(self, final: bool = False) -> None:
        self.last = now = time.monotonic()
        if quiet() or (final and self.shown == (self.done, self.status)):
            return
        self.shown = (self.done, self.status)
        took = now - self.t0
        count = f"{self.done}/{self.total} ({100 * self.done / self.total:.0f} %)" if self.total else f"{self.done}"
        eta = ""
        if self.total and not final and 0 < self.done < self.total:
            eta = f", eta {_hms(took / self.done * (self.total - self.done))}"
        console.print(f"{self.description}: {count} in {_hms(took)}{eta}" + (f"; {self.status}" if self.status else ""),
                      highlight=False)


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total) as bar:
        for item in items:
            yield item
            bar.advance()


def require(module: str, feature: str, extra: str) -> None:
    """A one-line VtError naming the extra to install when an optional package is missing."""
    import importlib.util
    if importlib.util.find_spec(module) is None:
        raise VtError(f"{feature} needs the optional package `{module}`: pip install 'vt[{extra}]'")


def results_console() -> Console:
    """Where a command prints its results (stdout); tables keep their width in pipes instead of squeezing."""
    return Console(width=None if sys.stdout.isatty() else 160, markup=False)


def error_line(err) -> None:
    """`error: <message>` on one line (the message as text, never markup)."""
    from rich.text import Text
    console.print(Text("error: ", style="bold red") + Text(redact(str(err))), highlight=False)
