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


def _tamper(shard, how):
    """Rewrite the shard with sample s1's image swapped for s2's (a valid image of another sample) or
    with one byte of it flipped (damaged); image_sha256 stays as build-data recorded it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    t = pq.read_table(shard)
    images = t.column("image").to_pylist()
    if how == "swapped":
        images[1] = dict(images[2])
    else:
        b = bytearray(images[1]["bytes"])
        b[len(b) // 2] ^= 0x01
        images[1] = {"bytes": bytes(b), "path": None}
    t = t.set_column(t.column_names.index("image"), t.schema.field("image"), pa.array(images, t.schema.field("image").type))
    pq.write_table(t, shard)


@pytest.mark.parametrize("how", ["swapped", "flipped"])
def test_an_image_that_does_not_match_its_sha256_is_never_used(data, tmp_path, how):
    from vtdata.dataset import read_split
    from vttrain.grpo.train import load_rows
    d, shard = data
    assert len(list(iter_samples(d, "train"))) == 4  # intact: read as before
    _tamper(shard, how)
    for read in (lambda: list(iter_samples(d, "train")),  # export, and every full-row reader
                 lambda: list(iter_samples(d, "train", columns=["id", "image"])),  # score-judge's image pass
                 lambda: read_split(d, "train"),  # eval
                 lambda: load_rows(str(d), "train")):  # training, before any rollout
        with pytest.raises(VtError, match=r"sample s1: image bytes do not match the image_sha256") as e:
            read()
        assert "\n" not in str(e.value)
    rows = list(iter_samples(d, "train", columns=["id", "question"]))  # no image read: nothing to check
    assert [r["id"] for r in rows] == ["s0", "s1", "s2", "s3"] and "image_sha256" not in rows[0]
    gen = iter_samples(d, "train", columns=["id", "image"])
    first = next(gen)
    assert first["id"] == "s0" and set(first) == {"id", "image"}  # the hash asked for the check is not handed on


def test_vt_export_over_a_swapped_image_is_one_line(data, tmp_path):
    from build_helpers import vt
    d, shard = data
    _tamper(shard, "swapped")
    r = vt("export", d, "--out", tmp_path / "x", "--format", "jsonl")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "sample s1" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x").exists()
