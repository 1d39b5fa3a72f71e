"""vt's command line from a source checkout: `python cli.py --help` is `vt --help`.

The command line itself is `vt/cli.py`; installed, it runs as the `vt` script or `python -m vt`. The wheel
ships no top-level `cli` module (it would shadow any `cli.py` of the user's own), so this file stays in
the repository only."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this checkout's vt, also without an install

from vt.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
