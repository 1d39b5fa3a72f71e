"""vt: the command line (`vt.cli`) and the files vt ships (`shipped`): manifests, model configs,
accelerate configs. The code lives in `vtdata` (torch-free) and `vttrain`."""
from __future__ import annotations

from pathlib import Path

from vtdata import __version__  # noqa: F401  (one version: pyproject reads vtdata.__version__)


def shipped(*parts: str) -> Path:
    """A file shipped with vt, e.g. `shipped("demo.yaml")`, `shipped("models")`: `vt/manifests/` in an
    installed wheel, `manifests/` at the top of a source checkout (editable install)."""
    here = Path(__file__).resolve().parent
    for base in (here / "manifests", here.parent / "manifests"):
        if base.is_dir():
            return base.joinpath(*parts)
    raise FileNotFoundError("vt's shipped manifests are missing from this installation")


def find(path: str | Path) -> Path:
    """A manifest or train config as the user named it: the file when it exists, else the shipped file of that
    name (`demo.yaml` or `manifests/demo.yaml` work from any directory, also from an installed wheel); else
    the path unchanged (the caller reports it missing)."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    parts = p.parts[1:] if p.parts[:1] == ("manifests",) else p.parts
    try:
        found = shipped(*parts) if parts else None
    except FileNotFoundError:
        return p
    return found if found is not None and found.is_file() else p
