"""`vt build-data`: manifest -> one clean, mixed, reproducible dataset directory + DuckDB tables.

Steps, per source in manifest order: load raw rows (a seeded permutation when only `take` rows are
wanted) -> normalise text -> validate the image (read once, sha256, header, full decode; JPEGs decode
at 1/8 scale, which still reads every byte) -> filters -> duplicate ids -> dedupe (same image hash and
normalised question) -> stage. Then mix (seeded shuffle), split (per task, by a seeded hash of the id),
and write `data/{train,val}-NNNNN.parquet` + `build.json` into a temp dir that is renamed into place
only when complete. The original image bytes are stored untouched: the views are computed on read
(vtdata.resolution.view_of). Every input row ends up kept, a duplicate, or in `rejects` with a reason.
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from vtdata import db as vtdb
from vtdata.card import write_dataset_card
from vtdata.config import command
from vtdata.console import VtError, info, progress_bar
from vtdata.resolution import MAX_ASPECT, ResolutionPolicy, load_bytes, open_image, oriented_size, view_sizes
from vtdata.schema import ANSWER_TYPES, COLUMNS, arrow_schema, sample_id

STAGE_COLUMNS = [c for c in COLUMNS if c != "split"]
# image bytes are already compressed (JPEG/PNG): compressing them again costs time and saves nothing
# image bytes are also kept out of dictionary encoding and min/max statistics (4x faster writes)
COMPRESSION = {c: "zstd" for c in COLUMNS if c != "image"} | {"image.bytes": "none", "image.path": "zstd"}
SMALL_COLUMNS = [c for c in COLUMNS if c != "image"]
ROW_GROUP = 256  # rows per parquet row group of the written shards


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

    def __post_init__(self):
        if self.num_proc < 1:
            raise VtError(f"--num-proc must be >= 1, got {self.num_proc}")


# ---- per image work (runs in worker processes) ----------------------------------------------------
def _kind(image) -> str:
    """'bytes' (already in memory), 'file' (a path), or 'made' (rendered or decoded in the worker)."""
    if isinstance(image, (list, tuple)) and len(image) == 1:
        return _kind(image[0])
    if isinstance(image, (bytes, bytearray, memoryview)) or (isinstance(image, dict) and image.get("bytes")):
        return "bytes"
    if isinstance(image, (str, os.PathLike)) or (isinstance(image, dict) and image.get("path")):
        return "file"
    return "made"


def probe(job: tuple) -> tuple:
    """(image, pixel_cap, max_bytes, return_bytes) -> ("ok", sha256, width, height, bytes|None) or ("error", reason)."""
    image, pixel_cap, max_bytes, return_bytes = job
    try:
        data = load_bytes(image, max_bytes)
        sha = hashlib.sha256(data).hexdigest()
        img = open_image(data, pixel_cap)
        w, h = oriented_size(img)
        if max(w, h) > MAX_ASPECT * min(w, h):
            raise ValueError(f"aspect ratio over {MAX_ASPECT} ({w}x{h})")
        if img.format == "JPEG":  # decode at 1/8 scale: every byte is still read, so truncation shows
            img.draft(None, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
        try:
            img.load()
        except Exception as err:
            raise ValueError(f"corrupt or truncated image ({type(err).__name__}: {err})") from None
        return ("ok", sha, w, h, data if return_bytes else None)
    except ValueError as err:
        return ("error", _stable(str(err)))
    except Exception as err:  # anything else PIL throws at a broken file
        return ("error", _stable(f"unreadable image ({type(err).__name__}: {err})"))


def _stable(reason: str) -> str:
    """A reject reason without the memory addresses of object reprs (PIL says 'cannot identify image
    file <_io.BytesIO object at 0x7f...>'), so the rejects table is the same on every run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", reason)


# ---- text normalisation ---------------------------------------------------------------------------
_NUM = re.compile(r"^[-+]?(\d+(,\d{3})*|\d*)(\.\d+)?%?$")


def _text(v, what: str) -> str:
    if isinstance(v, (bytes, bytearray)):
        try:
            v = bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"non-UTF-8 text in {what}") from None
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ValueError(f"{what} is not text ({type(v).__name__})")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{what} is not a finite number ({v})")
    v = unicodedata.normalize("NFC", str(v)).strip()
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"non-UTF-8 text in {what} (lone surrogate)") from None
    return v


def normalise(raw: dict, default_type: str | None) -> dict:
    """Checked, normalised text fields of a raw row; raises ValueError(reason)."""
    if raw.get("error"):
        raise ValueError(raw["error"])
    if raw.get("question") is None:
        raise ValueError("missing question")
    q = _text(raw["question"], "question").replace("<image>", "").strip()  # vt adds the image itself
    if not q:
        raise ValueError("empty question")
    a = raw.get("answers")
    if a is None:
        raise ValueError("missing answer")
    answers = [_text(x, "answer") for x in (a if isinstance(a, (list, tuple)) else [a])]
    answers = [x for x in answers if x]
    if not answers:
        raise ValueError("empty answer")
    choices = raw.get("choices")
    if choices is not None:
        choices = [_text(x, "choice") for x in (choices if isinstance(choices, (list, tuple)) else [choices])]
        choices = choices or None
    at = raw.get("answer_type") or default_type
    if at is None:
        at = "mc" if choices else ("number" if all(_NUM.match(x) and any(c.isdigit() for c in x) for x in answers)
                                   else "open")
    if at not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type: {at!r}")
    meta = raw.get("meta") or {}
    return {"question": q, "answers": answers, "choices": choices, "answer_type": at,
            "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str)}


def question_key(q: str) -> str:
    return " ".join(q.casefold().split())


MAX_QUESTION_CHARS = 8000  # default of filters.max_question_chars


def _filter(f: dict, row: dict, meta: dict) -> str | None:
    limit = f.get("max_question_chars", MAX_QUESTION_CHARS)
    if len(row["question"]) > limit:
        return f"filter: question longer than {limit} chars"
    if "max_answer_chars" in f and len(row["answers"][0]) > f["max_answer_chars"]:
        return f"filter: answer longer than {f['max_answer_chars']} chars"
    if "answer_types" in f and row["answer_type"] not in f["answer_types"]:
        return f"filter: answer_type {row['answer_type']} not in {f['answer_types']}"
    for k, allowed in (f.get("meta") or {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if meta.get(k) not in allowed:
            return f"filter: meta.{k}={meta.get(k)!r} not in {allowed}"
    return None


# ---- the build ------------------------------------------------------------------------------------
class _Pool:
    """imap over jobs: inline for one process, a fork pool otherwise."""

    def __init__(self, n: int):
        self.n = n
        self.pool = None
        if n > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self.pool = ctx.Pool(n)

    def map(self, jobs: list):
        """Results in job order, as they arrive (the caller works on row k while workers probe k+1...)."""
        if self.pool is None:
            return (probe(j) for j in jobs)
        return self.pool.imap(probe, jobs, chunksize=max(1, min(16, len(jobs) // (self.n * 4))))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _candidates(n: int, target: int | None, seed: int, name: str) -> list[int]:
    order = list(range(n))
    if target is not None and target < n:  # sample: a seeded permutation, consumed until target rows kept
        random.Random(f"vt-take:{seed}:{name}").shuffle(order)
    return order


def check_out(out: Path, marker: str, what: str, keep: tuple = ()) -> None:
    """Refuse an output directory that publish() would destroy: a file, a non-empty directory without
    `marker` (not written by vt), or one holding a path in `keep` (the input data, the database)."""
    if out.exists() and not out.is_dir():
        raise VtError(f"{out} is a file; --out must be a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise VtError(f"{out} exists and is not {what} (no {marker}); choose another --out")
    o = out.resolve()
    for p in keep:
        p = Path(p).resolve()
        if p == o or o in p.parents:
            raise VtError(f"--out {out} would replace {p}, which this command needs; choose another --out")


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh temp dir beside `out` (same filesystem, so publish() is a rename), removed on the way out.
    Holds `out`'s lock throughout (a second command writing the same `out` is refused), and first
    removes temp dirs that killed commands left for `out` (their pid is gone)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VtError(f"cannot write {out}: {err.strerror} ({err.filename})") from None
    with out_lock(out):
        for left in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-*")):
            m = re.fullmatch(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)", left.name)
            if not m or not left.is_dir() or vtdb.pid_alive(int(m.group(2))):
                continue
            if m.group(1) == "old" and not out.exists():
                left.rename(out)  # killed inside publish(): the previous output comes back
            else:
                shutil.rmtree(left, ignore_errors=True)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
        except OSError as err:
            raise VtError(f"cannot write {out}: {err.strerror} ({err.filename})") from None
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on writing `out` (flock on `.OUT.lock` beside it: the kernel releases it when
    the process dies, so a killed command never leaves it held); the lock file is removed on exit."""
    import fcntl

    lock = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise VtError(f"cannot write {out}: {err.strerror} ({err.filename})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise VtError(f"{out} is being written by {who}; wait for it to finish or choose another --out") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and flock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"`vt {' '.join(sys.argv[1:2])}` (pid {os.getpid()})".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def publish(tmp: Path, out: Path) -> None:
    """Put a finished directory in place of `out` by renames, so no half-written output is ever seen."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old.exists():
            old.rename(out)  # put the previous one back
        raise
    shutil.rmtree(old, ignore_errors=True)


def build(cfg: BuildDataConfig) -> dict:
    from vtdata.manifest import load

    t0 = time.time()
    m = load(cfg.manifest)
    out = Path(cfg.out)
    db_path = Path(cfg.db) if cfg.db else vtdb.default_db(out)
    check_out(out, "build.json", "a vt dataset", keep=(db_path, m.path))
    pool = _Pool(cfg.num_proc)  # before any connection or thread exists (fork safety)
    try:
        with vtdb.writer(db_path, "vt build-data") as con, staging(out) as tmp:
            (tmp / "data").mkdir()
            result = _build(m, cfg, tmp, pool, t0)
            _register(con, result, tmp, out)  # in a transaction, committed once the files are in place
            publish(tmp, out)
            con.execute("COMMIT")
    finally:
        pool.close()
    return result


class RowSpill:
    """Rows written in one order and read back in any other with bounded memory: an Arrow IPC file of
    one row per record batch (its footer indexes them), read with plain file reads, never whole."""

    def __init__(self, path: Path, schema):
        import pyarrow as pa

        self.path, self.schema, self.rows = path, schema, 0
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self._reader = None

    def write(self, table) -> None:
        self._writer.write_table(table, max_chunksize=1)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def take(self, idx: list[int]):
        """The rows at these positions, in this order, as one table."""
        import pyarrow as pa

        if self._reader is None:
            self.close()
            self._reader = pa.ipc.open_file(pa.OSFile(str(self.path)))
        return pa.Table.from_batches([self._reader.get_batch(i) for i in idx], schema=self.schema)

    def remove(self) -> None:
        self.close()
        self._reader = None
        self.path.unlink(missing_ok=True)


def write_shard(path: Path, schema, parts, digest: bool = True) -> dict:
    """One output parquet file from an iterator of tables (written as they come, ROW_GROUP rows per row
    group); returns its shards entry (file name, rows, and its sha256 when `digest`)."""
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(path, schema, compression=COMPRESSION, use_dictionary=SMALL_COLUMNS,
                          write_statistics=SMALL_COLUMNS) as w:
        for part in parts:
            w.write_table(part, row_group_size=ROW_GROUP)
            rows += part.num_rows
    if not digest:
        return {"file": f"data/{path.name}", "rows": rows}
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"file": f"data/{path.name}", "rows": rows, "sha256": h.hexdigest()}


class _Staging:
    """What the load/validate pass keeps: staged rows (a RowSpill), rejects, ids and dedupe keys seen."""

    def __init__(self, path: Path):
        import pyarrow as pa

        full = arrow_schema()
        self.schema = pa.schema([full.field(c) for c in STAGE_COLUMNS], metadata=full.metadata)
        self.spill = RowSpill(path, self.schema)
        self.kept: list[tuple[str, str]] = []  # (id, task) per staged row, in staging order
        self.rejects: list[tuple[str, str, str, str]] = []  # (source, source_row, reason, stage)
        self.ids: set[str] = set()
        self.keys: dict[tuple[str, str], str] = {}  # (image sha256, question key) -> id

    def write(self, rows: list[dict]) -> None:
        import pyarrow as pa

        if rows:
            self.spill.write(pa.Table.from_pylist(rows, schema=self.schema))


def _build(m, cfg: BuildDataConfig, tmp: Path, pool: _Pool, t0: float) -> dict:
    from vtdata.manifest import targets

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


def _stage_source(m, src: dict, target: int | None, pool: _Pool, st: _Staging) -> Counter:
    """Read one source until `target` rows are kept (all rows when None); returns its counts."""
    from vtdata.sources import Context, module

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
            texts, jobs = _prepare(raws, src.get("answer_type"), m.policy)
            img_results = iter(pool.map(jobs))
            batch = []
            for raw, t in zip(raws, texts):
                if target is not None and c["kept"] >= target:
                    break  # the rest of this chunk was looked at but is not needed: not counted
                c["in_"] += 1
                srow = str(raw.get("source_row"))
                row, reason = None, t if isinstance(t, str) else None
                if reason is None:
                    row, reason = _check_row(src, srow, raw, t, next(img_results), st.ids, m.policy)
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
        info(f"[yellow]source {name}: only {c['kept']} usable rows of the {target} asked for[/yellow]")
    return c


def _prepare(raws: list[dict], default_type: str | None, policy: ResolutionPolicy) -> tuple[list, list]:
    """Normalised text (a dict, or the reason it is unusable) per raw row, and the image probe jobs of
    the usable ones, in order."""
    texts, jobs = [], []
    for raw in raws:
        try:
            texts.append(normalise(raw, default_type))
        except ValueError as err:
            texts.append(str(err))
            continue
        # workers send back only bytes that exist nowhere else (rendered images);
        # files are re-read here from the page cache, cheaper than a pipe
        jobs.append((raw.get("image"), policy.pixel_cap, policy.max_image_bytes, _kind(raw.get("image")) == "made"))
    return texts, jobs


def _check_row(src: dict, srow: str, raw: dict, text: dict, probed: tuple, ids: set,
               policy: ResolutionPolicy) -> tuple[dict | None, str | None]:
    """(the staged row, None), or (None, the reason to reject it): image, filters, duplicate id."""
    if probed[0] == "error":
        return None, probed[1]
    _, sha, w, h, data = probed
    if data is None:  # the worker read a file or in-memory bytes: take them here again, unchanged
        try:
            data = load_bytes(raw["image"], policy.max_image_bytes)
        except ValueError as err:
            return None, f"image file changed during the build ({err})"
        if hashlib.sha256(data).hexdigest() != sha:
            return None, "image file changed during the build"
    f = src["filters"]
    if "min_side" in f and min(w, h) < f["min_side"]:
        return None, f"filter: shorter side {min(w, h)} < min_side {f['min_side']}"
    reason = _filter(f, text, json.loads(text["meta"]))
    if reason is not None:
        return None, reason
    sid = sample_id(src["name"], srow)
    if sid in ids:
        return None, f"duplicate id: source row {srow} appears twice (id {sid})"
    (lw, lh), (hw, hh) = raw.get("views") or view_sizes(w, h, policy)  # a source may size them (visionthink)
    return {"id": sid, "source": src["name"], "task": src["task"], **text, "image": {"bytes": data, "path": None},
            "image_sha256": sha, "width": w, "height": h, "low_width": lw, "low_height": lh, "high_width": hw,
            "high_height": hh}, None


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
    """Mix the staged rows (seeded shuffle) into data/{split}-NNNNN.parquet; returns the shard list.
    Rows go from the spill to the shard ROW_GROUP at a time: memory does not grow with the data."""
    import pyarrow as pa

    mix = list(range(len(st.kept)))
    random.Random(f"vt-mix:{m.seed}").shuffle(mix)
    schema = arrow_schema()

    def parts(idx: list[int], sp: str):
        for j in range(0, len(idx), ROW_GROUP):
            part = st.spill.take(idx[j:j + ROW_GROUP])
            part = part.append_column("split", pa.array([sp] * part.num_rows, pa.string()))
            yield part.select(COLUMNS).cast(schema)

    shards = []
    for sp in ("train", "val"):
        idx = [i for i in mix if split[i] == sp]
        for k in range(0, len(idx), m.shard_rows):
            fname = f"{sp}-{k // m.shard_rows:05d}.parquet"
            shards.append(write_shard(tmp / "data" / fname, schema, parts(idx[k:k + m.shard_rows], sp)))
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
    """`samples` (no image bytes) and `rejects` rows of this dataset, replacing an earlier build of it;
    the transaction is left open for the caller to commit after publishing the files."""
    import pyarrow as pa

    dataset = str(out.resolve())
    cols = ", ".join(c for c in COLUMNS if c != "image")
    con.execute("BEGIN")
    con.execute("""CREATE TABLE IF NOT EXISTS samples (dataset VARCHAR, id VARCHAR, source VARCHAR, task VARCHAR,
        question VARCHAR, answers VARCHAR[], answer_type VARCHAR, choices VARCHAR[], image_sha256 VARCHAR,
        width INTEGER, height INTEGER, low_width INTEGER, low_height INTEGER, high_width INTEGER,
        high_height INTEGER, split VARCHAR, meta VARCHAR)""")
    con.execute("CREATE TABLE IF NOT EXISTS rejects (dataset VARCHAR, source VARCHAR, source_row VARCHAR, "
                "reason VARCHAR, stage VARCHAR)")
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
        con.register("_vt_rejects", t)
        con.execute("INSERT INTO rejects SELECT * FROM _vt_rejects")
        con.unregister("_vt_rejects")


def run(cfg: BuildDataConfig) -> dict:
    r = build(cfg)
    c = r["counts"]
    info(f"built {cfg.out}: {c['kept']} rows (train {c['by_split']['train']}, val {c['by_split']['val']}) from "
         f"{c['in']} in; {c['duplicates']} duplicates, {c['rejected']} rejected; {r['timings']['total_s']}s")
    return r


build_data_command = command(BuildDataConfig, run)


# ---- reading a built set (contract 1) -------------------------------------------------------------
def shard_files(data_dir: str | os.PathLike, split: str | None = None) -> list[Path]:
    d = Path(data_dir)
    if not (d / "build.json").exists():
        raise VtError(f"{d} is not a built vt dataset (no build.json); run `vt build-data` first")
    splits = [split] if split else ["train", "val"]
    for sp in splits:
        if sp not in ("train", "val"):
            raise VtError(f"split must be train or val, got {sp!r}")
    return [f for sp in splits for f in sorted((d / "data").glob(f"{sp}-*.parquet"))]


def iter_samples(data_dir: str | os.PathLike, split: str | None = None,
                 columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a built set as dicts, in shard order; `image` is the original encoded bytes."""
    import pyarrow.parquet as pq

    for f in shard_files(data_dir, split):
        pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering keeps every row group read until the end
        names = pf.schema_arrow.names
        cols = [c for c in columns if c in names] if columns else None
        for batch in pf.iter_batches(batch_size=64, columns=cols):
            for row in batch.to_pylist():
                if isinstance(row.get("image"), dict):
                    row["image"] = row["image"]["bytes"]
                yield row


def read_split(data_dir: str | os.PathLike, split: str = "train", limit: int | None = None,
               columns: list[str] | None = None) -> list[dict]:
    """The first `limit` rows of a split (`all` = train then val) as `iter_samples` dicts; none is a VtError."""
    from itertools import islice

    rows = list(islice(iter_samples(data_dir, None if split == "all" else split, columns), limit))
    if not rows:
        raise VtError(f"{data_dir} has no {split} samples")
    return rows


def load_hf(data_dir: str | os.PathLike, split: str = "train"):
    """A built split as a `datasets.Dataset` (`image` decodes to PIL images)."""
    import datasets

    files = [str(f) for f in shard_files(data_dir, split)]
    if not files:
        raise VtError(f"{data_dir} has no {split} rows")
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)


__all__ = ["BuildDataConfig", "build", "build_data_command", "iter_samples", "read_split", "load_hf"]
