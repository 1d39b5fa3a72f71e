"""Bounded memory: build-data of a parquet source and curate stream their rows, so their peak RSS
does not grow with the input (bench/memory.py measures the same at 4 GB)."""
import json
import shutil
import sys

from build_helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import memory as bench  # noqa: E402


def _peaks(d, size):
    """Peak RSS of build-data and of curate (every row) on a generated parquet of `size` bytes of images."""
    n = bench.generate(d / "in.parquet", int(size), side=256)
    (d / "m.yaml").write_text(json.dumps({"val_fraction": 0, "sources": [
        {"name": "big", "kind": "parquet", "path": str(d / "in.parquet")}]}))
    _, _, build = bench.run(REPO, "build-data", d / "m.yaml", "--out", d / "data", "--db", d / "vt.duckdb")
    bench.labels(d / "vt.duckdb", d / "data")
    _, _, curate = bench.run(REPO, "curate", "--db", d / "vt.duckdb", "--name", "m", "--per-class", n,
                             "--out", d / "cur", "--allow-short")
    size = (d / "in.parquet").stat().st_size
    for p in ("data", "cur"):
        shutil.rmtree(d / p)
    for p in ("in.parquet", "vt.duckdb"):
        (d / p).unlink()
    return size, build, curate


def test_peak_memory_does_not_grow_with_the_input(tmp_path):
    _, build0, curate0 = _peaks(tmp_path, 2e6)           # a tiny input: the fixed cost of each command
    size, build, curate = _peaks(tmp_path, 150e6)
    # reading the whole input (as vt did) costs 4x its size at least; streaming, a few row groups
    assert build - build0 < size, (build0, build, size)
    assert curate - curate0 < size, (curate0, curate, size)


def _jsonl_peak(d, size):
    import base64
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    uris = []
    for _ in range(16):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        uris.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
    with open(d / "rows.jsonl", "w") as f:
        k = 0
        while f.tell() < size:
            f.write(json.dumps({"id": k, "question": f"q{k}?", "answers": "a", "image": uris[k % 16]}) + "\n")
            k += 1
    (d / "m.yaml").write_text(json.dumps({"sources": [{"name": "j", "kind": "jsonl", "path": "rows.jsonl"}]}))
    _, _, peak = bench.run(REPO, "build-data", d / "m.yaml", "--out", d / "data", "--db", d / "vt.duckdb")
    size = (d / "rows.jsonl").stat().st_size
    shutil.rmtree(d / "data")
    (d / "vt.duckdb").unlink()
    return size, peak


def test_jsonl_with_inline_images_is_streamed(tmp_path):
    _, peak0 = _jsonl_peak(tmp_path, 2e6)
    size, peak = _jsonl_peak(tmp_path, 150e6)
    assert peak - peak0 < size, (peak0, peak, size)   # the old whole-file read: 3.6x the input


def test_sampled_parquet_rows_are_the_seeded_permutation(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from build_helpers import build, image_bytes, write_manifest
    from vtdata.build import _candidates
    from vtdata.dataset import iter_samples

    imgs = [image_bytes((64, 64), color=(k * 8, 0, 0)) for k in range(30)]
    with pq.ParquetWriter(tmp_path / "t.parquet", pa.schema([("id", pa.string()), ("question", pa.string()),
                                                             ("answer", pa.string()), ("image", pa.binary())])) as w:
        for g in range(3):   # three row groups: sampled rows jump back and forth between them
            w.write_table(pa.table({"id": [f"r{k}" for k in range(g * 10, g * 10 + 10)],
                                    "question": [f"q{k}" for k in range(g * 10, g * 10 + 10)],
                                    "answer": ["a"] * 10, "image": imgs[g * 10:g * 10 + 10]}))
    m = write_manifest(tmp_path, [{"name": "p", "kind": "parquet", "path": "t.parquet", "take": 7}], val_fraction=0)
    build(m, tmp_path / "out")
    want = {f"q{k}" for k in _candidates(30, 7, 0, "p")[:7]}
    assert {r["question"] for r in iter_samples(tmp_path / "out")} == want
    assert {r["image"] for r in iter_samples(tmp_path / "out")} == {imgs[int(q[1:])] for q in want}
