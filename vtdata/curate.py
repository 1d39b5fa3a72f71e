"""`vt curate`: a balanced training set of `low_ok` and `needs_high` samples (paper §3.5: 10K + 10K).

Reads one label set of `sufficiency` (one policy, scoring protocol and dataset: `vt score-judge`'s key,
vtdata/provenance.py; never labels of another dataset, protocol or split), picks `--per-class` samples of each class
(with `--stratify source`: spread as evenly as the sources allow, round-robin over sources; `--stratify answer`:
round-robin over the gold answers, for closed answer spaces) in an order
fixed by sha256(seed, sample id), so the same database and seed always give the same set. Writes a
dataset in the layout of a built one (DIR/data/train-NNNNN.parquet + DIR/build.json, the sample
columns plus `use_tool` = needs_high), ready for `vt train` and `vt export --format verl`, and records
the selection in the DuckDB table `curated` (replacing an earlier curation of the same name).
A class with fewer candidates than asked is an error unless `--allow-short`. No torch here.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vtdata import provenance, tables
from vtdata.card import write_dataset_card
from vtdata.config import command
from vtdata.console import VtError, console, info
from vtdata.db import arrow_table, default_db, transaction, writer
from vtdata.outdir import check_name, check_out, publish, staging
from vtdata.shards import RowSpill, write_shards

CLASSES = ("low_ok", "needs_high")


@dataclass
class CurateConfig:
    """Pick a balanced, deterministic training set of low_ok (use_tool=false) and needs_high (use_tool=true) samples."""

    name: str
    """Name of this curated set (key of its rows in the `curated` table)."""
    per_class: int
    """Samples per class (low_ok and needs_high); the paper used 10,000."""
    out: Path = field(metadata={"flags": ["-o"]})
    """Output dataset directory: parquet + build.json (replaced only once the new one is complete)."""
    db: Path | None = None
    """DuckDB file holding `sufficiency` (from `vt score-judge`) (default: $VT_DB, else ./vt.duckdb)."""
    stratify: Literal["source", "answer"] | None = None
    """`source`: spread each class evenly over the sources; `answer`: over the gold answers (the first of each
    sample's answers: for closed answer spaces, yes/no, multiple choice, the miniature's colours and patterns, so that
    GRPO does not forget an answer the set lacks); none: any source."""
    allow_short: bool = False
    """Keep going with fewer than --per-class samples in a class (instead of an error)."""
    fill_short: bool = False
    """Top a short class up with the `ambiguous` samples closest to it (flagged `filled`; for demos
    with an untrained model, where every sample is ambiguous)."""
    policy: str | None = None
    """Which scoring policy's labels (needed when the database holds several)."""
    protocol: str | None = None
    """Which scoring protocol's labels (a prefix of `score_protocols.protocol`; needed when the policy's labels of
    the dataset come from several: another prompt, temperature, seed or token budget)."""
    data: Path | None = None
    """The scored dataset directory (default: the one recorded by score-judge); its labels only."""
    seed: int = 0
    """Selection order seed."""
    shard_rows: int = 2000
    """Rows per output parquet file."""
    force: bool = False
    """Replace a non-empty --out that vt cannot prove it wrote (no .vt-output listing every path in it),
    and an existing set of this --name that --out does not hold (its `curated` rows)."""

    def __post_init__(self):
        self.db = Path(self.db) if self.db else default_db()
        if not self.name.strip():
            raise VtError("--name must not be empty (it keys this set's rows in the `curated` table)")
        check_name(self.name)
        if self.per_class < 1:
            raise VtError(f"--per-class must be >= 1, got {self.per_class}")
        if self.stratify not in (None, "source", "answer"):
            raise VtError(f"--stratify must be `source` or `answer` (or left out), got {self.stratify!r}")
        if self.shard_rows < 1:
            raise VtError(f"--shard-rows must be >= 1, got {self.shard_rows}")


def _rank(seed: int, sample_id: str) -> str:
    return hashlib.sha256(f"{seed}\0{sample_id}".encode()).hexdigest()


def pick(pool: list[dict], n: int, stratify: str | None) -> list[dict]:
    """The first n of an ordered pool; with stratify, round-robin over its groups (max-min fair)."""
    if not stratify:
        return pool[:n]
    groups: dict[str, list[dict]] = defaultdict(list)
    for c in pool:
        groups[str(c[stratify])].append(c)
    order = sorted(groups)
    picked, depth = [], 0
    while len(picked) < n and any(depth < len(groups[g]) for g in order):
        for g in order:  # one more from every group that still has some
            if depth < len(groups[g]) and len(picked) < n:
                picked.append(groups[g][depth])
        depth += 1
    return picked


# how close an ambiguous sample is to a class (larger = closer), for --fill-short
CLOSENESS = {"needs_high": lambda c: (c["high_correct"] or 0) - (c["low_correct"] or 0),
             "low_ok": lambda c: min(c["low_correct"] or 0, c["high_correct"] or 0)}


def select(candidates: list[dict], per_class: int, stratify: str | None, seed: int,
           fill_short: bool = False) -> dict[str, list[dict]]:
    """class -> chosen candidate rows (sample_id, label, source, ...); deterministic by seed.

    With fill_short, a short class is topped up with `ambiguous` samples closest to it (marked
    `filled`), needs_high first (largest high-minus-low gap), then low_ok (most correct at both), never from a
    source more than half of whose samples are of the other class."""
    key = {c["sample_id"]: _rank(seed, c["sample_id"]) for c in candidates}
    chosen: dict[str, list[dict]] = {}
    for cls in CLASSES:
        pool = sorted((c for c in candidates if c["label"] == cls), key=lambda c: key[c["sample_id"]])
        chosen[cls] = [dict(c, filled=False) for c in pick(pool, per_class, stratify)]
    if fill_short:
        used: set = set()
        other = {"needs_high": "low_ok", "low_ok": "needs_high"}
        # never from a source whose samples are mostly of the other class: there an ambiguous
        # sample is more likely scoring noise than a member of this class (a colour question in needs_high)
        count = Counter((c["source"], c["label"]) for c in candidates)
        total = Counter(c["source"] for c in candidates)
        for cls in ("needs_high", "low_ok"):
            need = per_class - len(chosen[cls])
            if need <= 0:
                continue
            pool = sorted((c for c in candidates if c["label"] == "ambiguous" and c["sample_id"] not in used
                           and 2 * count[c["source"], other[cls]] <= total[c["source"]]),
                          key=lambda c: (-CLOSENESS[cls](c), key[c["sample_id"]]))
            extra = [dict(c, filled=True, label=cls) for c in pick(pool, need, stratify)]
            used |= {c["sample_id"] for c in extra}
            chosen[cls] += extra
    return chosen


def _train(alias: str = "") -> str:
    """Train rows only (a row without a split counts as train)."""
    return f"coalesce({alias}split, 'train') = 'train'"


def _label_set(con, cfg: CurateConfig) -> provenance.LabelSet:
    """The one (policy, protocol, dataset_sha) whose train labels this curation reads; a VtError naming the
    choices when the options leave several, and when its rows mix k or judges."""
    if "sufficiency" not in tables.existing(con):
        raise VtError(f"{cfg.db} has no `sufficiency` table: run `vt score-judge` first")
    if "protocol" not in tables.columns(con, "sufficiency"):
        raise provenance.legacy_error(cfg.db)
    sets = con.execute(f"SELECT policy, protocol, dataset_sha, any_value(dataset) FROM sufficiency WHERE {_train()} "
                       "GROUP BY ALL ORDER BY ALL").fetchall()
    policies = sorted({r[0] for r in sets})
    if cfg.policy is None and len(policies) > 1:
        raise VtError(f"{cfg.db} holds labels of {len(policies)} policies ({', '.join(policies)}); pick one with --policy")
    if cfg.policy is not None and cfg.policy not in policies:
        raise VtError(f"no labels of policy {cfg.policy!r} in {cfg.db} (have: {', '.join(policies) or 'none'})")
    sets = [r for r in sets if cfg.policy in (None, r[0])]
    if cfg.data is not None:
        want = provenance.dataset_sha(cfg.data)
        sets = [r for r in sets if r[2] == want]
        if not sets:
            raise VtError(f"no train labels of the dataset at {cfg.data} (content {want[:12]}) in {cfg.db}: score it "
                          f"with `vt score-judge`; was it rebuilt after scoring?")
    if cfg.protocol:
        sets = [r for r in sets if r[1].startswith(cfg.protocol)]
    if len(sets) != 1:
        have = "; ".join(f"protocol {provenance.describe(con, p)} on {d} ({h[:12]})" for _, p, h, d in sets) or "none"
        raise VtError(f"{cfg.db} holds {len(sets)} matching label sets ({have}); pick one with --protocol and --data")
    ls = provenance.LabelSet(*sets[0][:3])
    mixed = con.execute(f"SELECT count(DISTINCT k), count(DISTINCT judge), string_agg(DISTINCT k::VARCHAR, ', '), "
                        f"string_agg(DISTINCT judge, ', ') FROM sufficiency WHERE {ls.where()} AND {_train()}",
                        ls.params).fetchone()
    if mixed[0] > 1 or mixed[1] > 1:
        raise VtError(f"the labels of {ls.policy} (protocol {ls.protocol[:12]}) mix k = {mixed[2]} and judges "
                      f"{mixed[3]}; rerun `vt score-judge` over the same samples with one --rollouts and one --judge")
    return ls


def _candidates(con, cfg: CurateConfig) -> tuple[str, list[dict]]:
    ls = _label_set(con, cfg)
    cols = ("sample_id", "source", "label", "dataset", "low_correct", "high_correct")
    # train rows only: a curated set is a training set (its rows go to train shards); labels of val rows
    # (`vt score-judge --split all`) would put evaluation samples into training
    answer = join = ""
    if cfg.stratify == "answer":
        if "samples" not in tables.existing(con):
            raise VtError(f"--stratify answer needs the `samples` table in {cfg.db} (written by `vt build-data --db` "
                          f"and `vt score-judge`)")
        answer = ", p.answers[1]"
        join = " LEFT JOIN samples p ON p.id = s.sample_id AND p.dataset IS NOT DISTINCT FROM s.dataset"
        cols += ("answer",)
    rows = con.execute(f"SELECT {', '.join('s.' + c for c in cols if c != 'answer')}{answer} FROM sufficiency s{join} "
                       f"WHERE {ls.where('s')} AND {_train('s.')} ORDER BY s.sample_id", ls.params).fetchall()
    cands = [dict(zip(cols, r), dataset_sha=ls.dataset_sha, protocol=ls.protocol) for r in rows]
    return ls.policy, cands


def _dataset_dir(cfg: CurateConfig, chosen: list[dict]) -> Path:
    """The scored dataset's directory (--data was matched by content already; a recorded path is checked)."""
    if cfg.data is not None:
        return Path(cfg.data)
    dirs = sorted({c["dataset"] for c in chosen if c["dataset"]})
    if len(dirs) != 1:
        raise VtError(f"the chosen samples come from {len(dirs)} datasets ({', '.join(dirs) or 'unrecorded'}); "
                      f"pass --data DIR")
    if not provenance.same_dataset(Path(dirs[0]), chosen[0]["dataset_sha"]):
        raise VtError(f"the dataset at {dirs[0]} is not the one these labels were made on (rebuilt or changed "
                      f"since `vt score-judge`); pass --data with the scored dataset, or score this one")
    return Path(dirs[0])


def _check_out(out: Path, keep: tuple, force: bool) -> Path:
    """--out may be new, empty, or an earlier curated set; never a built set, a foreign dir or an input.
    Returns --out resolved (what is written and recorded)."""
    out = check_out(out, "build.json", "a vt dataset", keep=keep, force=force)
    if (out / "build.json").exists() and not force and _built_name(out) is None:
        raise VtError(f"{out} is a dataset written by `vt build-data`, not by `vt curate`; choose another --out")
    return out


def _built_name(out: Path) -> str | None:
    """The set name in out/build.json when `vt curate` wrote it (else None)."""
    try:
        meta = json.loads((out / "build.json").read_text())
        return str(meta.get("name")) if "curated" in meta else None
    except (OSError, ValueError, AttributeError):
        return None


def _check_name_free(con, cfg: CurateConfig) -> None:
    """An existing set of this name is replaced only where it lives (--out holds it) or with --force:
    its rows say which samples a model was trained on."""
    if cfg.force or "curated" not in tables.existing(con):
        return
    n, policy = con.execute("SELECT count(*), any_value(policy) FROM curated WHERE name = ?", [cfg.name]).fetchone()
    if n and _built_name(Path(cfg.out)) != cfg.name:
        raise VtError(f"a curated set named {cfg.name!r} already exists ({n} samples, labels of {policy}) and "
                      f"{cfg.out} does not hold it; choose another --name, or pass --force to replace it")


def write_dataset(src: Path, out: Path, rows_by_id: dict[str, dict], cfg: CurateConfig, summary: dict) -> list[str]:
    """Copy the chosen rows (all sample columns + use_tool) into out/, in rank order; returns file names.
    One pass over the source in file order spills the chosen rows to disk; the shards are then written
    from the spill in rank order, a row group at a time (memory does not grow with the data)."""
    files = sorted((src / "data").glob("*.parquet"))
    if not (src / "build.json").exists() or not files:
        raise VtError(f"{src} is not a built dataset (needs build.json and data/*.parquet)")
    schema = pq.read_schema(files[0])
    if "use_tool" not in schema.names:
        schema = schema.append(pa.field("use_tool", pa.bool_()))
    chosen = list(rows_by_id)
    rank = {sid: k for k, sid in enumerate(chosen)}
    use_tool = pa.array([rows_by_id[i]["use_tool"] for i in chosen], pa.bool_())
    with staging(out) as tmp:
        spill = RowSpill(tmp / "chosen.arrow", schema)
        at: dict[int, int] = {}  # position in `chosen` -> row in the spill
        for f in files:  # Arrow all the way: image bytes never become Python objects
            for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=64):
                pos = []
                for sid in batch.column("id").to_pylist():  # chosen, and not seen before
                    p = rank.get(sid)
                    pos.append(p if p is not None and p not in at else None)
                    if pos[-1] is not None:
                        at[p] = len(at)
                keep = pa.array([p is not None for p in pos])
                if not any(p is not None for p in pos):
                    continue
                t = pa.Table.from_batches([batch])
                t = t if all(p is not None for p in pos) else t.filter(keep)
                tool = pc.take(use_tool, pa.array([p for p in pos if p is not None], pa.int64()))
                t = t.set_column(t.column_names.index("use_tool"), "use_tool", tool) if "use_tool" in t.column_names \
                    else t.append_column("use_tool", tool)
                spill.write(t.select(schema.names).cast(schema))
        missing = [i for k, i in enumerate(chosen) if k not in at]
        if missing:
            raise VtError(f"{len(missing)} chosen samples (e.g. {missing[0]}) are not in {src}: "
                          f"was the dataset rebuilt after scoring? pass --data or rescore")
        (tmp / "data").mkdir()
        ordered = [at[k] for k in range(len(chosen))]
        shards = write_shards(tmp / "data", "train", spill, ordered, cfg.shard_rows, schema, digest=False,
                              at_least_one=True)
        names = [Path(s["file"]).name for s in shards]
        spill.remove()
        meta = json.loads((src / "build.json").read_text())
        meta.update(name=cfg.name, curated=summary, counts={"kept": len(ordered), "by_split": {"train": len(ordered), "val": 0}},
                    shards=[{"file": f"data/{n}"} for n in names])
        (tmp / "build.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        write_dataset_card(tmp, meta)
        publish(tmp, out)
    return names


def curate(cfg: CurateConfig) -> dict:
    if not Path(cfg.db).exists():
        raise VtError(f"database {cfg.db} does not exist (run `vt score-judge` first, or pass --db)")
    cfg.out = str(_check_out(Path(cfg.out), keep=(cfg.db,), force=cfg.force))
    with writer(cfg.db, "vt curate") as con:
        _check_name_free(con, cfg)
        policy, cands = _candidates(con, cfg)
        chosen = select(cands, cfg.per_class, cfg.stratify, cfg.seed, cfg.fill_short)
        avail = Counter(c["label"] for c in cands)
        short = [f"{cls} has {len(chosen[cls])} of {cfg.per_class}" for cls in CLASSES if len(chosen[cls]) < cfg.per_class]
        if short and not cfg.allow_short:
            raise VtError(f"not enough samples: {'; '.join(short)} (labels of {policy}: "
                          + ", ".join(f"{k}={avail.get(k, 0)}" for k in ("low_ok", "needs_high", "ambiguous", "incomplete"))
                          + "); score more samples, lower --per-class, or pass --allow-short")
        picked = [c for cls in CLASSES for c in chosen[cls]]
        if not picked:
            raise VtError(f"no low_ok or needs_high samples among the {len(cands)} scored by {policy}: nothing to curate")
        picked.sort(key=lambda c: _rank(cfg.seed + 1, c["sample_id"]))  # classes interleaved in the files
        src = _dataset_dir(cfg, picked)
        cfg.out = str(_check_out(Path(cfg.out), keep=(cfg.db, src), force=cfg.force))
        by_id = {c["sample_id"]: {"use_tool": c["label"] == "needs_high"} for c in picked}
        balance = Counter((c["source"], c["label"]) for c in picked)
        summary = {"policy": policy, "protocol": picked[0]["protocol"], "dataset_sha": picked[0]["dataset_sha"],
                   "per_class": cfg.per_class, "stratify": cfg.stratify, "seed": cfg.seed,
                   "filled": sum(c["filled"] for c in picked),
                   "from": str(src), "db": str(cfg.db), "selected": dict(Counter(c["label"] for c in picked)),
                   "available": dict(avail), "short": short}
        tables.ensure(con, "curated")
        with transaction(con):  # the table changes only once the files are in place
            _record(con, cfg.name, policy, src, picked)
            write_dataset(src, Path(cfg.out), by_id, cfg, summary)
    return {"policy": policy, "chosen": {k: len(v) for k, v in chosen.items()}, "balance": balance,
            "filled": summary["filled"],
            "available": avail, "short": short, "out": str(cfg.out)}


def _record(con, name: str, policy: str, src: Path, picked: list[dict]) -> None:
    """The `curated` rows of this set (rank = position in the files), replacing an earlier set of that name."""
    n = len(picked)
    tbl = pa.table({"name": [name] * n, "sample_id": [c["sample_id"] for c in picked],
                    "source": [c["source"] for c in picked], "label": [c["label"] for c in picked],
                    "use_tool": [c["label"] == "needs_high" for c in picked], "filled": [c["filled"] for c in picked],
                    "policy": [policy] * n, "dataset": [str(src)] * n, "rank": pa.array(range(n), pa.int32()),
                    "created": [dt.datetime.now()] * n})
    con.execute("DELETE FROM curated WHERE name = ?", [name])
    with arrow_table(con, "_vt_cur", tbl):
        con.execute("INSERT INTO curated SELECT * FROM _vt_cur")


def _print_balance(result: dict) -> None:
    from rich.table import Table
    t = Table(title=f"curated (labels of {result['policy']})", title_justify="left")
    t.add_column("source")
    for cls in CLASSES:
        t.add_column(cls, justify="right")
    sources = sorted({s for s, _ in result["balance"]})
    for s in sources:
        t.add_row(s, *(str(result["balance"].get((s, cls), 0)) for cls in CLASSES))
    t.add_row("total", *(str(result['chosen'][cls]) for cls in CLASSES), style="bold")
    console.print(t)


def run(cfg: CurateConfig) -> dict:
    result = curate(cfg)
    _print_balance(result)
    for s in result["short"]:
        info(f"short: {s} (--allow-short)")
    if result["filled"]:
        info(f"filled: {result['filled']} ambiguous samples stand in for short classes (--fill-short)")
    info(f"wrote {sum(result['chosen'].values())} samples to {result['out']}")
    return result


curate_command = command(CurateConfig, run)
