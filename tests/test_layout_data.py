"""The data side's layout follows the flow: one module per job, each written once (issue 12)."""
import re
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAD_OWNED: set[str] = set()


def _sources(*dirs):
    for d in dirs:
        for p in sorted((ROOT / d).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if rel not in LEAD_OWNED:
                yield rel, p.read_text()


def test_reading_a_dataset_is_its_own_module():
    import vtdata.build
    from vtdata import dataset

    for name in ("shard_files", "iter_samples", "read_split", "load_hf"):
        assert callable(getattr(dataset, name))
        assert not hasattr(vtdata.build, name), f"vtdata.build still holds {name}"
    users = [rel for rel, text in _sources("vtdata", "vttrain", "tests", "bench") if "from vtdata.build import" in text
             and re.search(r"from vtdata\.build import[^\n]*(iter_samples|read_split|load_hf|shard_files)", text)]
    assert users == []


def test_every_table_and_view_is_declared_in_tables_py(tmp_path):
    from vtdata import tables

    for rel, text in _sources("vtdata", "vttrain"):
        if rel != "vtdata/tables.py":
            assert not re.search(r"CREATE (TABLE|OR REPLACE VIEW|VIEW)", text), rel
            assert "information_schema.tables" not in text, rel
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    assert tables.existing(con) == set()
    tables.ensure(con, *tables.DDL)
    tables.ensure(con, *tables.DDL)  # idempotent
    assert tables.existing(con) == set(tables.DDL)
    assert {"name", "sample_id", "filled"} <= tables.columns(con, "curated")
    assert tables.columns(con, "nope") == set()


def test_transactions_begin_and_end_in_one_place(tmp_path):
    from vtdata.db import transaction

    for rel, text in _sources("vtdata", "vttrain"):
        if rel != "vtdata/db.py":
            assert not re.search(r"\"(BEGIN|COMMIT|ROLLBACK)", text), rel
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("publish failed")
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    with transaction(con):
        con.execute("INSERT INTO t VALUES (2)")
    assert con.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_one_parquet_writer_for_build_curate_and_export(tmp_path):
    from vtdata.shards import write_shard

    writers = [rel for rel, text in _sources("vtdata") if "ParquetWriter(" in text]
    assert writers == ["vtdata/shards.py"]
    # image bytes (also nested, as in export's verl `images` list) are stored as they are; text is zstd
    schema = pa.schema([("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
                        ("problem", pa.string()), ("answers", pa.list_(pa.string()))])
    t = pa.table({"images": [[{"bytes": b"\xff" * 64, "path": None}]] * 3, "problem": ["q"] * 3,
                  "answers": [["a"]] * 3}, schema=schema)
    entry = write_shard(tmp_path / "x.parquet", schema, iter([t]), digest=False)
    assert entry == {"file": "data/x.parquet", "rows": 3}
    rg = pq.ParquetFile(tmp_path / "x.parquet").metadata.row_group(0)
    cols = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    assert cols["images.list.element.bytes"].compression == "UNCOMPRESSED"
    assert not cols["images.list.element.bytes"].is_stats_set
    assert cols["problem"].compression == "ZSTD" and cols["answers.list.element"].compression == "ZSTD"


def test_one_visual_token_count_is_the_processors():
    from vtdata.resolution import visual_tokens
    from vttrain.models import build as models

    sizes = [(28, 28), (10, 10), (2, 300), (56, 56), (448, 336), (1023, 769), (1024, 2048), (5000, 4000),
             (28, 5000), (99, 13), (2048, 2048), (4096, 4096)]
    for bounds in ({}, {"min_pixels": models.MIN_PIXELS, "max_pixels": models.MAX_PIXELS},
                   {"min_pixels": 256 * 28 * 28, "max_pixels": 1280 * 28 * 28}):
        ip = models._pil_image_processor(**bounds)
        proc = SimpleNamespace(image_processor=ip)
        for w, h in sizes:
            want = ip.get_number_of_image_patches(h, w, {}) // ip.merge_size ** 2
            got = visual_tokens(w, h, ip.patch_size, ip.merge_size, ip.size["shortest_edge"], ip.size["longest_edge"])
            assert got == want == models.visual_tokens(proc, (w, h)), (bounds, w, h)
    # without bounds: the image as it is (what the OpenAI-compatible policy counts), at least one token
    assert [visual_tokens(w, h) for w, h in [(28, 28), (10, 10), (56, 56), (448, 336), (2, 300), (99, 13)]] == \
        [1, 1, 4, 192, 11, 4]


def test_every_data_module_is_short():
    long = {rel: n for rel, text in _sources("vtdata") if (n := text.count("\n")) > 400}
    assert long == {}
