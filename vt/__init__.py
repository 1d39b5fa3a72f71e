"""vt: the command line (`vt.cli`) and the files vt ships (`shipped`, `find`: vtdata.shipped). The code lives
in `vtdata` (torch-free) and `vttrain`."""
from __future__ import annotations

from vtdata import __version__  # noqa: F401  (one version: pyproject reads vtdata.__version__)
from vtdata.shipped import find, shipped  # noqa: F401
