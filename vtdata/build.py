"""`vt build-data`: manifest -> one clean, mixed, reproducible dataset directory + DuckDB tables.

Steps, per source in manifest order: load raw rows (a seeded permutation when only `take` rows are
wanted) -> check each row (vtdata.validate: normalise text, validate the image, filters) -> duplicate
ids -> dedupe (same image hash and normalised question) -> stage. Then mix (seeded shuffle), split
(per task, by a seeded hash of the id), and write `data/{train,val}-NNNNN.parquet` (vtdata.shards) +
`build.json` into a temp dir that is renamed into place only when complete (vtdata.outdir). The
original image bytes are stored untouched: the views are computed on read (vtdata.resolution.view_of).
Every input row ends up kept, a duplicate, or in `rejects` with a reason. Read the result with
vtdata.dataset.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from vtdata import db as vtdb
from vtdata import tables
from vtdata.card import write_dataset_card
from vtdata.config import command
from vtdata.console import VtError, info, progress_bar
from vtdata.manifest import load, manifest_inputs, targets
from vtdata.outdir import check_out, publish, staging
from vtdata.schema import COLUMNS, arrow_schema
from vtdata.shards import RowSpill, write_shards
from vtdata.sources import Context, module
from vtdata.validate import Pool, check_row, prepare, question_key

STAGE_COLUMNS = [c for c in COLUMNS if c != "split"]


@dataclass
class BuildDataConfig:
    """Build a clean, mixed, reproducible VQA/OCR dataset from a manifest: parquet shards + build.json,
    with `samples` and `rejects` registered in DuckDB."""

    manifest: str = field(metadata={"argument": True})
    """The YAML manifest (e.g. manifests/demo.yaml)."""
    out: str = field(metadata={"flags": ["-o"]})
    """Output directory: DIR/data/*.parquet + DIR/build.json (replaced only when the build completes)."""
    db: str | None = None
    """DuckDB file for the `samples` and `rejects` tables (default: $VT_DB, else vt.duckdb beside DIR)."""
    num_proc: int = field(default=1, metadata={"flags": ["-j"]})
    """Processes that read, hash and decode images in parallel."""
    force: bool = False
    """Replace a non-empty --out that vt cannot prove it wrote (no .vt-output listing every path in it:
    a foreign directory, or an output of a vt older than that marker), deleting everything in it."""

    def __post_init__(self):
        if self.num_proc < 1:
            raise VtError(f"--num-proc must be >= 1, got {self.num_proc}")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if self.num_proc > cores:  # more workers than cores only adds processes and memory
            from vtdata.console import info
            info(f"-j {self.num_proc} capped to the {cores} cores this process may use")
            self.num_proc = cores


def _candidates(n: int, target: int | None, seed: int, name: str) -> list[int]:
    order = list(range(n))
    if target is not None and target < n:  # sample: a seeded permutation, consumed until target rows kept
        random.Random(f"vt-take:{seed}:{name}").shuffle(order)
    return order


def build(cfg: BuildDataConfig) -> dict:
    t0 = time.time()
    m = load(cfg.manifest)
    out = Path(cfg.out)
    db_path = Path(cfg.db) if cfg.db else vtdb.default_db(out)
    out = check_out(out, "build.json", "a vt dataset", keep=(db_path, m.path),
                    around=manifest_inputs(m), force=cfg.force)
    pool = Pool(cfg.num_proc)  # before any connection or thread exists (fork safety)
    try:
        with vtdb.writer(db_path, "vt build-data") as con, staging(out) as tmp:
            (tmp / "data").mkdir()
            result = _build(m, cfg, tmp, pool, t0)
            with vtdb.transaction(con):  # the tables change only once the files are in place
                _register(con, result, tmp, out)
                publish(tmp, out)
    finally:
        pool.close()
    return result


class _Staging:
    """What the load/validate pass keeps: staged rows (a RowSpill), rejects, ids and dedupe keys seen."""

    def __init__(self, path: Path):
        full = arrow_schema()
        self.schema = pa.schema([full.field(c) for c in STAGE_COLUMNS], metadata=full.metadata)
        self.spill = RowSpill(path, self.schema)
        self.kept: list[tuple[str, str]] = []  # (id, task) per staged row, in staging order
        self.rejects: list[tuple[str, str, str, str]] = []  # (source, source_row, reason, stage)
        self.ids: set[str] = set()
        self.keys: dict[tuple[str, str], str] = {}  # (image sha256, question key) -> id

    def write(self, rows: list[dict]) -> None:
        if rows:
            self.spill.write(pa.Table.from_pylist(rows, schema=self.schema))


def _build(m, cfg: BuildDataConfig, tmp: Path, pool: Pool, t0: float) -> dict:
    want = targets(m)
    st = _Staging(tmp / "stage.arrow")
    t_load = time.time()
    counts = {src["name"]: _stage_source(m, src, want[src["name"]], pool, st) for src in m.sources}
    st.spill.close()
    timings = {"load_validate_s": round(time.time() - t_load, 3)}
    t_write = time.time()
    split = _split(m, st.kept)
    shards = _write_shards(m, st, split, tmp)
    timings["mix_split_write_s"] = round(time.time() - t_write, 3)
    timings["total_s"] = round(time.time() - t0, 3)
    result = _summary(m, cfg, counts, st, split, shards, timings)
    (tmp / "build.json").write_text(json.dumps(result, indent=2) + "\n")
    write_dataset_card(tmp, result)
    result["_rejects"] = st.rejects
    return result


def _stage_source(m, src: dict, target: int | None, pool: Pool, st: _Staging) -> Counter:
    """Read one source until `target` rows are kept (all rows when None); returns its counts."""
    name = src["name"]
    ctx = Context(base_dir=m.path.parent.resolve(), seed=m.seed, policy=m.policy, task=src["task"])
    rows = module(src["kind"]).open(src, ctx)
    order = _candidates(len(rows), target, m.seed, name)
    spill = st.spill.path.with_name(f"source-{hashlib.sha256(name.encode()).hexdigest()[:12]}.arrow")
    if target is not None and target < len(rows) and hasattr(rows, "random_access"):
        rows.random_access(spill)  # rows are visited in a seeded random order
    c = Counter(in_=0, kept=0, duplicates=0, rejected=0)
    pos = 0
    with progress_bar(f"build {name}", total=target if target is not None else len(order)) as bar:
        while pos < len(order) and (target is None or c["kept"] < target):
            need = len(order) - pos if target is None else target - c["kept"]
            chunk = order[pos:pos + min(max(32, need + need // 4 + 8), 256 * max(1, pool.n))]
            pos += len(chunk)
            fetched = {i: rows[i] for i in sorted(chunk)}  # in file order: sources read forward
            raws = [fetched.pop(i) for i in chunk]
            texts, jobs = prepare(raws, src.get("answer_type"), m.policy)
            img_results = iter(pool.map(jobs))
            batch = []
            for raw, t in zip(raws, texts):
                if target is not None and c["kept"] >= target:
                    break  # the rest of this chunk was looked at but is not needed: not counted
                c["in_"] += 1
                srow = str(raw.get("source_row"))
                row, reason = None, t if isinstance(t, str) else None
                if reason is None:
                    row, reason = check_row(src, srow, raw, t, next(img_results), st.ids, m.policy)
                if reason is None:
                    key = (row["image_sha256"], question_key(row["question"]))
                    if key in st.keys:
                        st.rejects.append((name, srow, f"duplicate of {st.keys[key]} (same image and question)",
                                           "dedupe"))
                        c["duplicates"] += 1
                        bar.advance(1 if target is None else 0)
                        continue
                    st.ids.add(row["id"])
                    st.keys[key] = row["id"]
                    batch.append(row)
                    st.kept.append((row["id"], src["task"]))
                    c["kept"] += 1
                    bar.advance(1, status=f"kept={c['kept']} dup={c['duplicates']} rej={c['rejected']}")
                else:
                    st.rejects.append((name, srow, reason, "validate"))
                    c["rejected"] += 1
                    bar.advance(1 if target is None else 0)
            st.write(batch)
    spill.unlink(missing_ok=True)
    if target is not None and c["kept"] < target:
        info(f"source {name}: only {c['kept']} usable rows of the {target} asked for")
    return c



def _split(m, kept: list[tuple[str, str]]) -> list[str]:
    """train/val per staged row: per task, the val_fraction of rows with the smallest seeded hash of the id."""
    split = ["train"] * len(kept)
    by_task = defaultdict(list)
    for i, (_, task) in enumerate(kept):
        by_task[task].append(i)
    for _, idx in sorted(by_task.items()):
        idx.sort(key=lambda i: hashlib.sha256(f"vt-split:{m.seed}:{kept[i][0]}".encode()).hexdigest())
        for i in idx[:round(len(idx) * m.val_fraction)]:
            split[i] = "val"
    return split


def _write_shards(m, st: _Staging, split: list[str], tmp: Path) -> list[dict]:
    """Mix the staged rows (seeded shuffle) into data/{split}-NNNNN.parquet; returns the shard list."""
    mix = list(range(len(st.kept)))
    random.Random(f"vt-mix:{m.seed}").shuffle(mix)
    schema = arrow_schema()

    def with_split(sp: str):
        def finish(part):
            return part.append_column("split", pa.array([sp] * part.num_rows, pa.string())).select(COLUMNS).cast(schema)
        return finish

    shards = []
    for sp in ("train", "val"):
        shards += write_shards(tmp / "data", sp, st.spill, [i for i in mix if split[i] == sp], m.shard_rows, schema,
                               finish=with_split(sp))
    st.spill.remove()
    return shards


def _counts(c: Counter) -> dict:
    return {"in": c["in_"], "kept": c["kept"], "duplicates": c["duplicates"], "rejected": c["rejected"]}


def _summary(m, cfg: BuildDataConfig, counts: dict, st: _Staging, split: list[str], shards: list[dict],
             timings: dict) -> dict:
    """The build.json content: manifest identity, counts per source/task/split, reject reasons, shards."""
    tot = Counter()
    for c in counts.values():
        tot.update(c)
    task_counts = defaultdict(Counter)
    for (_, task), sp in zip(st.kept, split):
        task_counts[task][sp] += 1
    reasons = Counter(r[2].split(" (")[0].split(":")[0] for r in st.rejects if r[3] == "validate")
    result = {
        "format": "vt-dataset/1", "name": m.name, "description": m.data.get("description"),
        "license": m.data.get("license"), "manifest": str(m.path), "manifest_sha256": m.hash,
        "seed": m.seed, "val_fraction": m.val_fraction, "resolution": m.policy.to_dict(),
        "counts": {**_counts(tot), "by_source": {k: _counts(v) for k, v in counts.items()},
                   "by_task": {k: dict(sorted(v.items())) for k, v in sorted(task_counts.items())},
                   "by_split": {sp: split.count(sp) for sp in ("train", "val")},
                   "reject_reasons": dict(sorted(reasons.items()))},
        "shards": shards, "num_proc": cfg.num_proc, "timings": timings,
    }
    if tot["in_"] != tot["kept"] + tot["duplicates"] + tot["rejected"]:
        raise RuntimeError(f"build-data lost rows: {_counts(tot)}")  # a bug, never a user mistake
    return result


def _register(con, result: dict, tmp: Path, out: Path) -> None:
    """`samples` (no image bytes) and `rejects` rows of this dataset, replacing an earlier build of it."""
    dataset = str(out.resolve())
    cols = ", ".join(c for c in COLUMNS if c != "image")
    tables.ensure(con, "samples", "rejects")
    con.execute("DELETE FROM samples WHERE dataset = ?", [dataset])
    con.execute("DELETE FROM rejects WHERE dataset = ?", [dataset])
    if result["shards"]:
        files = [(tmp / s["file"]).as_posix() for s in result["shards"]]
        con.execute(f"INSERT INTO samples SELECT ? AS dataset, {cols} FROM read_parquet(?)", [dataset, files])
    rej = result.pop("_rejects")
    if rej:
        t = pa.table({"dataset": [dataset] * len(rej), "source": [r[0] for r in rej],
                      "source_row": [r[1] for r in rej], "reason": [r[2] for r in rej],
                      "stage": [r[3] for r in rej]})
        with vtdb.arrow_table(con, "_vt_rejects", t):
            con.execute("INSERT INTO rejects SELECT * FROM _vt_rejects")


def run(cfg: BuildDataConfig) -> dict:
    r = build(cfg)
    c = r["counts"]
    info(f"built {cfg.out}: {c['kept']} rows (train {c['by_split']['train']}, val {c['by_split']['val']}) from "
         f"{c['in']} in; {c['duplicates']} duplicates, {c['rejected']} rejected; {r['timings']['total_s']}s")
    return r


build_data_command = command(BuildDataConfig, run)


__all__ = ["BuildDataConfig", "build", "build_data_command"]
