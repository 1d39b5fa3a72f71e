"""vt curate: balance, determinism, short classes, the written dataset and the `curated` table."""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections import Counter

import duckdb
import pyarrow.parquet as pq
import pytest

from score_helpers import samples, small_data
from vtdata.dataset import iter_samples, load_hf
from vtdata.console import VtError
from vtdata.curate import CurateConfig, curate, select
from vtdata.db import writer


def _cands(spec, rng=None):
    """spec: {source: {label: n}} -> candidate rows."""
    out = []
    for src, labels in spec.items():
        for lab, n in labels.items():
            out += [{"sample_id": f"{src}-{lab}-{i}", "source": src, "label": lab, "dataset": "/d",
                     "low_correct": 0, "high_correct": 0} for i in range(n)]
    if rng:
        rng.shuffle(out)
    return out


SPEC = {"a": {"low_ok": 50, "needs_high": 3, "ambiguous": 9}, "b": {"low_ok": 20, "needs_high": 40},
        "c": {"low_ok": 5, "needs_high": 5, "incomplete": 4}}


def test_stratified_selection_is_balanced_and_max_min_fair():
    chosen = select(_cands(SPEC), 30, "source", seed=0)
    avail = Counter((c["source"], c["label"]) for c in _cands(SPEC))
    for cls in ("low_ok", "needs_high"):
        ids = [c["sample_id"] for c in chosen[cls]]
        assert len(ids) == len(set(ids)) == 30 and all(c["label"] == cls for c in chosen[cls])
        n = Counter(c["source"] for c in chosen[cls])
        for s in n:  # a source gets fewer than another (by more than 1) only when it has no more
            for t in n:
                if n[s] < n[t] - 1:
                    assert n[s] == avail[(s, cls)], (cls, dict(n))
    assert Counter(c["source"] for c in chosen["low_ok"]) == {"a": 13, "b": 12, "c": 5}
    assert Counter(c["source"] for c in chosen["needs_high"]) == {"a": 3, "c": 5, "b": 22}


def test_selection_is_deterministic_by_seed_not_input_order():
    base = select(_cands(SPEC), 12, None, seed=0)
    shuffled = select(_cands(SPEC, random.Random(1)), 12, None, seed=0)
    other = select(_cands(SPEC), 12, None, seed=1)
    ids = lambda ch: {k: [c["sample_id"] for c in v] for k, v in ch.items()}  # noqa: E731
    assert ids(base) == ids(shuffled)
    assert ids(base) != ids(other)
    assert not any(c["filled"] for v in base.values() for c in v)


def test_fill_short_takes_the_closest_ambiguous_samples():
    cands = _cands({"a": {"ambiguous": 6, "low_ok": 1}})
    for i, c in enumerate(c for c in cands if c["label"] == "ambiguous"):
        c["low_correct"], c["high_correct"] = [(0, 5), (1, 5), (0, 3), (4, 4), (2, 3), (0, 0)][i]
    chosen = select(cands, 2, None, seed=0, fill_short=True)
    got = {k: sorted((c["low_correct"], c["high_correct"], c["filled"]) for c in v) for k, v in chosen.items()}
    assert got["needs_high"] == [(0, 5, True), (1, 5, True)]  # the largest high-minus-low gaps
    assert got["low_ok"] == [(0, 0, False), (4, 4, True)]    # its one real sample + the most correct at both


def test_fill_short_never_draws_from_a_source_of_the_other_class():
    """issue 28: a colour question (a source whose samples are low_ok) scored ambiguous by chance must not stand in
    for a short needs_high class; a source of ambiguous samples still may."""
    cands = _cands({"general": {"low_ok": 9, "ambiguous": 1}, "fine": {"needs_high": 2},
                    "mixed": {"ambiguous": 2, "low_ok": 1}})
    for c in cands:
        if c["label"] == "ambiguous":
            c["low_correct"], c["high_correct"] = (3, 4) if c["source"] == "general" else (1, 3)
    chosen = select(cands, 5, None, seed=0, fill_short=True)
    assert Counter(c["source"] for c in chosen["needs_high"]) == {"fine": 2, "mixed": 2}
    assert not any(c["source"] == "general" for c in chosen["needs_high"])


def test_stratify_answer_spreads_a_class_over_the_gold_answers(tmp_path):
    """`--stratify answer`: round-robin over the first gold answer, read from the `samples` table; an answer with
    few samples is not left out (a set without one colour made GRPO forget it)."""
    cands = []
    for i, a in enumerate(["blue"] * 2 + ["green"] * 20 + ["red"] * 20):
        cands.append({"sample_id": f"s{i}", "source": "general", "label": "low_ok", "dataset": "/d",
                      "low_correct": 4, "high_correct": 4, "answer": a})
    chosen = select(cands, 9, "answer", seed=0)
    assert Counter(c["answer"] for c in chosen["low_ok"]) == {"blue": 2, "green": 4, "red": 3} or \
        Counter(c["answer"] for c in chosen["low_ok"]) == {"blue": 2, "green": 3, "red": 4}
    with pytest.raises(VtError, match="--stratify must be"):
        CurateConfig(db=tmp_path / "x.duckdb", name="c", per_class=2, out=tmp_path / "o", stratify="colour")
    # through the database: the answer comes from `samples` (a database without it: a one-line error)
    data, db, _ = _labelled_db(tmp_path, ["low_ok", "needs_high"])
    with pytest.raises(VtError, match="needs the `samples` table"):
        curate(CurateConfig(db=db, name="c0", per_class=2, out=tmp_path / "c0", stratify="answer", allow_short=True))
    from vtdata import tables
    rows = samples(data)
    with writer(db, "test") as con:
        tables.ensure(con, "samples")
        for r in rows:
            con.execute("INSERT INTO samples (dataset, id, source, answers) VALUES (?, ?, ?, ?)",
                        [str(data.resolve()), r["id"], r["source"], [r["answers"][0]]])
    curate(CurateConfig(db=db, name="c1", per_class=2, out=tmp_path / "c1", stratify="answer", allow_short=True))
    gold = {r["id"]: r["answers"][0] for r in rows}
    con = duckdb.connect(str(db), read_only=True)
    try:
        picked = con.execute("SELECT label, sample_id FROM curated WHERE name = 'c1'").fetchall()
        labels = dict(con.execute("SELECT sample_id, label FROM sufficiency").fetchall())
    finally:
        con.close()
    for cls in ("low_ok", "needs_high"):
        mine = [i for lab, i in picked if lab == cls]
        avail = {gold[i] for i, lab in labels.items() if lab == cls}
        assert mine and len({gold[i] for i in mine}) == min(len(mine), len(avail)), (cls, mine, avail)


def _labelled_db(tmp_path, plan):
    """A database whose sufficiency labels the small dataset's samples by `plan` (cycled)."""
    data, db = small_data(), tmp_path / "vt.duckdb"
    rows = samples(data)
    from vtdata import tables
    from vttrain.score import TABLES
    from vtdata.provenance import dataset_sha
    with writer(db, "test") as con:
        tables.ensure(con, *TABLES)
        for s, lab in zip(rows, plan * len(rows)):
            con.execute("INSERT INTO sufficiency (policy, protocol, dataset_sha, sample_id, source, dataset, k, "
                        "low_correct, high_correct, low_judged, high_judged, label) "
                        "VALUES ('p', 'x', ?, ?, ?, ?, 8, 0, 0, 8, 8, ?)",
                        [dataset_sha(data), s["id"], s["source"], str(data.resolve()), lab])
    return data, db, {s["id"]: lab for s, lab in zip(rows, plan * len(rows))}


def test_curate_writes_a_trainable_dataset_and_the_curated_table(tmp_path):
    data, db, labels = _labelled_db(tmp_path, ["low_ok", "needs_high", "ambiguous"])
    cfg = CurateConfig(db=db, name="c1", per_class=3, out=tmp_path / "cur", stratify="source")
    r = curate(cfg)
    assert r["chosen"] == {"low_ok": 3, "needs_high": 3}
    t = pq.read_table(tmp_path / "cur" / "data" / "train-00000.parquet")
    src = pq.read_table(sorted((data / "data").glob("*.parquet"))[0]).schema
    assert t.schema.names == src.names + ["use_tool"]
    rows = t.to_pylist()
    assert all(r["use_tool"] == (labels[r["id"]] == "needs_high") for r in rows)
    assert Counter(r["use_tool"] for r in rows) == {True: 3, False: 3}
    orig = {s["id"]: s for s in iter_samples(data)}
    assert all(r["image"]["bytes"] == orig[r["id"]]["image"] and r["question"] == orig[r["id"]]["question"] for r in rows)
    assert load_hf(tmp_path / "cur", "train").num_rows == 6
    con = duckdb.connect(str(db), read_only=True)
    cur = con.execute("SELECT sample_id, label, use_tool, filled, rank FROM curated WHERE name = 'c1' ORDER BY rank").fetchall()
    con.close()
    assert [c[0] for c in cur] == [r["id"] for r in rows] and all(not c[3] for c in cur)
    # same inputs -> the same files; another name adds rows without touching c1
    curate(CurateConfig(db=db, name="c2", per_class=3, out=tmp_path / "cur2", stratify="source"))
    assert pq.read_table(tmp_path / "cur2" / "data" / "train-00000.parquet").to_pylist() == rows


def test_short_class_is_a_clear_error_unless_allowed(tmp_path):
    data, db, labels = _labelled_db(tmp_path, ["low_ok", "low_ok", "needs_high", "ambiguous"])
    n_high = sum(v == "needs_high" for v in labels.values())
    with pytest.raises(VtError, match=f"needs_high has {n_high} of 5"):
        curate(CurateConfig(db=db, name="c", per_class=5, out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()
    r = curate(CurateConfig(db=db, name="c", per_class=5, out=tmp_path / "o", allow_short=True))
    assert r["chosen"] == {"low_ok": 5, "needs_high": n_high}
    r = curate(CurateConfig(db=db, name="c", per_class=5, out=tmp_path / "o", fill_short=True))
    assert r["chosen"] == {"low_ok": 5, "needs_high": 5} and r["filled"] == 5 - n_high


def test_cli_prints_balance_and_errors_in_one_line(tmp_path):
    data, db, _ = _labelled_db(tmp_path, ["low_ok", "needs_high"])
    base = [sys.executable, "-m", "vt", "curate", "--db", str(db), "--name", "demo", "--out", str(tmp_path / "o")]
    ok = subprocess.run(base + ["--per-class", "2", "--stratify", "source"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "synth-general" in ok.stderr and "synth-ocr" in ok.stderr and "wrote 4 samples" in ok.stderr
    for extra in (["--per-class", "99"], ["--per-class", "2", "--stratify", "task"], ["--per-class", "2", "--policy", "q"]):
        bad = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr, bad.stderr


def test_out_must_not_destroy_a_foreign_dir_the_scored_set_or_a_file(tmp_path):
    data, db, _ = _labelled_db(tmp_path, ["low_ok", "needs_high"])
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    (tmp_path / "afile").write_text("keep me too")
    cfg = dict(db=db, name="c", per_class=2)
    before = sorted(p.name for p in (data / "data").iterdir())
    for out, msg in [(tmp_path / "precious", "not a vt dataset"), (tmp_path / "afile", "is a file"),
                     (data, "written by `vt build-data`"), (tmp_path, "which this command needs")]:
        with pytest.raises(VtError, match=msg):
            curate(CurateConfig(out=out, **cfg))
    with pytest.raises(VtError, match="shard-rows"):
        curate(CurateConfig(out=tmp_path / "o", shard_rows=0, **cfg))
    with pytest.raises(VtError, match="--name"):
        curate(CurateConfig(out=tmp_path / "o", **{**cfg, "name": " "}))
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "afile").read_text() == "keep me too"
    assert sorted(p.name for p in (data / "data").iterdir()) == before
    curate(CurateConfig(out=tmp_path / "o", **cfg))
    curate(CurateConfig(out=tmp_path / "o", **cfg))  # an earlier curation is replaced
    other = tmp_path / "built"
    shutil.copytree(data, other)
    with pytest.raises(VtError, match="written by `vt build-data`"):
        curate(CurateConfig(out=other, data=data, **cfg))


def test_a_failed_write_leaves_the_curated_table_as_it_was(tmp_path, monkeypatch):
    import vtdata.curate

    data, db, _ = _labelled_db(tmp_path, ["low_ok", "needs_high"])
    curate(CurateConfig(db=db, name="c", per_class=2, out=tmp_path / "o"))

    def fail(*a, **k):
        raise OSError("disk full")

    for step in ("write_dataset", "_record"):  # files and table change together or not at all
        with monkeypatch.context() as mp:
            mp.setattr(vtdata.curate, step, fail)
            with pytest.raises(OSError):
                curate(CurateConfig(db=db, name="c", per_class=3, out=tmp_path / "o"))
        con = duckdb.connect(str(db), read_only=True)
        n = con.execute("SELECT count(*) FROM curated WHERE name = 'c'").fetchone()[0]
        con.close()
        assert n == 4 == pq.read_metadata(tmp_path / "o" / "data" / "train-00000.parquet").num_rows, step
