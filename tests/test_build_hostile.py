"""Hostile inputs to build-data: image paths that are not regular files or leave image_root, oversized
images, manifest bombs, non-finite and oversized values. Each ends as a one-line error or a reject
with a reason, never a hang, a traceback or a file from elsewhere in the dataset."""
import json
import os
import resource
import subprocess
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from build_helpers import REPO, build, image_bytes, vt, write_manifest
from vtdata.dataset import iter_samples
from vtdata.console import VtError


def _rejects(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT source_row, reason FROM rejects").fetchall())
    finally:
        con.close()


def _limit_memory():  # a runaway read fails fast instead of taking the machine's memory
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


def _build_cli(tmp_path, rows, **src):
    """build-data in a subprocess (bounded time and memory); returns its rejects {source_row: reason}."""
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = write_manifest(tmp_path, [{"name": "j", "kind": "jsonl", "path": "rows.jsonl", "image_root": "img", **src}])
    r = subprocess.run([sys.executable, "-m", "vt", "build-data", str(m), "--out",
                        str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=60,
                       preexec_fn=_limit_memory)
    assert r.returncode == 0, r.stderr
    return _rejects(tmp_path / "vt.duckdb")


def _img_dir(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    (root / "ok.png").write_bytes(image_bytes((64, 64)))
    return root


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(_img_dir(tmp_path) / "pipe.png")      # opening it for reading blocks until a writer comes
    rej = _build_cli(tmp_path, [{"id": "ok", "image": "ok.png", "question": "q", "answers": ["a"]},
                                {"id": "fifo", "image": "pipe.png", "question": "q2", "answers": ["a"]}])
    assert rej == {"fifo": f"image path is not a regular file: {tmp_path / 'img' / 'pipe.png'}"}


def test_devices_are_refused_even_with_outside_paths_allowed(tmp_path):
    (_img_dir(tmp_path) / "zero.png").symlink_to("/dev/zero")   # reads until memory runs out
    rows = [{"id": "zero", "image": "/dev/zero", "question": "q3", "answers": ["a"]},
            {"id": "zlink", "image": "zero.png", "question": "q4", "answers": ["a"]}]
    rej = _build_cli(tmp_path, rows, allow_outside_image_root=True)
    assert set(rej) == {"zero", "zlink"} and all("not a regular file" in x for x in rej.values()), rej


def test_paths_must_stay_under_image_root(tmp_path):
    secret = tmp_path / "secret.png"                  # a readable file outside the source's image_root
    secret.write_bytes(image_bytes((64, 64), color=(1, 2, 3)))
    root = tmp_path / "data" / "img"
    root.mkdir(parents=True)
    (root / "ok.png").write_bytes(image_bytes((64, 64)))
    (root / "sub").mkdir()
    (root / "sub" / "in.png").write_bytes(image_bytes((64, 64), color=(9, 9, 9)))
    (root / "link.png").symlink_to(secret)
    (root / "inside_link.png").symlink_to(root / "sub" / "in.png")   # a symlink that stays inside: fine
    rows = [{"id": "ok", "image": "ok.png"}, {"id": "sub", "image": "sub/../sub/in.png"},
            {"id": "dotdot", "image": "../../secret.png"}, {"id": "abs", "image": str(secret)},
            {"id": "link", "image": "link.png"}, {"id": "home", "image": "~/secret.png"},
            {"id": "inlink", "image": "inside_link.png"}]
    for k, r in enumerate(rows):
        r.update(question=f"q{k}", answers=["a"])
    (tmp_path / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = {"name": "j", "kind": "jsonl", "path": "data/rows.jsonl", "image_root": "data/img"}
    result = build(write_manifest(tmp_path, [src]), tmp_path / "out")
    rej = _rejects(tmp_path / "vt.duckdb")
    assert set(rej) == {"dotdot", "abs", "link", "home"}
    assert all(reason.startswith("image path leaves image_root") for reason in rej.values())
    assert result["counts"]["kept"] == 3   # ok, sub, inlink
    secret_bytes = secret.read_bytes()
    assert all(s["image"] != secret_bytes for s in iter_samples(tmp_path / "out"))
    # the same rows from a parquet file, and with paths outside allowed explicitly
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "question": [r["question"] for r in rows],
                             "answer": ["a"] * len(rows), "image": [r["image"] for r in rows]}), tmp_path / "t.parquet")
    src = {"name": "p", "kind": "parquet", "path": "t.parquet", "image_root": "data/img"}
    build(write_manifest(tmp_path, [src]), tmp_path / "out2", db=tmp_path / "p.duckdb")
    assert set(_rejects(tmp_path / "p.duckdb")) == {"dotdot", "abs", "link", "home"}
    build(write_manifest(tmp_path, [dict(src, allow_outside_image_root=True)]), tmp_path / "out3",
          db=tmp_path / "q.duckdb")
    assert set(_rejects(tmp_path / "q.duckdb")) == {"home"}        # ~/secret.png does not exist


def test_image_bytes_are_capped(tmp_path):
    small, big = image_bytes((32, 32)), image_bytes((400, 400), "BMP")
    assert len(small) < 2000 < len(big)
    (tmp_path / "big.bmp").write_bytes(big)
    (tmp_path / "small.png").write_bytes(small)
    pq.write_table(pa.table({"id": ["b", "s", "bf", "sf"], "question": ["q1", "q2", "q3", "q4"],
                             "answer": ["a"] * 4, "image": [{"bytes": big, "path": None}, {"bytes": small, "path": None},
                                                            {"bytes": None, "path": "big.bmp"},
                                                            {"bytes": None, "path": "small.png"}]}),
                   tmp_path / "t.parquet")
    res = {"min_pixels": 112 * 112, "max_pixels": 224 * 224, "max_image_bytes": 2000}
    r = build(write_manifest(tmp_path, [{"name": "p", "kind": "parquet", "path": "t.parquet"}], resolution=res),
              tmp_path / "out")
    assert r["counts"]["kept"] == 2 and r["resolution"]["max_image_bytes"] == 2000
    rej = _rejects(tmp_path / "vt.duckdb")
    assert set(rej) == {"b", "bf"} and all("larger than max_image_bytes" in x for x in rej.values())
    with pytest.raises(VtError, match="max_image_bytes must be a positive integer"):
        build(write_manifest(tmp_path, [{"name": "p", "kind": "parquet", "path": "t.parquet"}],
                             resolution={"max_image_bytes": 0}), tmp_path / "out")


BOMB = "description:\n  a: &a [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
    f"  {b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n" for a, b in zip("abcdefgh", "bcdefghi")) + \
    "sources:\n  - {name: g, kind: synthetic, task: general, take: 2}\n"


def test_manifest_bombs_are_refused_quickly(tmp_path):
    import time

    from vtdata.manifest import MAX_BYTES, load
    cases = {"bomb.yaml": (BOMB, "expands to more than"),   # 9 ** 9 strings once expanded, < 600 bytes
             "cycle.yaml": ("description: &a [*a]\nsources: [{name: g, kind: synthetic, take: 1}]\n", "refers to itself"),
             "big.yaml": ("sources: [{name: g, kind: synthetic, take: 1}]\n" + "#" * MAX_BYTES, "larger than"),
             "deep.yaml": ("description: " + "[" * 5000 + "]" * 5000 + "\nsources: []\n", "nested too deeply")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        t0 = time.perf_counter()
        with pytest.raises(VtError, match=message):
            load(tmp_path / name)
        assert time.perf_counter() - t0 < 30   # the old hash of the expansion took 85 s and 6 GB
    r = vt("build-data", tmp_path / "bomb.yaml", "--out", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.startswith("error: manifest") and r.stderr.count("\n") == 1, r.stderr


def test_manifest_hash_is_the_file_bytes_and_huge_weights_work(tmp_path):
    import hashlib

    from vtdata.manifest import load, targets
    src = [{"name": "a", "kind": "synthetic", "task": "general", "count": 4, "weight": 1.0e308},
           {"name": "b", "kind": "synthetic", "task": "ocr", "count": 4, "weight": 1.0e308}]
    m = write_manifest(tmp_path, src, total=4)
    assert load(m).hash == hashlib.sha256(m.read_bytes()).hexdigest()
    assert targets(load(m)) == {"a": 2, "b": 2}
    r = build(m, tmp_path / "out")
    assert r["counts"]["kept"] == 4 and r["manifest_sha256"] == load(m).hash


def test_non_finite_answers_and_huge_questions_are_rejected(tmp_path):
    (tmp_path / "i.png").write_bytes(image_bytes((64, 64)))
    (tmp_path / "bad.jpg").write_bytes(b"hello, not an image")   # PIL names its BytesIO, address and all
    lines = ['{"id": "nan", "image": "i.png", "question": "q1", "answers": NaN}',
             '{"id": "inf", "image": "i.png", "question": "q2", "answers": [Infinity]}',
             '{"id": "ninf", "image": "i.png", "question": "q3", "answers": -Infinity}',
             '{"id": "num", "image": "i.png", "question": "q4", "answers": 2.5}',
             json.dumps({"id": "huge", "image": "i.png", "question": "why? " * 200_000, "answers": "a"}),
             '{"id": "corrupt", "image": "bad.jpg", "question": "q5", "answers": "a"}']
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"id": ["pnan", "pok"], "question": ["q6", "q7"], "answer": [float("nan"), 3.0],
                             "image": [{"bytes": image_bytes((64, 64)), "path": None}] * 2}), tmp_path / "t.parquet")
    srcs = [{"name": "j", "kind": "jsonl", "path": "rows.jsonl"}, {"name": "p", "kind": "parquet", "path": "t.parquet"}]
    r = build(write_manifest(tmp_path, srcs), tmp_path / "out")
    rej = _rejects(tmp_path / "vt.duckdb")
    assert rej["nan"] == "answer is not a finite number (nan)" and rej["pnan"] == rej["nan"]
    assert rej["inf"] == "answer is not a finite number (inf)" and rej["ninf"] == "answer is not a finite number (-inf)"
    assert rej["huge"] == "filter: question longer than 8000 chars"
    assert " at 0x" not in rej["corrupt"] and rej["corrupt"].startswith("not a readable image")
    assert r["counts"]["kept"] == 2   # num (answer "2.5") and pok ("3.0")
    # the cap is configurable per source
    srcs[0]["filters"] = {"max_question_chars": 2_000_000}
    build(write_manifest(tmp_path, srcs), tmp_path / "out")
    assert "huge" not in _rejects(tmp_path / "vt.duckdb")
