"""Bad input: every broken row becomes a `rejects` row with its reason; every bad manifest a one-line
error naming the problem; a failing build leaves no half-written dataset behind."""
import io
import json

import duckdb
import pytest
from PIL import Image

from build_helpers import build, image_bytes, vt, write_manifest
from vtdata.console import VtError
from vtdata.dataset import iter_samples


def _bomb_png() -> bytes:  # 6000x6000 1-bit PNG: tiny file, 36 Mpx
    buf = io.BytesIO()
    Image.new("1", (6000, 6000), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _zero_size_png() -> bytes:  # a PNG whose header says 0 x 10
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 0, 10, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    imgs = d / "img"
    imgs.mkdir()
    good = image_bytes((120, 90), "JPEG")
    jpg = image_bytes((300, 200), "JPEG", color=(10, 200, 10))
    (imgs / "good.jpg").write_bytes(good)
    (imgs / "good2.png").write_bytes(image_bytes((90, 120), "PNG", color=(0, 0, 255)))
    (imgs / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg body" * 3)
    (imgs / "trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    (imgs / "empty.png").write_bytes(b"")
    (imgs / "zero.png").write_bytes(_zero_size_png())
    (imgs / "bomb.png").write_bytes(_bomb_png())
    lines = [
        {"id": "ok1", "image": "good.jpg", "question": "What colour?", "answers": ["red"]},
        {"id": "ok2", "image": "good2.png", "question": "What colour is it?", "answers": "blue"},
        {"id": "corrupt", "image": "corrupt.jpg", "question": "q", "answers": ["a"]},
        {"id": "trunc", "image": "trunc.jpg", "question": "q", "answers": ["a"]},
        {"id": "empty", "image": "empty.png", "question": "q", "answers": ["a"]},
        {"id": "zero", "image": "zero.png", "question": "q", "answers": ["a"]},
        {"id": "bomb", "image": "bomb.png", "question": "q", "answers": ["a"]},
        {"id": "missingfile", "image": "nope.png", "question": "q", "answers": ["a"]},
        {"id": "noq", "image": "good.jpg", "answers": ["a"]},
        {"id": "emptyq", "image": "good.jpg", "question": "   ", "answers": ["a"]},
        {"id": "noa", "image": "good.jpg", "question": "q"},
        {"id": "emptya", "image": "good.jpg", "question": "q", "answers": ["", " "]},
        {"id": "surrogate", "image": "good.jpg", "question": "bad \udc80 text", "answers": ["a"]},
        {"id": "ok1", "image": "good2.png", "question": "another", "answers": ["x"]},  # duplicate id
        {"id": "dup", "image": "good.jpg", "question": "  what COLOUR? ", "answers": ["red"]},  # same image + question
    ]
    raw = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    raw += b'{"id": "latin1", "image": "good.jpg", "question": "caf\xe9", "answers": ["a"]}\n'  # not UTF-8
    raw += b"{not json}\n"
    (d / "rows.jsonl").write_bytes(raw)
    m = write_manifest(d, [{"name": "j", "kind": "jsonl", "path": "rows.jsonl", "image_root": "img"}],
                       resolution={"min_pixels": 112 * 112, "max_pixels": 224 * 224, "pixel_cap": 10_000_000})
    result = build(m, d / "out")
    con = duckdb.connect(str(d / "vt.duckdb"), read_only=True)
    rejects = {r[0]: (r[1], r[2]) for r in con.execute("SELECT source_row, reason, stage FROM rejects").fetchall()}
    con.close()
    return d, result, rejects


@pytest.mark.parametrize("row,reason", [
    ("corrupt", "not a readable image"), ("trunc", "corrupt or truncated"), ("empty", "empty image file"),
    ("zero", "zero-size image"), ("bomb", "decompression bomb"), ("missingfile", "image file not found"),
    ("noq", "missing question"), ("emptyq", "empty question"), ("noa", "missing answer"),
    ("emptya", "empty answer"), ("surrogate", "non-UTF-8 text in question"), ("latin1", "not valid UTF-8"),
    ("line17", "not a JSON object"), ("ok1", "duplicate id"), ("dup", "duplicate of"),
])
def test_each_bad_row_is_rejected_with_its_reason(bad_build, row, reason):
    _, _, rejects = bad_build
    key = {"latin1": "line16"}.get(row, row)
    assert key in rejects, sorted(rejects)
    assert reason in rejects[key][0]


def test_counts_reconcile_and_only_good_rows_kept(bad_build):
    d, result, rejects = bad_build
    c = result["counts"]
    assert c["in"] == 17 and c["kept"] == 2 and c["duplicates"] == 1 and c["rejected"] == 14
    assert c["in"] == c["kept"] + c["duplicates"] + c["rejected"] == len(rejects) + c["kept"]
    assert {r["question"] for r in iter_samples(d / "out")} == {"What colour?", "What colour is it?"}
    assert rejects["dup"][1] == "dedupe"
    # the summary in build.json groups reasons by kind, without row-specific details (ids, line numbers)
    assert c["reject_reasons"] == dict.fromkeys(sorted([
        "not a readable image", "corrupt or truncated image", "empty image file", "zero-size image",
        "decompression bomb", "image file not found", "missing question", "empty question", "missing answer",
        "empty answer", "non-UTF-8 text in question", "not valid UTF-8", "not a JSON object", "duplicate id"]), 1)


def _err(tmp_path, sources, **top):
    with pytest.raises(VtError) as e:
        build(write_manifest(tmp_path, sources, **top), tmp_path / "out")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_manifest_errors_name_the_bad_key(tmp_path):
    src = {"name": "g", "kind": "synthetic", "task": "general", "take": 2}
    assert "unknown key sources[0].tkae" in _err(tmp_path, [dict(src, tkae=3)])
    assert "unknown key seeed" in _err(tmp_path, [src], seeed=1)
    assert "unknown key resolution.max_pixel" in _err(tmp_path, [src], resolution={"max_pixel": 1})
    assert "unknown key sources[0].filters.min_sid" in _err(tmp_path, [dict(src, filters={"min_sid": 2})])
    assert "sources[0].kind" in _err(tmp_path, [dict(src, kind="csv")])
    assert "sources[0].task" in _err(tmp_path, [dict(src, task="chart")])
    assert "path is required" in _err(tmp_path, [{"name": "j", "kind": "jsonl"}])
    assert "jsonl file not found" in _err(tmp_path, [{"name": "j", "kind": "jsonl", "path": "missing.jsonl"}])
    assert "needs a top-level `total:`" in _err(tmp_path, [dict({k: v for k, v in src.items() if k != "take"}, weight=1)])
    assert "used twice" in _err(tmp_path, [src, src])
    assert "total is only used with `weight:`" in _err(tmp_path, [src], total=10)  # would be silently ignored
    assert "val_fraction" in _err(tmp_path, [src], val_fraction=1.5)
    (tmp_path / "c.jsonl").write_text('{"q": "x", "answers": "a", "image": "i.png"}\n')
    assert "columns.question" in _err(tmp_path, [{"name": "j", "kind": "jsonl", "path": "c.jsonl",
                                                  "columns": {"question": "qq"}}])
    assert "unknown key columns.questoin" in _err(tmp_path, [{"name": "j", "kind": "jsonl", "path": "c.jsonl",
                                                             "columns": {"questoin": "q"}}])


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 2, "colour": 1}])
    r = vt("build-data", m, "--out", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown key sources[0].colour" in r.stderr
    assert "Traceback" not in r.stderr
    r = vt("build-data", tmp_path / "nope.yaml", "--out", tmp_path / "o")
    assert r.returncode == 2 and "manifest not found" in r.stderr
    (tmp_path / "bad.yaml").write_bytes(b"sources: [\xff\xfe")
    r = vt("build-data", tmp_path / "bad.yaml", "--out", tmp_path / "o")
    assert r.returncode == 2 and "UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_failed_build_leaves_no_partial_output_and_keeps_the_old_one(tmp_path, monkeypatch):
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 6}])
    first = build(m, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out" / "data").iterdir()}
    import vtdata.shards as vs

    calls = {"n": 0}
    real = vs.write_shard

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(vs, "write_shard", crash)
    m2 = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 6}],
                        shard_rows=2, seed=5)
    with pytest.raises(RuntimeError):
        build(m2, tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out" / "data").iterdir()} == before
    assert json.loads((tmp_path / "out" / "build.json").read_text())["manifest_sha256"] == first["manifest_sha256"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    calls["n"] = 0
    with pytest.raises(RuntimeError):
        build(m2, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    monkeypatch.setattr(vs, "write_shard", real)
    import vtdata.build

    def no_rename(tmp, out):
        raise OSError("rename failed")

    monkeypatch.setattr(vtdata.build, "publish", no_rename)  # the last step fails: the DB keeps the old rows too
    with pytest.raises(OSError):
        build(m2, tmp_path / "out")
    con = duckdb.connect(str(tmp_path / "vt.duckdb"), read_only=True)
    rows = set(con.execute("SELECT id, image_sha256 FROM samples").fetchall())
    con.close()
    assert rows == {(r["id"], r["image_sha256"]) for r in iter_samples(tmp_path / "out")} and len(rows) == 6


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 2}])
    with pytest.raises(VtError, match="not a vt dataset"):
        build(m, tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_parallel_build_rejects_the_same_rows(bad_build):
    d, result, rejects = bad_build
    r2 = build(d / "manifest.yaml", d / "out-par", num_proc=2, db=d / "par.duckdb")
    assert r2["counts"] == result["counts"]
    assert [s["sha256"] for s in r2["shards"]] == [s["sha256"] for s in result["shards"]]
    con = duckdb.connect(str(d / "par.duckdb"), read_only=True)
    par = {r[0]: (r[1], r[2]) for r in con.execute("SELECT source_row, reason, stage FROM rejects").fetchall()}
    con.close()
    assert par == rejects


def test_shipped_manifests_parse_and_missing_data_is_one_clear_error(tmp_path):
    from build_helpers import REPO
    from vtdata.manifest import load, targets

    m = load(REPO / "manifests" / "visionthink-smart.yaml")
    assert targets(m) == {"smart-require-high": 10000, "smart-no-require-high": 10000}
    assert m.policy.min_pixels == 512 * 512 and m.policy.max_pixels == 2048 * 2048
    (tmp_path / "m").mkdir()  # a copy, so that the relative data paths point into tmp_path
    copy = tmp_path / "m" / "smart.yaml"
    copy.write_text((REPO / "manifests" / "visionthink-smart.yaml").read_text())
    with pytest.raises(VtError, match="not found"):
        build(copy, tmp_path / "smart")
    assert not (tmp_path / "smart").exists()


def test_out_that_publish_would_destroy_is_refused(tmp_path):
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 2}])
    (tmp_path / "afile").write_text("keep me")
    r = vt("build-data", m, "--out", tmp_path / "afile")
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (tmp_path / "afile").read_text() == "keep me"
    with pytest.raises(VtError, match="cannot write"):  # under a file: no directory can be made there
        build(m, tmp_path / "afile" / "set", db=tmp_path / "x.duckdb")
    with pytest.raises(VtError, match="cannot create database"):
        build(m, tmp_path / "set", db=tmp_path / "afile" / "x.duckdb")
    build(m, tmp_path / "set", db=tmp_path / "set.duckdb")
    with pytest.raises(VtError, match="would replace"):  # the database inside the directory being replaced
        build(m, tmp_path / "set", db=tmp_path / "set" / "vt.duckdb")
    assert (tmp_path / "set" / "build.json").exists() and not (tmp_path / "set" / "vt.duckdb").exists()


def test_manifest_value_types_are_checked(tmp_path):
    src = {"name": "g", "kind": "synthetic", "task": "general", "take": 2}
    for filters, key in [({"min_side": "x"}, "min_side"), ({"max_question_chars": "x"}, "max_question_chars"),
                         ({"max_answer_chars": [1]}, "max_answer_chars"), ({"answer_types": "open"}, "answer_types"),
                         ({"answer_types": ["bogus"]}, "answer_types"), ({"meta": [1]}, "meta")]:
        assert f"sources[0].filters.{key} must be" in _err(tmp_path, [dict(src, filters=filters)])
    assert "take must be" in _err(tmp_path, [dict(src, take=True)])  # a bool is not a count
    assert "shard_rows must be" in _err(tmp_path, [src], shard_rows=True)
    assert "total must be" in _err(tmp_path, [{"name": "g", "kind": "synthetic", "count": 3, "weight": 1}], total=True)
    for w in (float("nan"), float("inf")):
        assert "weight must be" in _err(tmp_path, [{"name": "g", "kind": "synthetic", "count": 3, "weight": w}], total=5)
    assert "unknown key sources[0].columns" in _err(tmp_path, [dict(src, columns={"question": "q"})])  # unused by synthetic
    assert "path must be a non-empty string" in _err(tmp_path, [{"name": "p", "kind": "parquet", "path": None}])
    assert "is a directory" in _err(tmp_path, [{"name": "j", "kind": "jsonl", "path": "."}])
    assert "is a directory" in _err(tmp_path, [{"name": "l", "kind": "llava", "path": "."}])


def test_hf_source_name_is_not_its_config(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "hub").mkdir()  # a dataset that load_dataset reads by its builder (one `default` config)
    pq.write_table(pa.table({"question": ["q"], "answers": [["a"]], "image": [image_bytes()]}),
                   tmp_path / "hub" / "train.parquet")
    m = write_manifest(tmp_path, [{"name": "mine", "kind": "hf", "path": "hub", "split": "train"}])
    assert build(m, tmp_path / "out")["counts"]["kept"] == 1
    m = write_manifest(tmp_path, [{"name": "mine", "kind": "hf", "path": "hub", "split": "train", "config": "nope"}])
    with pytest.raises(VtError, match="BuilderConfig 'nope'"):
        build(m, tmp_path / "out2")


def test_publish_puts_the_old_output_back_when_the_rename_fails(tmp_path, monkeypatch):
    from pathlib import Path

    from vtdata.outdir import publish

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "build.json").write_text("old")
    (tmp_path / "tmp").mkdir()
    real = Path.rename

    def rename(self, target):
        if self.name == "tmp":
            raise OSError("simulated")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="simulated"):
        publish(tmp_path / "tmp", tmp_path / "out")
    assert (tmp_path / "out" / "build.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tmp"]
