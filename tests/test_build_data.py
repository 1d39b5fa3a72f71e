"""vt build-data on the demo manifest: layout, read-back, reconciling counts, DuckDB, reproducibility."""
import hashlib
import json

import duckdb
import pytest

from build_helpers import DEMO, build, vt, write_manifest
from vtdata.dataset import iter_samples, load_hf
from vtdata.resolution import view_of, view_sizes
from vtdata.manifest import load as load_manifest
from vtdata.schema import COLUMNS, sample_id


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    r = vt("build-data", DEMO, "--out", d / "set")
    assert r.returncode == 0, r.stderr
    return d


def test_layout_counts_and_reconcile(demo):
    info = json.loads((demo / "set" / "build.json").read_text())
    c = info["counts"]
    assert c["in"] == c["kept"] + c["duplicates"] + c["rejected"]
    assert c["by_source"] == {"synth-general": {"in": 48, "kept": 48, "duplicates": 0, "rejected": 0},
                              "synth-ocr": {"in": 48, "kept": 48, "duplicates": 0, "rejected": 0}}
    # val_fraction 0.25 of each task
    assert c["by_task"] == {"general": {"train": 36, "val": 12}, "ocr": {"train": 36, "val": 12}}
    assert info["manifest_sha256"] == load_manifest(DEMO).hash
    files = sorted(p.name for p in (demo / "set" / "data").iterdir())
    assert files == sorted(s["file"].split("/")[1] for s in info["shards"])
    assert all(f.startswith(("train-", "val-")) and f.endswith(".parquet") for f in files)
    assert not list(demo.glob(".set.tmp-*"))
    for s in info["shards"]:
        assert hashlib.sha256((demo / "set" / s["file"]).read_bytes()).hexdigest() == s["sha256"]


def test_reads_back_as_images_with_consistent_sizes(demo):
    ds = load_hf(demo / "set", "val")
    assert len(ds) == 24 and ds.column_names == COLUMNS
    row = ds[0]
    img = row["image"]
    assert img.size == (row["width"], row["height"])  # the original, untouched
    policy = load_manifest(DEMO).policy
    assert view_sizes(row["width"], row["height"], policy) == ((row["low_width"], row["low_height"]),
                                                              (row["high_width"], row["high_height"]))
    assert view_of(row, "low").size == (row["low_width"], row["low_height"])
    rows = list(iter_samples(demo / "set"))
    assert len(rows) == 96 and len({r["id"] for r in rows}) == 96
    assert {r["split"] for r in rows} == {"train", "val"}
    for r in rows[:10]:
        assert hashlib.sha256(r["image"]).hexdigest() == r["image_sha256"]
        assert r["task"] in ("general", "ocr") and r["answers"] and r["question"]
        assert json.loads(r["meta"])["template"]
    assert list(iter_samples(demo / "set", "train", columns=["id"]))[0].keys() == {"id"}


def test_duckdb_samples_and_rejects(demo):
    con = duckdb.connect(str(demo / "vt.duckdb"), read_only=True)
    cols = [r[0] for r in con.execute("DESCRIBE samples").fetchall()]
    assert "image" not in cols and "question" in cols and "image_sha256" in cols
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 96
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    ids = {r["id"] for r in iter_samples(demo / "set", columns=["id"])}
    assert {r[0] for r in con.execute("SELECT id FROM samples").fetchall()} == ids
    con.close()


def test_byte_identical_across_runs_and_num_proc(demo, tmp_path):
    r = build(DEMO, tmp_path / "again", num_proc=2, db=tmp_path / "x.duckdb")
    first = json.loads((demo / "set" / "build.json").read_text())
    assert [s["sha256"] for s in r["shards"]] == [s["sha256"] for s in first["shards"]]
    for s in first["shards"]:
        assert (tmp_path / "again" / s["file"]).read_bytes() == (demo / "set" / s["file"]).read_bytes()


def test_seed_changes_the_data_and_rebuild_replaces(tmp_path):
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 8}])
    a = build(m, tmp_path / "a")
    b = build(m, tmp_path / "a")  # rebuilding the same dir replaces it, DB rows are not doubled
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    con = duckdb.connect(str(tmp_path / "vt.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 8
    con.close()
    m2 = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 8}], seed=1)
    c = build(m2, tmp_path / "c")
    assert {r["image_sha256"] for r in iter_samples(tmp_path / "c")} != {r["image_sha256"] for r in iter_samples(tmp_path / "a")}
    assert c["manifest_sha256"] != a["manifest_sha256"]


def test_take_and_weight_sampling(tmp_path):
    m = write_manifest(tmp_path, [
        {"name": "g", "kind": "synthetic", "task": "general", "count": 40, "weight": 3},
        {"name": "o", "kind": "synthetic", "task": "ocr", "count": 40, "weight": 1}], total=20, val_fraction=0)
    r = build(m, tmp_path / "w")
    assert r["counts"]["by_source"]["g"]["kept"] == 15 and r["counts"]["by_source"]["o"]["kept"] == 5
    assert r["counts"]["by_split"] == {"train": 20, "val": 0}
    from vtdata.manifest import load, targets

    m3 = write_manifest(tmp_path, [{"name": n, "kind": "synthetic", "count": 9, "weight": 1} for n in "abc"], total=10)
    assert targets(load(m3)) == {"a": 4, "b": 3, "c": 3}  # shares add up to `total` (rounding gave 3+3+3)
    m4 = write_manifest(tmp_path, [{"name": "a", "kind": "synthetic", "count": 9, "weight": 1},
                                   {"name": "b", "kind": "synthetic", "count": 9, "weight": 2},
                                   {"name": "t", "kind": "synthetic", "take": 5}], total=7)
    assert targets(load(m4)) == {"a": 2, "b": 5, "t": 5}
    ids = {x["id"] for x in iter_samples(tmp_path / "w") if x["source"] == "g"}
    assert ids <= {sample_id("g", i) for i in range(40)}  # stable ids: hash(source, source row)
    assert ids != {sample_id("g", i) for i in range(15)}  # a seeded sample, not the first rows
