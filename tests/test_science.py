"""The miniature learns (marked `science`: `make test-science`; the warm start is built once, ~10 min on
2 cores, then cached in VT_CACHE): after SFT the mini model calls the tool at the same rate on both
classes; a short GRPO run with the paper's balanced penalty moves the detail class's resize ratio up and
the general class's down. A broken penalty (none, or a sign error) leaves the general class where it was."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vt import shipped

pytestmark = [pytest.mark.science, pytest.mark.slow]
VT = [sys.executable, "-m", "vt"]


def _vt(*args, timeout=3000):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(VT + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("science")
    _vt("init-model", "mini", root / "model")
    _vt("build-data", shipped("miniature.yaml"), "--out", root / "data", "--db", root / "vt.duckdb")
    return root


def _resize_by_task(run: Path, data: Path, steps: range) -> dict:
    import datasets
    ds = datasets.load_dataset("parquet", data_files=str(data / "data" / "train-*.parquet"), split="train")
    task = dict(zip(ds["id"], ds["task"]))
    rows = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines()]
    out = {}
    for t in ("general", "ocr"):
        sel = [r["used_high"] for r in rows if r["step"] in steps and task[r["id"]] == t]
        out[t] = sum(sel) / len(sel)
    return out


def test_grpo_moves_the_resize_ratio_per_class(mini):
    run = mini / "train-paper"
    _vt("train", shipped("train-mini.yaml"), "--model", mini / "model", "--data_dir", mini / "data",
        "--output_dir", run, "--max_steps", 80, "--save_strategy", "no", "--seed", 0)
    first = _resize_by_task(run, mini / "data", range(1, 11))
    last = _resize_by_task(run, mini / "data", range(61, 81))
    # from ~0.5 / 0.5 (the warm start's untaught rate) ...
    assert 0.25 <= first["general"] <= 0.75 and 0.25 <= first["ocr"] <= 0.75, first
    # ... to resizing on detail questions and answering general ones from the low view
    assert last["ocr"] >= 0.7 and last["general"] <= 0.3, (first, last)
