"""Peak memory of build-data and curate on a big generated parquet of images.

    python bench/memory.py                        # 4 GB input (the size of the issue's target)
    python bench/memory.py --size-gb 1 --baseline ffd4a0f --dir /tmp/vtmem

Generates DIR/input.parquet: rows with distinct questions over a pool of incompressible noise JPEGs
(about 280 KB each), in row groups of 64 rows. Then runs, each in its own process and timed:
`vt build-data` of it (a parquet source, one process), `vt build-data` of a seeded half of it (`take:`,
rows visited in random order, as in the release recipe), and `vt curate` of every built row (labels
written straight into a `sufficiency` table, half needs_high, half low_ok). Prints each command's
peak RSS, its ratio to the input size, and its throughput (input MB per second). With --baseline REF
the same commands also run on the code of git commit REF (extracted to a temp dir) and the ratios
new/old are printed. Everything generated is deleted at the end unless --keep.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); print(u.ru_utime + u.ru_stime, u.ru_maxrss, r.returncode)")


def generate(path: Path, size_bytes: int, side: int = 560, pool: int = 32) -> int:
    """Write the input parquet (noise JPEGs of side x side pixels); returns its row count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(pool):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        images.append(buf.getvalue())
    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    n, written = 0, 0
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False) as w:
        while written < size_bytes:
            rows = [{"id": f"r{n + k}", "question": f"What is in picture {n + k}?", "answer": "noise",
                     "image": {"bytes": images[(n + k) % pool], "path": None}} for k in range(64)]
            w.write_table(pa.Table.from_pylist(rows, schema=schema))
            n += len(rows)
            written += sum(len(r["image"]["bytes"]) for r in rows)
    return n


def labels(db: Path, data: Path) -> None:
    """A `sufficiency` table labelling every built sample (what score-judge would write)."""
    import duckdb

    from vtdata.provenance import dataset_sha
    con = duckdb.connect(str(db))
    con.execute("CREATE OR REPLACE TABLE sufficiency AS SELECT 'bench' AS policy, 'bench' AS protocol, "
                "? AS dataset_sha, id AS sample_id, source, task, "
                "split, ? AS dataset, 8 AS k, CASE WHEN hash(id) % 2 = 0 THEN 8 ELSE 1 END AS low_correct, "
                "8 AS high_correct, CASE WHEN hash(id) % 2 = 0 THEN 'low_ok' ELSE 'needs_high' END AS label, "
                "'bench' AS judge FROM samples", [dataset_sha(data), str(data.resolve())])
    con.close()


def run(code: Path, *args) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in bytes) of one vt command on the code in `code`."""
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "vt", *map(str, args)],
                       cwd=code, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    cpu, peak_kb, rc = r.stdout.split()[-3:]
    if rc != "0":
        raise SystemExit(f"vt {args[0]} failed on {code}:\n{r.stderr[-2000:]}")
    return took, float(cpu), int(peak_kb) * 1024


def measure(code: Path, work: Path, input_pq: Path, rows: int) -> dict:
    """build-data of every row, build-data of a seeded half (`take`: rows visited in random order), and
    curate of every built row."""
    manifest, half = work / "m.yaml", work / "half.yaml"
    src = {"name": "big", "kind": "parquet", "path": str(input_pq)}
    manifest.write_text(json.dumps({"seed": 0, "val_fraction": 0, "shard_rows": 2000, "sources": [src]}))
    half.write_text(json.dumps({"seed": 0, "val_fraction": 0, "shard_rows": 2000,
                                "sources": [dict(src, take=rows // 2)]}))
    data, db = work / "data", work / "vt.duckdb"
    out = {}
    out["build-data"] = run(code, "build-data", manifest, "--out", data, "--db", db)
    out["build-half"] = run(code, "build-data", half, "--out", work / "half", "--db", work / "half.duckdb")
    shutil.rmtree(work / "half", ignore_errors=True)
    labels(db, data)
    out["curate"] = run(code, "curate", "--db", db, "--name", "bench", "--per-class", rows // 2,
                        "--out", work / "curated", "--allow-short")
    for p in (data, work / "curated"):
        shutil.rmtree(p, ignore_errors=True)
    for p in (db, work / "half.duckdb", manifest, half):
        p.unlink(missing_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=4.0, help="input parquet size (image bytes), GB")
    ap.add_argument("--baseline", help="git commit whose code runs the same commands, for the ratios")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="vt-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    input_pq = work / "input.parquet"
    try:
        t0 = time.perf_counter()
        rows = generate(input_pq, int(args.size_gb * 1e9))
        size = input_pq.stat().st_size
        print(f"input: {input_pq} {size / 1e9:.2f} GB, {rows} rows ({time.perf_counter() - t0:.0f}s to write)")
        codes = {"new": REPO}
        if args.baseline:
            old = work / "baseline"
            old.mkdir(exist_ok=True)
            tar = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=tar, check=True)
            codes = {"old": old, "new": REPO}
        results = {}
        for name, code in codes.items():
            (work / name).mkdir(exist_ok=True)
            results[name] = measure(code, work / name, input_pq, rows)
        # MB/s per CPU second as well as per wall second: on a shared machine the wall clock is noisy
        print(f"{'code':5} {'command':11} {'wall s':>7} {'cpu s':>7} {'MB/s':>7} {'MB/cpu-s':>8} {'peak RSS':>10} "
              f"{'RSS/input':>9}")
        for name, res in results.items():
            for cmd, (took, cpu, peak) in res.items():
                print(f"{name:5} {cmd:11} {took:7.1f} {cpu:7.1f} {size / 1e6 / took:7.1f} {size / 1e6 / cpu:8.1f} "
                      f"{peak / 2**30:7.2f} GB {peak / size:9.2f}")
        if "old" in results:
            for cmd in results["new"]:
                (w_new, c_new, p_new), (w_old, c_old, p_old) = results["new"][cmd], results["old"][cmd]
                print(f"{cmd}: throughput new/old {w_old / w_new:.2f} (wall), {c_old / c_new:.2f} (cpu); "
                      f"peak RSS new/old {p_new / p_old:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
