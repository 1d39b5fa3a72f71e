"""Round 3, class 8 (the parts done): the judge cache is keyed by the judge's server as well as its model
and prompt; an eval run is bound to the model's weights (a fingerprint), refused by name when another
model sits at the same path; curation reads only the train split's labels."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import duckdb
import pytest

from fake_openai import FakeOpenAI
from vtdata.console import VtError


def test_judge_cache_is_not_shared_across_servers(tmp_path):
    from vtdata.judge import JudgeItem, make_judge
    items = [JudgeItem("q", ["yes"], "maybe so", is_answer=True)]
    db = tmp_path / "vt.duckdb"
    for n in range(2):
        with FakeOpenAI() as srv:
            con = duckdb.connect(str(db))
            judge = make_judge("openai:m", db=con, base_url=srv.url, shortcut=False)
            try:
                judge.judge(items)
            finally:
                judge.close()
                con.close()
            assert srv.requests == 1, f"server {n} was not asked: a verdict of another server was reused"


def test_eval_run_refuses_another_model_at_the_same_path(tmp_path):
    from models_helpers import tiny_model_dir
    from vtdata import tables
    from vttrain.eval import EvalConfig, _check_run, _start_run
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir(), model)
    data = tmp_path / "data"
    data.mkdir()
    cfg = EvalConfig(data=str(data), model=str(model), mode="full", name="r1")
    con = duckdb.connect(str(tmp_path / "vt.duckdb"))
    tables.ensure(con, "eval_runs", "eval_predictions")
    _start_run(con, cfg, "r1")
    assert _check_run(con, cfg, "r1") is True
    w = next(model.glob("*.safetensors"))
    b = bytearray(w.read_bytes())
    b[-1000:] = bytes(1000)  # other weights, same file size and config
    w.write_bytes(bytes(b))
    with pytest.raises(VtError, match="different model"):
        _check_run(con, cfg, "r1")


def test_curate_reads_only_the_train_split(tmp_path):
    from vtdata import tables
    from vtdata.curate import _candidates
    con = duckdb.connect(str(tmp_path / "vt.duckdb"))
    tables.ensure(con, "sufficiency")
    for i, split in enumerate(["train", "val", "train", "val"]):
        con.execute("INSERT INTO sufficiency (policy, sample_id, source, split, dataset, label) "
                    "VALUES ('p', ?, 's', ?, 'd', 'low_ok')", [f"id{i}", split])
    _, cands = _candidates(con, SimpleNamespace(policy=None, db=tmp_path / "vt.duckdb", stratify=None))
    assert sorted(c["sample_id"] for c in cands) == ["id0", "id2"]
