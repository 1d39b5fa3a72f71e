"""Class 7 of the hostile-input issue: broken datasets give one line, not a stack.

Every stage reads a built set through vtdata/dataset.py: a truncated, empty or foreign parquet shard
is a one-line VtError, and a shard that build.json lists but the directory lacks is refused instead of
being scored with fewer rows."""
import json

import pytest

import train_helpers as h
from vtdata.console import VtError
from vtdata.dataset import count_rows, iter_samples


@pytest.fixture
def data(tmp_path):
    d = h.write_dataset(tmp_path / "set", n=4)
    shard = d / "data" / "train-00000.parquet"
    (d / "build.json").write_text(json.dumps({"rows": 4, "shards": [{"file": "data/train-00000.parquet"}]}))
    return d, shard


@pytest.mark.parametrize("damage", ["truncate", "empty", "foreign"])
def test_a_broken_shard_is_one_line(data, damage):
    d, shard = data
    raw = shard.read_bytes()
    shard.write_bytes({"truncate": raw[: len(raw) // 2], "empty": b"", "foreign": b"PAR1 not really" * 10}[damage])
    with pytest.raises(VtError, match="shard"):
        list(iter_samples(d, "train"))
    with pytest.raises(VtError, match="shard"):
        count_rows(d, "train")


def test_a_deleted_shard_is_not_scored_with_fewer_rows(data):
    d, shard = data
    shard.unlink()
    with pytest.raises(VtError, match="missing"):
        list(iter_samples(d, "train"))


def test_vt_export_over_a_truncated_shard_is_one_line(data, tmp_path):
    from typer.testing import CliRunner

    from vt.cli import app
    d, shard = data
    shard.write_bytes(shard.read_bytes()[:100])
    res = CliRunner().invoke(app, ["export", str(d), "--out", str(tmp_path / "x"), "--format", "jsonl"])
    assert isinstance(res.exception, VtError) and "shard" in str(res.exception), repr(res.exception)
