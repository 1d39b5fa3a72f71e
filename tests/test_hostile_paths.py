"""Class 4 of the hostile-input issue: paths stay where they belong.

Every image path from data is checked against image_root whatever its shape (nested lists, path
mappings); a run or set name is one plain file-name component; a database that is not a regular file
(a FIFO would hang the open) is refused."""
import os
from pathlib import Path

import pytest

from vtdata.console import VtError
from vtdata.sources import ImageRoot, image_value

OUTSIDE = "/etc/hostname"


@pytest.mark.parametrize("image", [
    [[OUTSIDE]],
    [[[OUTSIDE]]],
    {"path": [OUTSIDE]},
    [{"path": OUTSIDE}],
    [{"bytes": None, "path": [[OUTSIDE]]}],
    (("../../../../etc/hostname",),),
    [Path(OUTSIDE)],
])
def test_nested_image_paths_cannot_leave_image_root(tmp_path, image):
    with pytest.raises(ValueError, match="leaves image_root"):
        image_value(image, ImageRoot(tmp_path))


def test_nested_image_paths_inside_the_root_still_work(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    root = ImageRoot(tmp_path)
    assert image_value([["a.png"]], root) == image_value({"path": ["a.png"]}, root) == str((tmp_path / "a.png").resolve())


@pytest.mark.parametrize("name", ["../outside", "a/b", "/abs/run", "..", "x\\y", "bad\nname"])
def test_eval_run_names_stay_inside_evals(name):
    from vttrain.eval import EvalConfig
    with pytest.raises(VtError, match="plain name"):
        EvalConfig(data="d", model="m", name=name)


@pytest.mark.parametrize("name", ["../x", "sets/a"])
def test_curate_names_are_plain(tmp_path, name):
    from vtdata.curate import CurateConfig
    with pytest.raises(VtError, match="plain name"):
        CurateConfig(data=tmp_path, name=name, per_class=1, out=tmp_path / "o")


def test_a_fifo_database_is_refused_without_blocking(tmp_path):
    """In a thread (the old code blocked in open() on the FIFO forever)."""
    import threading

    from vtdata.db import connect
    fifo = tmp_path / "vt.duckdb"
    os.mkfifo(fifo)
    got = []

    def try_connect():
        try:
            connect(fifo, read_only=True)
            got.append("opened")
        except VtError as err:
            got.append(str(err))
    t = threading.Thread(target=try_connect, daemon=True)
    t.start()
    t.join(60)
    assert got and "not a regular file" in got[0], got
