"""The files vt ships: manifests, train configs, model and accelerate configs (`vt/manifests/` in an installed
wheel, `manifests/` at the top of a source checkout)."""
from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent  # site-packages in a wheel, the checkout in an editable install


def shipped(*parts: str) -> Path:
    """A file shipped with vt, e.g. `shipped("demo.yaml")`, `shipped("models")`."""
    for base in (_ROOT / "vt" / "manifests", _ROOT / "manifests"):
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
