"""vt export: the VisionThink/verl schema (parquet + save_to_disk) and JSONL + images that build-data reads back."""
import json

import pytest

from build_helpers import build, vt, write_manifest
from vtdata.dataset import iter_samples
from vtdata.console import VtError
from vtdata.export import ExportConfig, export, verl_row
from vtdata.prompts import load


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    m = write_manifest(d, [{"name": "g", "kind": "synthetic", "task": "general", "take": 6},
                           {"name": "o", "kind": "synthetic", "task": "ocr", "take": 6}], val_fraction=0.34)
    build(m, d / "set")
    return d


def test_verl_schema(built):
    import datasets

    counts = export(ExportConfig(str(built / "set"), str(built / "verl"), "verl"))
    assert counts == {"train": 8, "val": 4}
    src = {r["id"]: r for r in iter_samples(built / "set")}
    for split in ("train", "val"):
        disk = datasets.load_from_disk(str(built / "verl" / split))
        pq_ = datasets.load_dataset("parquet", data_files=str(built / "verl" / f"{split}.parquet"), split="train")
        assert len(disk) == len(pq_) == counts[split]
        for row in disk:
            s = src[row["doc_id"]]
            assert row["images"].size == (s["width"], s["height"])  # the original image
            assert row["problem"].startswith("<image>") and s["question"] in row["problem"]
            assert row["original_answer"] == s["answers"][0] == row["reward_model"]["ground_truth"]
            assert row["info"]["tgt_width"] == s["low_width"] and row["info"]["tgt_height"] == s["low_height"]
            assert row["use_tool"] == row["info"]["use_tool"] == (s["task"] == "ocr")
            assert row["data_source"] == ("open_source_require_high" if s["task"] == "ocr" else "open_source_no_require_high")
            assert [m["role"] for m in row["prompt"]] == ["system", "user"]
            assert row["prompt"][0]["content"] == load("agent_system")
            assert row["prompt"][1]["content"].endswith(row["problem"])
            assert row["vt_info"]["split"] == split == s["split"] and "extra_info" not in row


def test_verl_export_feeds_the_release_loaders_and_reward_step(built):
    """Both release loaders and its reward manager, as they are (tests/verl_release.py), consume the export."""
    from verl_release import multimodal_dataset_item, rlhf_dataset_item

    out = built / "verl-release"
    export(ExportConfig(str(built / "set"), str(out), "verl"))
    src = {r["id"]: r for r in iter_samples(built / "set")}
    for split, n in (("train", 8), ("val", 4)):
        for i in range(n):
            cfg = {"general_qa_reward_fn": "general_qa_tool", "supervise_tool_label": True}
            item = rlhf_dataset_item(out / f"{split}.parquet", i, cfg)
            s = src[item["row"]["doc_id"]]
            assert item["images"] == [(s["width"], s["height"])]
            assert item["row"]["ground_truth"] == s["answers"][0]
            assert "index" not in cfg and cfg["use_tool"] == (s["task"] == "ocr")  # config not polluted by rows
            mm = multimodal_dataset_item(out / split, i, {"general_qa_reward_fn": "general_qa_tool"})
            low = (src[mm["row"]["doc_id"]]["low_width"], src[mm["row"]["doc_id"]]["low_height"])
            assert mm["image"] == (low if not mm["row"]["use_tool"] else (2 * low[0], 2 * low[1]))


def test_jsonl_round_trips_through_build_data(built):
    export(ExportConfig(str(built / "set"), str(built / "j"), "jsonl"))
    lines = [json.loads(x) for x in (built / "j" / "train.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all((built / "j" / x["image"]).exists() for x in lines)
    m = write_manifest(built / "j", [{"name": "back", "kind": "jsonl", "path": "train.jsonl"},
                                     {"name": "back-val", "kind": "jsonl", "path": "val.jsonl"}])
    build(m, built / "back")
    orig = {(r["question"], tuple(r["answers"]), r["image_sha256"], r["answer_type"]) for r in iter_samples(built / "set")}
    again = {(r["question"], tuple(r["answers"]), r["image_sha256"], r["answer_type"]) for r in iter_samples(built / "back")}
    assert again == orig


def test_export_errors(built, tmp_path):
    with pytest.raises(VtError, match="not a built vt dataset"):
        export(ExportConfig(str(tmp_path), str(tmp_path / "o"), "verl"))
    m = write_manifest(tmp_path, [{"name": "g", "kind": "synthetic", "task": "general", "take": 0}])
    build(m, tmp_path / "empty")
    with pytest.raises(VtError, match="no rows to export"):
        export(ExportConfig(str(tmp_path / "empty"), str(tmp_path / "o"), "jsonl"))
    with pytest.raises(VtError, match="--format"):
        export(ExportConfig(str(built / "set"), str(tmp_path / "o"), "tfrecord"))
    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(VtError, match="is a file"):
        export(ExportConfig(str(built / "set"), str(tmp_path / "afile"), "jsonl"))
    assert (tmp_path / "afile").read_text() == "keep me"
    with pytest.raises(VtError, match="which this command needs"):  # the built set itself (the overlap rule)
        export(ExportConfig(str(built / "set"), str(built / "set"), "jsonl"))
    r = vt("export", built / "set", "--format", "jsonl", "--out", tmp_path / "cli")
    assert r.returncode == 0 and (tmp_path / "cli" / "val.jsonl").exists()
    assert json.loads((tmp_path / "cli" / "export.json").read_text())["rows"] == {"train": 8, "val": 4}


def test_verl_data_source_follows_a_curated_label_over_the_release():
    row = {"id": "x", "question": "q", "answers": ["a"], "answer_type": "open", "task": "general", "source": "s",
           "split": "train", "image": b"", "low_width": 56, "low_height": 56, "choices": None,
           "meta": '{"data_source": "open_source_no_require_high", "info": {"use_tool": false}}'}
    assert verl_row(row, "", "{question}", 0)["data_source"] == "open_source_no_require_high"  # as released
    r = verl_row(dict(row, use_tool=True), "", "{question}", 0)  # vt curate labelled it needs_high
    assert r["use_tool"] is True and r["info"]["use_tool"] is True and r["data_source"] == "open_source_require_high"
    other = dict(row, use_tool=True, meta='{"data_source": "chartqa"}')
    assert verl_row(other, "", "{question}", 0)["data_source"] == "chartqa"  # not a require-high label: kept
