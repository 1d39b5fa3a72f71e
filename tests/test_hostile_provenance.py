"""Round 3, class 8 (the parts done): the judge cache is keyed by the judge's server as well as its model
and prompt; an eval run is bound to the model's weights (a fingerprint), refused by name when another
model sits at the same path; curation reads only the train split's labels."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import duckdb
import pytest

from fake_openai import FakeOpenAI
from vtdata.console import VtError


def test_judge_cache_is_not_shared_across_servers(tmp_path):
    from vtdata.judge import JudgeItem, make_judge
    items = [JudgeItem("q", ["yes"], "maybe so", is_answer=True)]
    db = tmp_path / "vt.duckdb"
    for n in range(2):
        with FakeOpenAI() as srv:
            con = duckdb.connect(str(db))
            judge = make_judge("openai:m", db=con, base_url=srv.url, shortcut=False)
            try:
                judge.judge(items)
            finally:
                judge.close()
                con.close()
            assert srv.requests == 1, f"server {n} was not asked: a verdict of another server was reused"


def test_eval_run_refuses_another_model_at_the_same_path(tmp_path):
    from models_helpers import tiny_model_dir
    from vtdata import tables
    from vttrain.eval import EvalConfig, _check_run, _start_run
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir(), model)
    data = tmp_path / "data"
    data.mkdir()
    cfg = EvalConfig(data=str(data), model=str(model), mode="full", name="r1")
    con = duckdb.connect(str(tmp_path / "vt.duckdb"))
    tables.ensure(con, "eval_runs", "eval_predictions")
    _start_run(con, cfg, "r1")
    assert _check_run(con, cfg, "r1") is True
    w = next(model.glob("*.safetensors"))
    b = bytearray(w.read_bytes())
    b[-1000:] = bytes(1000)  # other weights, same file size and config
    w.write_bytes(bytes(b))
    with pytest.raises(VtError, match="different model"):
        _check_run(con, cfg, "r1")


def test_curate_reads_only_the_train_split(tmp_path):
    from vtdata import tables
    from vtdata.curate import _candidates
    con = duckdb.connect(str(tmp_path / "vt.duckdb"))
    tables.ensure(con, "sufficiency")
    for i, split in enumerate(["train", "val", "train", "val"]):
        con.execute("INSERT INTO sufficiency (policy, protocol, dataset_sha, sample_id, source, split, dataset, label) "
                    "VALUES ('p', 'x', 'h', ?, 's', ?, 'd', 'low_ok')", [f"id{i}", split])
    _, cands = _candidates(con, SimpleNamespace(policy=None, protocol=None, data=None, db=tmp_path / "vt.duckdb",
                                                stratify=None))
    assert sorted(c["sample_id"] for c in cands) == ["id0", "id2"]


# ------------------------------------------------------------------ class 2: rollouts and labels keyed by provenance

MANIFEST = """name: prov
seed: {seed}
val_fraction: 0.0
shard_rows: 8
resolution: {{min_pixels: 12544, max_pixels: {max_pixels}, multiple: 56, low_factor: 2}}
sources:
  - {{name: synth-general, kind: synthetic, task: general, take: 3}}
  - {{name: synth-ocr, kind: synthetic, task: ocr, take: 3}}
"""


def _build(root, out, seed=0, max_pixels=50176):
    from vtdata.build import BuildDataConfig, build
    m = root / f"m-{seed}-{max_pixels}.yaml"
    m.write_text(MANIFEST.format(seed=seed, max_pixels=max_pixels))
    build(BuildDataConfig(manifest=str(m), out=str(out), db=str(root / "build.duckdb"), force=True))
    return out


def _is_policy(req) -> bool:
    return any(isinstance(m.get("content"), list) for m in req["messages"])


def _policy_server():
    return FakeOpenAI(lambda req: "<think>t</think><answer>red</answer>")


def _score(srv, data, db, *extra):
    from build_helpers import vt
    before = sum(map(_is_policy, srv.log))
    r = vt("score-judge", "--data", data, "--db", db, "--rollouts", "2", "--judge", "auto", "--policy",
           "openai:p", "--policy-base-url", srv.url, *extra)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return sum(map(_is_policy, srv.log)) - before, r.stdout + r.stderr


def _labels(db) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM sufficiency").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("change", [["--temperature", "0.5"], ["--max-new-tokens", "99"], ["--seed", "3"],
                                    ["--prompt", "{tmp}/my_prompt.txt"]])
def test_a_rerun_with_other_sampling_prompt_or_budget_does_not_reuse_rollouts(tmp_path, change):
    data, db = _build(tmp_path, tmp_path / "data"), tmp_path / "vt.duckdb"
    (tmp_path / "my_prompt.txt").write_text("Answer in one word.")
    change = [c.format(tmp=tmp_path) for c in change]
    with _policy_server() as srv:
        first, _ = _score(srv, data, db)
        again, log = _score(srv, data, db)  # identical settings: all resumed, nothing asked twice
        assert first > 0 and again == 0 and "6 already labelled, 0 to do" in log, log
        other, log = _score(srv, data, db, *change)
    assert other == first, f"{change}: {other} requests of {first}: old rollouts reused ({log})"
    assert len(_labels(db)) == 12  # two label sets side by side (protocols), never one mixed set


def test_a_dataset_rebuilt_at_another_resolution_is_scored_anew(tmp_path):
    data, db = _build(tmp_path, tmp_path / "data"), tmp_path / "vt.duckdb"
    with _policy_server() as srv:
        first, _ = _score(srv, data, db)
        _build(tmp_path, data, max_pixels=4 * 50176)  # the same ids, views twice the size
        again, log = _score(srv, data, db)
    assert again == first and "0 already labelled" in log, log


def test_datasets_of_two_seeds_do_not_share_labels_and_curate_reads_one(tmp_path):
    from build_helpers import vt
    a = _build(tmp_path, tmp_path / "a", seed=0)
    b = _build(tmp_path, tmp_path / "b", seed=7)
    db = tmp_path / "vt.duckdb"
    with _policy_server() as srv:
        _score(srv, a, db)
        n, log = _score(srv, b, db)
    assert n > 0 and "0 already labelled" in log, log
    con = duckdb.connect(str(db), read_only=True)
    sets = con.execute("SELECT dataset, count(*) FROM sufficiency GROUP BY 1 ORDER BY 1").fetchall()
    con.close()
    assert sets == [(str(a.resolve()), 6), (str(b.resolve()), 6)]
    r = vt("curate", "--db", db, "--name", "c", "--per-class", "1", "--allow-short", "--fill-short", "--out",
           tmp_path / "cur")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--data" in r.stderr, r.stderr
    r = vt("curate", "--db", db, "--name", "c", "--per-class", "1", "--allow-short", "--fill-short", "--out",
           tmp_path / "cur", "--data", b)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "cur" / "build.json").read_text())
    assert meta["curated"]["from"] == str(b) and meta["seed"] == 7


OLD_DDL = ["CREATE TABLE rollouts (policy VARCHAR NOT NULL, sample_id VARCHAR NOT NULL, view VARCHAR NOT NULL, "
           "idx INTEGER NOT NULL, text VARCHAR, generated_tokens INTEGER, visual_tokens INTEGER, latency_s DOUBLE, "
           "finish_reason VARCHAR, temperature DOUBLE, score DOUBLE, judge_status VARCHAR, judge_reason VARCHAR, "
           "prediction VARCHAR, judge VARCHAR, verdict_by VARCHAR, created TIMESTAMP, judged TIMESTAMP, "
           "PRIMARY KEY (policy, sample_id, view, idx))",
           "CREATE TABLE sufficiency (policy VARCHAR NOT NULL, sample_id VARCHAR NOT NULL, source VARCHAR, task VARCHAR, "
           "split VARCHAR, dataset VARCHAR, k INTEGER, low_correct INTEGER, high_correct INTEGER, low_judged INTEGER, "
           "high_judged INTEGER, low_visual_tokens INTEGER, high_visual_tokens INTEGER, label VARCHAR, judge VARCHAR, "
           "updated TIMESTAMP, PRIMARY KEY (policy, sample_id))",
           "CREATE VIEW label_counts AS SELECT policy, source, label, count(*) AS samples FROM sufficiency GROUP BY ALL"]


def _old_database(db, data):
    """A database as vt before issue 30 wrote it: every sample labelled low_ok by policy openai:p."""
    from vtdata.dataset import iter_samples
    con = duckdb.connect(str(db))
    for ddl in OLD_DDL:
        con.execute(ddl)
    for s in iter_samples(data, columns=["id", "source"]):
        con.execute("INSERT INTO rollouts (policy, sample_id, view, idx, text) VALUES ('openai:p', ?, 'low', 0, 'x')",
                    [s["id"]])
        con.execute("INSERT INTO sufficiency (policy, sample_id, source, split, dataset, k, label, judge) "
                    "VALUES ('openai:p', ?, ?, 'train', ?, 2, 'low_ok', 'auto')", [s["id"], s["source"], str(data)])
    con.close()


def test_a_database_from_before_provenance_keys_is_set_aside_not_resumed(tmp_path):
    from build_helpers import vt
    data, db = _build(tmp_path, tmp_path / "data"), tmp_path / "vt.duckdb"
    _old_database(db, data)
    r = vt("curate", "--db", db, "--name", "c", "--per-class", "1", "--allow-short", "--out", tmp_path / "cur")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "vt score-judge" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    with _policy_server() as srv:
        n, log = _score(srv, data, db)
    assert n > 0 and "0 already labelled" in log and "sufficiency_v1" in log, log
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM rollouts_v1").fetchone()[0] == 6  # kept, not deleted
    assert con.execute("SELECT count(*) FROM sufficiency_v1").fetchone()[0] == 6
    assert con.execute("SELECT count(*) FROM sufficiency").fetchone()[0] == 6
    assert con.execute("SELECT sum(samples) FROM label_counts").fetchone()[0] == 6
    con.close()


def test_another_checkpoint_at_the_same_path_is_another_protocol(tmp_path):
    from models_helpers import tiny_model_dir
    from vttrain.score import ScoreConfig, protocol_settings
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir(), model)
    policy = SimpleNamespace(identity=f"local:{model.resolve()}")
    cfg = ScoreConfig(data=tmp_path, policy=f"local:{model}")
    before = protocol_settings(cfg, policy)
    w = next(model.glob("*.safetensors"))
    b = bytearray(w.read_bytes())
    b[-1000:] = bytes(1000)
    w.write_bytes(bytes(b))
    assert protocol_settings(cfg, policy) != before


def test_samples_with_one_input_share_its_rollouts_and_each_gets_a_label(tmp_path):
    """Two rows with the same question, gold answer and pixels (image bytes encoded differently: build-data's
    dedup by image hash keeps both) in one chunk: generated once, stored once, both labelled."""
    import asyncio
    import hashlib
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from score_helpers import CountingPolicy, ScriptedPolicy
    from train_helpers import make_image, write_dataset
    from vtdata.db import writer
    from vttrain.score import ScoreConfig, make_judge_for, score
    data = write_dataset(tmp_path / "d", n=3)
    f = data / "data" / "train-00000.parquet"
    t = pq.read_table(f)
    rows = t.to_pylist()
    buf = io.BytesIO()
    make_image(0).save(buf, format="PNG", compress_level=1)
    b = buf.getvalue()
    assert b != rows[0]["image"]["bytes"]
    rows[1].update(question=rows[0]["question"], answers=rows[0]["answers"], image={"bytes": b, "path": None},
                   image_sha256=hashlib.sha256(b).hexdigest())
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), f)
    policy = CountingPolicy(ScriptedPolicy(lambda q, size, j: "<think>t</think><answer>0</answer>"))
    cfg = ScoreConfig(data=data, policy="x", rollouts=2, concurrency=4)
    db = tmp_path / "vt.duckdb"
    with writer(db, "test") as con:
        judge = make_judge_for(cfg, con)
        try:
            result = asyncio.run(score(cfg, con, policy, judge))
        finally:
            judge.close()
    assert policy.rollouts == 2 * 2 * 2  # two distinct inputs x two views x k
    assert sum(result["labels"].values()) == 3 and not result["labels"].get("incomplete"), result
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT input_sha) FROM rollouts").fetchone() == (8, 2)
    assert con.execute("SELECT count(DISTINCT input_sha) FROM sufficiency").fetchone()[0] == 2
    con.close()
