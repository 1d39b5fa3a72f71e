"""`vt`: the command line (`vt`, `python -m vt`). Each command lives in the module of its pipeline stage; this file only
registers them, sets verbosity, and turns user errors (VtError) into one-line messages.

Data flows: build-data -> score-judge -> curate -> train -> eval -> report (`vt demo` runs them all).
Command modules keep heavy imports (torch, transformers) inside functions so `vt --help` is quick.
"""
from __future__ import annotations

import importlib
import sys

import typer

from vtdata.console import VtError, console, error_line, set_verbosity
from vttrain import commands

# command name -> "module:function"; order is the order shown by `vt --help`: the pipeline's commands, then the demo
# that runs them.
COMMANDS = {**commands.COMMANDS, "demo": "vttrain.demo:demo_command"}

app = typer.Typer(help="vt: VisionThink as a toolkit. build-data -> score-judge -> curate -> train -> eval -> compare / report.", no_args_is_help=True, add_completion=True,
                  pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        from vt import __version__
        typer.echo(f"vt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="More detail, debug logs."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Errors and results only; no progress bars."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print vt's version and exit.")):
    set_verbosity(verbose=verbose, quiet=quiet)


def _register() -> None:
    for name, target in COMMANDS.items():
        module, func = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:  # a stage not installed yet in this checkout
            if err.name and module.startswith(err.name):
                continue
            raise
        fn = getattr(mod, func)
        app.command(name, context_settings=getattr(fn, "context_settings", None))(fn)


_register()


def main() -> None:
    try:
        app()
    except VtError as err:
        error_line(err)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted; completed work is saved, rerun the same command to resume")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 -- the environment failing (disk full, a broken file): one line
        line = environment_error(err)
        if line is None:
            raise
        error_line(line)
        sys.exit(2)


def environment_error(err: BaseException) -> str | None:
    """One line for a failure of the machine or of a file rather than of vt (None: a bug, keep the
    traceback). Every vt writer commits in transactions and publishes by renames, so what was finished
    before the failure is kept and a rerun resumes."""
    import errno
    first = (str(err).splitlines() or [type(err).__name__])[0][:300]
    if isinstance(err, OSError):
        code = err.errno
        if code is None and any(s in first for s in ("EFBIG", "File too large", "No space left", "errno 27", "errno 28")):
            code = errno.ENOSPC
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return (f"disk full or file too large{where}: {err.strerror or first}; nothing finished was lost: "
                    f"free space and rerun the same command")
        return f"{err.strerror or first}{where}"
    if type(err).__module__.startswith(("duckdb", "_duckdb")):
        full = "No space left" in first or "disk" in first.lower() and "full" in first.lower()
        return (f"database error: {first}" + ("; free space and rerun the same command (committed work is kept)"
                                              if full else "; committed work is kept"))
    if isinstance(err, MemoryError):
        return "out of memory; lower the sizes asked for (--limit, -k, --batch-size) and rerun"
    return None


if __name__ == "__main__":
    main()
