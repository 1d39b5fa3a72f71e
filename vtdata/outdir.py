"""Output directories of every command: refuse one that a command would destroy, write into a temp
dir beside it under a lock, and put the finished dir in place by renames (no half-written output is
ever seen, and a killed command leaves nothing that the next one does not clean up).
"""
from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vtdata.console import VtError
from vtdata.safeload import load_json


def pid_alive(pid) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return isinstance(pid, int) and pid > 0  # exists but is not ours / not a pid at all
    return True


def check_name(name: str, flag: str = "--name") -> str:
    """A run or set name that becomes a file name (and a table key): one plain path component, so it
    stays inside the directory it is written to."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or not name.isprintable() or len(name) > 200:
        raise VtError(f"{flag} {name!r} must be a plain name (no '/', '\\', '..', control characters; "
                      f"at most 200 characters)")
    return name


def resolve_out(path: str | os.PathLike) -> Path:
    """An output path resolved once (symlinks followed, absolute): what is written and what is recorded."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def refuse_overlap(out: str | os.PathLike, inputs=(), flag: str = "--out", replaces: bool = False,
                   around=(), in_place: bool = False) -> None:
    """The one rule for outputs: an output (and the lock beside it) may not be, contain, or sit inside any
    input of its command (data, database, runs), --force or not; `around` are inputs it may sit inside but
    neither be nor contain (a manifest's sources and image roots: a dataset is often built beside its
    images). An output that is `replaces`d whole (publish()) may neither be nor contain the current directory;
    one written `in_place` (files added, nothing removed: eval, train) may contain an input, never be one or
    sit inside one."""
    o = resolve_out(out)
    cwd = resolve_out(os.getcwd())
    if replaces and (o == cwd or o in cwd.parents):
        raise VtError(f"{flag} {out} is {'the current directory' if o == cwd else 'a folder above the current directory'}"
                      f"; writing it would replace the directory you are in; choose another {flag}")
    lock = o.parent / f".{o.name}.lock"
    for p in inputs:
        if p is None or str(p) == "":
            continue
        r = resolve_out(p)
        if r == o or (o in r.parents and not in_place):
            raise VtError(f"{flag} {out} would replace {r}, which this command needs; choose another {flag}")
        if r in o.parents:
            raise VtError(f"{flag} {out} is inside {r}, which this command needs; choose another {flag}")
        if r == lock:
            raise VtError(f"{flag} {out}: its lock file would be {r}, which this command needs; choose another {flag}")
    for p in around:
        r = resolve_out(p)
        if r == o or o in r.parents or r == lock:
            raise VtError(f"{flag} {out} would replace {r}, which this command needs; choose another {flag}")


def make_out_dir(path: str | os.PathLike, flag: str = "--out", inputs=()) -> Path:
    """Create an output directory; a path that cannot be one (a file, no permission) or that overlaps an
    input (refuse_overlap) is a VtError. For outputs written in place (init-model, eval, report, demo, train)."""
    refuse_overlap(path, inputs, flag, in_place=True)
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VtError(f"{flag} {out}: cannot create the directory ({err.strerror})") from None
    return out


MARKER = ".vt-output"  # written by publish(): what vt put in an output directory


def missing_dirs(path: str | os.PathLike) -> list[Path]:
    """`path` and its parents that do not exist yet, deepest first: what creating it would create."""
    missing = []
    for p in [Path(path), *Path(path).parents]:
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    return missing


def remove_empty(dirs: list[Path]) -> None:
    """Remove directories a failed command created (deepest first), each only while it is empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            break


@contextmanager
def new_out_dir(path: str | os.PathLike, flag: str = "--out", inputs=()) -> Iterator[Path]:
    """make_out_dir for the length of a command: the directories it created are removed again when the
    command fails and leaves them empty (a failed command leaves no empty evals/ behind)."""
    refuse_overlap(path, inputs, flag, in_place=True)
    made = missing_dirs(path)
    out = make_out_dir(path, flag)
    try:
        yield out
    except BaseException:
        remove_empty(made)
        raise


def check_out(out: Path, marker: str, what: str, keep: tuple = (), force: bool = False, around: tuple = ()) -> Path:
    """Refuse an output directory that publish() would destroy: a file, one that is, contains or sits
    inside a path in `keep` (the command's inputs: data, database, runs, manifest sources; refuse_overlap),
    or -- unless `force` -- a non-empty directory vt cannot prove it wrote: it needs `marker` (this kind of
    output) and a .vt-output that lists every path in it (nothing foreign inside). Returns `out` resolved
    (a symlink followed once): the path the command writes and records."""
    refuse_overlap(out, keep, replaces=True, around=around)
    out = resolve_out(out)
    if out.exists() and not out.is_dir():
        raise VtError(f"{out} is a file; --out must be a directory")
    if not force and out.is_dir() and any(out.iterdir()):
        _check_written_by_vt(out, marker, what)
        if (out.parent / ".demo").is_dir():  # a stage's output: the demo's later stages were made from it
            raise VtError(f"{out} belongs to the vt demo in {out.parent} (its later stages were made from it); "
                          f"choose another --out, or pass --force to replace it")
    return out


def _check_written_by_vt(out: Path, marker: str, what: str) -> None:
    if not (out / marker).is_file():
        raise VtError(f"{out} exists and is not {what} (no {marker}); choose another --out, or pass --force "
                      f"to replace it and everything in it")
    listed = listing(out)
    if listed is None:
        raise VtError(f"{out} has no {MARKER} listing what vt wrote there (an output of an older vt?); choose "
                      f"another --out, or pass --force to replace it and everything in it")
    foreign = sorted(p for p in walk(out) if p != MARKER and p not in listed)
    if foreign:
        raise VtError(f"{out} holds {len(foreign)} path(s) vt did not write there (e.g. {foreign[0]}); move them, "
                      f"choose another --out, or pass --force to replace it and everything in it")


def listing(out: Path) -> set[str] | None:
    """The paths `out`'s .vt-output lists (what publish() put there), or None without a readable one."""
    try:
        paths = load_json(out / MARKER, MARKER, max_bytes=64 << 20)["paths"]
        return {p for p in paths if isinstance(p, str)}
    except (VtError, KeyError, TypeError):
        return None


def walk(top: Path) -> list[str]:
    """Every path (directories and files, relative, '/'-separated) under `top`; symlinks not followed."""
    return [(Path(root).relative_to(top) / n).as_posix() for root, dirs, files in os.walk(top) for n in dirs + files]


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh temp dir beside `out` (same filesystem, so publish() is a rename), removed on the way out.
    Holds `out`'s lock throughout (a second command writing the same `out` is refused), and first
    removes temp dirs that killed commands left for `out` (their pid is gone). A command that fails
    leaves none of the folders it made for `out` behind while they are empty."""
    made = missing_dirs(out.parent)
    try:
        with _staging(out) as tmp:
            yield tmp
    except BaseException:
        remove_empty(made)
        raise


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VtError(f"cannot write {out}: {err.strerror} ({err.filename})") from None
    with out_lock(out):
        for left in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-*")):
            m = re.fullmatch(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)", left.name)
            if not m or not left.is_dir() or pid_alive(int(m.group(2))):
                continue
            if m.group(1) == "old" and not out.exists():
                left.rename(out)  # killed inside publish(): the previous output comes back
            else:
                shutil.rmtree(left, ignore_errors=True)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
        except OSError as err:
            raise VtError(f"cannot write {out}: {err.strerror} ({err.filename})") from None
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on writing `out` (flock on `.OUT.lock` beside it: the kernel releases it when
    the process dies, so a killed command never leaves it held); the lock file is removed on exit."""
    lock = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a planted symlink is not followed
        except OSError as err:
            if lock.is_symlink():
                raise VtError(f"cannot write {out}: its lock file {lock} is a symlink (not vt's); remove it") from None
            raise VtError(f"cannot write {out}: {err.strerror} ({err.filename})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise VtError(f"{out} is being written by {who}; wait for it to finish or choose another --out") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and flock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"`vt {' '.join(sys.argv[1:2])}` (pid {os.getpid()})".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, inputs=(), flag: str = "--out") -> Iterator[Path]:
    """A file output written the way directories are: refused when it is one of the command's inputs,
    held under the same one-writer lock (`.NAME.lock` beside it: a second writer gets a one-line error),
    written to a temp file of this process (`.NAME.tmp-PID`) and renamed over `path` only when the block
    succeeds; a failed block leaves `path` as it was. Yields the temp path to write."""
    refuse_overlap(path, inputs, flag, in_place=True)
    out = resolve_out(path)
    if out.is_dir():
        raise VtError(f"{flag} {path} is a directory; it must be a file")
    made = missing_dirs(out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VtError(f"cannot write {path}: {err.strerror} ({err.filename})") from None
    try:
        with out_lock(out):
            for left in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
                m = re.fullmatch(rf"\.{re.escape(out.name)}\.tmp-(\d+)", left.name)
                if m and left.is_file() and not pid_alive(int(m.group(1))):
                    left.unlink(missing_ok=True)  # left by a killed writer
            tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            try:
                yield tmp
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
    except BaseException:
        remove_empty(made)
        raise


def publish(tmp: Path, out: Path) -> None:
    """Put a finished directory in place of `out` by renames, so no half-written output is ever seen.
    First lists every path in it in .vt-output: what check_out() later accepts to replace."""
    paths = sorted(walk(tmp))
    (tmp / MARKER).write_text(json.dumps({"written_by": f"vt {' '.join(sys.argv[1:2])}".strip(),
                                          "paths": [p for p in paths if p != MARKER]}, indent=1) + "\n")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old.exists():
            old.rename(out)  # put the previous one back
        raise
    shutil.rmtree(old, ignore_errors=True)
