"""Each source kind reads its format into the same schema: hf, parquet, jsonl, llava, visionthink, synthetic."""
import json

import pyarrow as pa
import pyarrow.parquet as pq

from build_helpers import build, image_bytes, write_manifest
from vtdata.dataset import iter_samples
from vtdata.resolution import ResolutionPolicy
from vtdata.sources import Context, synthetic


def _rows(d):
    return sorted(iter_samples(d), key=lambda r: r["question"])


def test_hf_save_to_disk_with_column_mapping(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"query": ["How many?", "Which word?"], "label": [["3"], ["amber"]],
         "img": [{"bytes": image_bytes((80, 60), "PNG"), "path": None},
                 {"bytes": image_bytes((60, 80), "JPEG", color=(0, 0, 200)), "path": None}],
         "extra": ["x", "y"]},
        features=datasets.Features({"query": datasets.Value("string"), "label": datasets.List(datasets.Value("string")),
                                    "img": datasets.Image(), "extra": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "hfds"))
    m = write_manifest(tmp_path, [{"name": "h", "kind": "hf", "task": "ocr", "path": "hfds",
                                   "columns": {"question": "query", "answers": "label", "image": "img"}}],
                       val_fraction=0)
    r = build(m, tmp_path / "out")
    assert r["counts"]["kept"] == 2
    rows = _rows(tmp_path / "out")
    assert [x["answers"] for x in rows] == [["3"], ["amber"]]
    assert rows[0]["answer_type"] == "number" and rows[1]["answer_type"] == "open"
    assert rows[0]["image"] == image_bytes((80, 60), "PNG")  # original bytes kept untouched
    assert json.loads(rows[0]["meta"]) == {"extra": "x"}
    assert (rows[1]["width"], rows[1]["height"]) == (60, 80)


def test_parquet_with_paths_under_image_root(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(image_bytes((64, 64)))
    pq.write_table(pa.table({"id": ["r1", "r2"], "question": ["q1", "q2"], "answer": ["a1", "a2"],
                             "image": ["a.png", "missing.png"], "choices": [None, ["a2", "b"]]}),
                   tmp_path / "t.parquet")
    m = write_manifest(tmp_path, [{"name": "p", "kind": "parquet", "path": "t.parquet", "image_root": "imgs",
                                   "answer_type": "open"}])
    r = build(m, tmp_path / "out")
    assert r["counts"]["kept"] == 1 and r["counts"]["rejected"] == 1
    assert r["counts"]["reject_reasons"] == {"image file not found": 1}


def test_llava_pairs_become_rows(tmp_path):
    (tmp_path / "i.jpg").write_bytes(image_bytes((100, 80), "JPEG"))
    recs = [{"id": "x", "image": "i.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "Is it square?"}, {"from": "gpt", "value": "no"}]},
        {"id": "y", "image": "i.jpg", "conversations": [{"from": "gpt", "value": "oops"}]}]
    (tmp_path / "l.json").write_text(json.dumps(recs))
    m = write_manifest(tmp_path, [{"name": "l", "kind": "llava", "path": "l.json"}], val_fraction=0)
    r = build(m, tmp_path / "out")
    assert r["counts"] == {**r["counts"], "in": 3, "kept": 2, "rejected": 1}
    assert [x["question"] for x in _rows(tmp_path / "out")] == ["Is it square?", "What colour?"]


def test_llava_unanswered_last_turn_is_a_reject_not_dropped(tmp_path):
    (tmp_path / "i.jpg").write_bytes(image_bytes((100, 80), "JPEG"))
    recs = [{"id": "x", "image": "i.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "And the shape?"}]}]
    (tmp_path / "l.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    m = write_manifest(tmp_path, [{"name": "l", "kind": "llava", "path": "l.jsonl"}], val_fraction=0)
    r = build(m, tmp_path / "out")
    assert (r["counts"]["in"], r["counts"]["kept"], r["counts"]["rejected"]) == (2, 1, 1)
    assert r["counts"]["reject_reasons"] == {"conversation ends without an answer": 1}


def test_visionthink_release_schema_keeps_labels_in_meta(tmp_path):
    img = {"bytes": image_bytes((700, 500), "JPEG"), "path": None}
    t = pa.table({
        "images": [[img], [img]],
        "problem": ["<image>\nWhat is the title?", "<image>How many bars?"],
        "original_answer": ["Sales", "4"], "solution": ["<answer> Sales </answer>", "<answer> 4 </answer>"],
        "data_source": ["open_source_require_high", "open_source_no_require_high"], "doc_id": ["d1", "d2"],
        "info": [{"tgt_width": 350, "tgt_height": 252, "use_tool": True},
                 {"tgt_width": 350, "tgt_height": 252, "use_tool": False}]})
    (tmp_path / "vt").mkdir()
    pq.write_table(t, tmp_path / "vt" / "train-0.parquet")
    m = write_manifest(tmp_path, [{"name": "smart", "kind": "visionthink", "task": "ocr", "path": "vt",
                                   "filters": {"meta": {"data_source": ["open_source_require_high"]}}}],
                       val_fraction=0)
    r = build(m, tmp_path / "out")
    assert r["counts"]["kept"] == 1 and r["counts"]["reject_reasons"] == {"filter": 1}
    row = _rows(tmp_path / "out")[0]
    assert row["question"] == "What is the title?" and row["answers"] == ["Sales"]
    meta = json.loads(row["meta"])
    assert meta["data_source"] == "open_source_require_high" and meta["doc_id"] == "d1"
    assert meta["info"] == {"tgt_width": 350, "tgt_height": 252, "use_tool": True}


def test_synthetic_is_deterministic_and_ocr_text_scales_with_the_policy():
    from pathlib import Path

    small, big = ResolutionPolicy(224 * 224, 448 * 448), ResolutionPolicy()
    a = synthetic.open({"name": "s", "count": 20}, Context(Path("."), 0, small, "ocr"))
    b = synthetic.open({"name": "s", "count": 20}, Context(Path("."), 0, small, "ocr"))
    c = synthetic.open({"name": "s", "count": 20}, Context(Path("."), 0, big, "ocr"))
    for i in range(20):
        ra, rb, rc = a[i], b[i], c[i]
        assert ra["question"] == rb["question"] and ra["image"]() == rb["image"]()
        fa = [t[3] for t in ra["image"].args[0].get("texts", ())]
        fc = [t[3] for t in rc["image"].args[0].get("texts", ())]
        assert fa and all(x > y for x, y in zip(fa, fc))  # downscaled more -> text drawn bigger
    general = synthetic.open({"name": "s", "count": 40}, Context(Path("."), 0, small, "general"))
    templates = {general[i]["meta"]["template"] for i in range(40)}
    assert templates == {"count", "color", "shape", "position"}
    ocr_t = {a[i]["meta"]["template"] for i in range(20)}
    assert ocr_t == {"label", "chart", "document", "word"}


def test_parquet_binary_text_and_single_image_lists(tmp_path):
    img = image_bytes((64, 48))
    pq.write_table(pa.table({"question": pa.array([b"fine", b"caf\xe9"], pa.binary()),
                             "answers": [["a"], ["b"]],
                             "image": [[{"bytes": img, "path": None}], [{"bytes": img, "path": None}]]}),
                   tmp_path / "b.parquet")
    m = write_manifest(tmp_path, [{"name": "p", "kind": "parquet", "path": "b.parquet"}], val_fraction=0)
    r = build(m, tmp_path / "out")
    assert r["counts"]["kept"] == 1 and r["counts"]["reject_reasons"] == {"non-UTF-8 text in question": 1}
    assert next(iter_samples(tmp_path / "out"))["image"] == img


def test_synthetic_bad_size_is_a_clear_error(tmp_path):
    import pytest
    from vtdata.console import VtError

    m = write_manifest(tmp_path, [{"name": "s", "kind": "synthetic", "take": 2, "size": 600}])
    with pytest.raises(VtError, match="size must be"):
        build(m, tmp_path / "out")
