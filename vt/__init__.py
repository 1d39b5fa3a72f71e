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
