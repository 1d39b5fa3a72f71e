"""vtdata.config.command: a typer command generated from a @dataclass config (help from the field
docstrings, flattening, bool, list, positional, Literal, bad value -> one-line error, --config file)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import typer
from typer.testing import CliRunner

from vtdata.config import command, field_docs
from vtdata.console import VtError


@dataclass
class Limits:
    low: int = 6
    """Lowest count that passes."""
    gap: Optional[int] = None
    """Smallest gap."""


@dataclass
class ToyConfig:
    """Make a toy: the command's help."""

    data: Path = field(metadata={"argument": True, "flags": ["--data"]})
    """The toy's input directory."""
    out: Path = field(metadata={"flags": ["-o"]})
    """Where the toy goes."""
    k: int = field(default=8, metadata={"flags": ["-k"]})
    """Rollouts per view."""
    shortcut: bool = True
    """Skip the judge when the answer matches."""
    no_cache: bool = False
    """Do not cache."""
    tags: list[str] = field(default_factory=list)
    """Tags (repeatable)."""
    mode: Literal["full", "low", "think"] = "think"
    """The view mode."""
    rate: float | None = None
    """Requests per minute."""
    limits: Limits = field(default_factory=Limits)
    hidden: str = field(default="x", metadata={"cli": False})
    """Never on the command line."""

    def __post_init__(self):
        if self.k < 1:
            raise VtError(f"-k must be >= 1, got {self.k}")


seen: list[ToyConfig] = []


def app_for(cls=ToyConfig) -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("toy")(command(cls, seen.append))
    app.command("other")(lambda: None)  # two commands: `toy` stays a subcommand
    return app


def invoke(*args):
    seen.clear()
    res = CliRunner().invoke(app_for(), ["toy", *map(str, args)])
    return res, (seen[-1] if seen else None)


def test_help_comes_from_the_docstrings_once():
    res = CliRunner().invoke(app_for(), ["toy", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    for s in ("Make a toy: the command's help.", "Rollouts per view.", "Where the toy goes.", "Lowest count that passes.",
              "--shortcut", "--no-shortcut", "--no-cache", "--low", "--gap", "--config",
              "-k", "-o", "think"):
        assert s in text, s
    assert "hidden" not in text and "Never on the command line" not in text
    assert field_docs(ToyConfig)["rate"] == "Requests per minute."


def test_values_defaults_flattening_bool_list_literal():
    res, cfg = invoke("in", "-o", "out", "-k", "3", "--no-shortcut", "--no-cache", "--tags", "a", "--tags", "b",
                      "--mode", "low", "--rate", "1.5", "--gap", "2")
    assert res.exit_code == 0, res.output
    assert cfg == ToyConfig(data=Path("in"), out=Path("out"), k=3, shortcut=False, no_cache=True, tags=["a", "b"],
                            mode="low", rate=1.5, limits=Limits(low=6, gap=2))
    assert isinstance(cfg.data, Path) and isinstance(cfg.limits, Limits)
    res, cfg = invoke("in", "--out", "o2")
    assert cfg == ToyConfig(data=Path("in"), out=Path("o2"))  # every default is the dataclass's own
    res, cfg = invoke("--data", "in", "--out", "o2")  # a positional argument with a flag form
    assert res.exit_code == 0 and cfg == ToyConfig(data=Path("in"), out=Path("o2"))


def test_bad_values_are_errors_before_run():
    res, cfg = invoke("in", "-o", "o", "--mode", "sideways")  # a Literal is a choice
    assert cfg is None and str(res.exception) == "--mode must be one of full, low, think, got 'sideways'"
    res, cfg = invoke("in", "-o", "o", "-k", "three")
    assert cfg is None and str(res.exception) == "--k must be an integer, got 'three'"
    res, cfg = invoke("in", "-o", "o", "--rate", "fast")
    assert cfg is None and str(res.exception) == "--rate must be a number, got 'fast'"
    res, cfg = invoke("in", "-o", "o", "-k", "0")  # __post_init__'s check
    assert cfg is None and isinstance(res.exception, VtError) and "-k must be >= 1" in str(res.exception)
    res, cfg = invoke("in")  # a required option
    assert cfg is None and isinstance(res.exception, VtError) and str(res.exception) == "missing --out"
    res, cfg = invoke("-o", "o")  # a required argument
    assert cfg is None and str(res.exception) == "missing DATA"


def test_config_file_with_flag_overrides(tmp_path):
    f = tmp_path / "sub" / "toy.yaml"
    f.parent.mkdir()
    f.write_text("out: built\nk: 4\nshortcut: false\ntags: [x]\nlimits: {low: 2}\ngap: 5\n")
    res, cfg = invoke("in", "--config", f, "-k", "9")
    assert res.exit_code == 0, res.output
    assert cfg.k == 9 and cfg.shortcut is False and cfg.tags == ["x"] and cfg.limits == Limits(low=2, gap=5)
    assert cfg.out == f.parent / "built"  # a relative path in a file is relative to the file
    f.write_text("colour: red\n")
    res, cfg = invoke("in", "-o", "o", "--config", f)
    assert cfg is None and "unknown option(s) colour" in str(res.exception)


def test_cli_error_is_one_line():
    """Through `vt`: a check in __post_init__ and a missing option end in one `error:` line, exit status 2."""
    for args, msg in ((["--name", "x", "--per-class", "0", "--out", "o"], "error: --per-class must be >= 1, got 0"),
                      (["--per-class", "2", "--out", "o"], "error: missing --name"),
                      (["--name", "x", "--per-class", "two", "--out", "o"], "error: --per-class must be an integer, got 'two'")):
        r = subprocess.run([sys.executable, "-m", "vt", "curate", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [msg]
