"""One safe reader for everything vt parses: YAML (manifests, `--config` files, `vt train` YAMLs, a run's
saved config, model configs) and JSON / JSON lines (data sources, run files, judge inputs, the JSON a
model writes in a tool call).

Limits, the same for every command: a file's size (`max_bytes`), only regular files (a FIFO would hang
the read, a directory or device is a mistake), nesting depth (MAX_DEPTH), values after expanding YAML
aliases (MAX_VALUES, counted once per shared node: a 'billion laughs' file is refused in microseconds),
digits in a JSON number (MAX_DIGITS). A bad file is a VtError one-liner; a bad JSON line is skipped
with its line number and reason (`jsonl`); a bad JSON text is `BadInput` with a one-line reason.
"""
from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Iterator

import yaml

from vtdata.console import VtError

MAX_DEPTH = 100            # containers inside containers (configs use < 10; the C parsers recurse)
MAX_VALUES = 100_000       # scalars + containers after expanding YAML aliases
MAX_DIGITS = 100           # digits of one JSON number (Python refuses ints over 4300 digits with a traceback)
MAX_YAML_BYTES = 1 << 20   # a config is a few KB
MAX_JSON_BYTES = 1 << 30   # a data file or run log


class BadInput(ValueError):
    """Text that is not what it should be (the message is one line, for the user)."""


def regular_file(path, what: str = "file") -> Path:
    """The path if it is an existing regular file (following links), else a VtError."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        raise VtError(f"{what} not found: {path}") from None
    if stat.S_ISDIR(mode):
        raise VtError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise VtError(f"{what} {path} is not a regular file (a FIFO, socket or device)")
    return path


def read_bytes(path, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> bytes:
    path = regular_file(path, what)
    size = path.stat().st_size
    if size > max_bytes:
        raise VtError(f"{what} {path} is larger than {max_bytes} bytes; refused")
    try:
        return path.read_bytes()
    except OSError as err:
        raise VtError(f"cannot read {what} {path}: {err.strerror or err}") from None


def read_text(path, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> str:
    raw = read_bytes(path, what, max_bytes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VtError(f"{what} {path} is not valid UTF-8 text (byte {err.start})") from None


def check_shape(data) -> None:
    """BadInput for data nested deeper than MAX_DEPTH, expanding to more than MAX_VALUES values, or
    referring to itself (a recursive YAML alias)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(x, depth: int) -> int:
        if not isinstance(x, (dict, list)):
            return 1
        if depth > MAX_DEPTH:
            raise BadInput(f"nested too deeply (more than {MAX_DEPTH} levels)")
        key = id(x)
        if key in active:
            raise BadInput("a YAML alias refers to itself (recursive structure)")
        if key not in sizes:
            active.add(key)
            n = 1
            for v in [*x.keys(), *x.values()] if isinstance(x, dict) else x:
                n += size(v, depth + 1)
                if n > MAX_VALUES:
                    raise BadInput(f"expands to more than {MAX_VALUES} values (YAML aliases?)")
            active.discard(key)
            sizes[key] = n
        return sizes[key]
    size(data, 0)


def yaml_value(text: str):
    """The YAML document in text (safe_load), within the limits; BadInput with a one-line reason."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BadInput(f"invalid YAML: {str(err).splitlines()[0]}") from None
    except (RecursionError, MemoryError):
        raise BadInput(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    check_shape(data)
    return data


def load_yaml(path, what: str = "YAML file", max_bytes: int = MAX_YAML_BYTES):
    """The YAML document of a file, or a VtError naming the file and what is wrong with it."""
    return yaml_bytes(read_bytes(path, what, max_bytes), path, what)


def yaml_bytes(raw: bytes, path, what: str = "YAML file"):
    """The YAML document of a file's bytes (already read), or a VtError naming the file."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VtError(f"{what} {path} is not valid UTF-8 text (byte {err.start})") from None
    if "\x00" in text:
        raise VtError(f"{what} {path} is a binary file, not YAML")
    try:
        return yaml_value(text)
    except BadInput as err:
        raise VtError(f"{what} {path}: {err}; refused") from None


def _number(kind):
    def parse(s: str):
        if len(s) > MAX_DIGITS:
            raise BadInput(f"a number of {len(s)} digits (at most {MAX_DIGITS})")
        return kind(s)
    return parse


def json_value(text: str | bytes):
    """The JSON value of a text, within the limits; BadInput with a one-line reason."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadInput(f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        data = json.loads(text, parse_int=_number(int), parse_float=_number(float))
    except json.JSONDecodeError as err:
        raise BadInput(f"invalid JSON ({err.msg} at position {err.pos})") from None
    except RecursionError:
        raise BadInput(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    except BadInput:
        raise
    except ValueError as err:  # e.g. Python's own int digit limit
        raise BadInput(f"invalid JSON ({str(err).splitlines()[0][:120]})") from None
    check_shape(data)
    return data


def load_json(path, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES):
    """The JSON value of a file, or a VtError naming the file."""
    try:
        return json_value(read_bytes(path, what, max_bytes))
    except BadInput as err:
        raise VtError(f"{what} {path}: {err}") from None


def jsonl(path, what: str = "JSON lines file", max_bytes: int = MAX_JSON_BYTES) -> Iterator[tuple[int, object, str | None]]:
    """(line number, value, None) for each good line of a JSON lines file and (line number, None,
    reason without the line number) for each bad one (invalid UTF-8 or JSON, too deep, a huge number); blank lines are left out."""
    raw = read_bytes(path, what, max_bytes)
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            yield n, json_value(line), None
        except BadInput as err:
            yield n, None, str(err)
