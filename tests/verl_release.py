"""What the VisionThink release's data path does to an exported row, written from its reading (not copied).

Followed: github.com/dvlab-research/VisionThink at commit 42afd8c34a4efffeb9811368469d3d890efdedf3,
- verl/utils/dataset/rl_dataset.py, `RLHFDataset` (parquet files): pandas.read_parquet; the `prompt` chat
  goes through the tokenizer's chat template and each `<image>` in it becomes the image's tokens; every
  item of `row.pop("images")` is opened with PIL from its `bytes` when it is a dict and then its
  `.width/.height` are read; `ground_truth = row.pop(answer_key)` only when `reward_model` is absent;
  `row["index"] = row.get("extra_info", {}).get("index", 0)`.
- verl/utils/dataset/multimodal_dataset.py, `MultiModalDataset` (a save_to_disk dir): `row["images"]` is
  one PIL image, resized to `info.tgt_width x info.tgt_height` (doubled when `info.use_tool`; both >= 28);
  `ground_truth = row.pop("original_answer")` for the general-QA reward functions.
- verl/workers/reward_manager/{naive,naive_multithreads,naive_multithreads_tool,verifier_reward_manager}.py:
  `ground_truth = batch["ground_truth"]`, `extra_info = batch.get("extra_info")`, then
  `extra_info = self.extra_info.update(extra_info) if extra_info else self.extra_info` (None for any
  non-empty row value) and `extra_info[...]` / `extra_info.get(...)`; with `supervise_tool_label`,
  `batch["use_tool"]`.
- verl/utils/reward_score/__init__.py: `data_source` must be one of the general-QA names below.
"""
from __future__ import annotations

import io

GENERAL_QA_SOURCES = ("open_source_no_require_high", "open_source_require_high", "open_source", "open_source_rulebase")


def _reward_step(row: dict, config_extra_info: dict) -> dict:
    """The reward manager's per-item reads; returns the extra_info compute_score receives."""
    ground_truth = row["ground_truth"]
    assert isinstance(ground_truth, str) and ground_truth
    assert row["data_source"] in GENERAL_QA_SOURCES, row["data_source"]
    extra_info = row.get("extra_info", None)
    extra_info = config_extra_info.update(extra_info) if extra_info else config_extra_info  # the release's line
    if config_extra_info.get("supervise_tool_label"):
        extra_info["use_tool"] = row["use_tool"]
    assert extra_info.get("general_qa_reward_fn") == "general_qa_tool"
    return extra_info


def rlhf_dataset_item(parquet_path, i: int, config_extra_info: dict) -> dict:
    """One RLHFDataset.__getitem__ (the data part) followed by the reward step."""
    import pandas as pd
    from PIL import Image

    row = pd.read_parquet(parquet_path).iloc[i].to_dict()
    chat = row.pop("prompt")
    assert any("<image>" in m["content"] for m in chat), "no <image> placeholder in the prompt"
    images = []
    for image in row.pop("images"):
        if isinstance(image, dict):
            image = Image.open(io.BytesIO(image["bytes"]))
        images.append((image.width, image.height))
    if "reward_model" not in row:
        row["ground_truth"] = row.pop("answer")
    row["index"] = row.get("extra_info", {}).get("index", 0)
    _reward_step(row, config_extra_info)
    return {"images": images, "row": row}


def multimodal_dataset_item(disk_dir, i: int, config_extra_info: dict) -> dict:
    """One MultiModalDataset.__getitem__ (data part, tool_call on) followed by the reward step."""
    import datasets

    row = datasets.load_from_disk(str(disk_dir))[i]
    image, info = row["images"], row["info"]
    w, h = info["tgt_width"], info["tgt_height"]
    if info["use_tool"]:
        w, h = w * 2, h * 2
    image = image.resize((w, h))
    assert image.width >= 28 and image.height >= 28
    row["ground_truth"] = row.pop("original_answer")
    row.pop("solution")
    row["index"] = row.get("doc_id", 0)
    _reward_step(row, config_extra_info)
    return {"image": image.size, "row": row}
