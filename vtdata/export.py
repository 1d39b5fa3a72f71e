"""`vt export`: a built (or curated) set in other trainers' formats.

--format verl   the VisionThink release's two loaders, per split (release commit 42afd8c3,
                verl/utils/dataset/rl_dataset.py `RLHFDataset` and multimodal_dataset.py `MultiModalDataset`):
                `OUT/{split}.parquet` for RLHFDataset (`images` a list of one {bytes, path}) and
                `OUT/{split}/`, a `datasets.save_to_disk` dir for MultiModalDataset (`images` one HF Image:
                that loader resizes `row["images"]` directly). Columns: images, problem ("<image>\n" +
                question), original_answer, answer, ground_truth (what the release's reward managers read;
                RLHFDataset sets it only when `reward_model` is absent), solution, data_source
                (open_source_require_high | open_source_no_require_high from use_tool, or the release's own
                when not curated), doc_id, info {tgt_width, tgt_height, use_tool} (= the low view; the fork
                doubles it for the high view), use_tool (a curated set's own; else the release's
                info.use_tool; else task == ocr), prompt (chat: system = agent prompt, user = agent
                instruction + problem), reward_model, vt_info {index, split, answers, answer_type, task,
                source}. There is no `extra_info` column: the release's reward managers run
                `extra_info = self.extra_info.update(row_extra_info)` (None) for any non-empty one.
--format jsonl  `OUT/{split}.jsonl` + `OUT/images/<id>.<ext>` (original bytes); every vt column except
                the image bytes, with `image` the relative path. `kind: jsonl` reads it back.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

import pyarrow as pa

from vtdata.config import command
from vtdata.console import VtError, info, progress_bar
from vtdata.dataset import count_rows, iter_samples
from vtdata.outdir import check_out, publish, staging
from vtdata.prompts import load
from vtdata.shards import ROW_GROUP, write_shard

FORMATS = ("verl", "jsonl")
REQUIRE_HIGH_LABELS = ("open_source_require_high", "open_source_no_require_high")  # the release's data_source
_MAGIC = [(b"\xff\xd8\xff", "jpg"), (b"\x89PNG", "png"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"II*\x00", "tif"),
          (b"MM\x00*", "tif")]


@dataclass
class ExportConfig:
    """Export a built set for other trainers: the VisionThink/verl parquet + save_to_disk schema, or JSONL + images."""

    data: str = field(metadata={"argument": True, "flags": ["--data"]})
    """A dataset built by `vt build-data` (or written by `vt curate`)."""
    out: str = field(metadata={"flags": ["-o"]})
    """Output directory (replaced only when the export completes)."""
    format: Literal["verl", "jsonl"] = field(default="verl", metadata={"flags": ["-f"]})
    """verl (VisionThink release schema) or jsonl (JSONL + image files)."""
    force: bool = False
    """Replace a non-empty --out that vt cannot prove it wrote (no .vt-output listing every path in it:
    a foreign directory, or an output of a vt older than that marker), deleting everything in it."""

    def __post_init__(self):
        if self.format not in FORMATS:
            raise VtError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")


def _ext(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((e for m, e in _MAGIC if data.startswith(m)), "bin")


def _use_tool(row: dict, meta: dict) -> bool:
    """The row's `use_tool` (curated), else the release's `info.use_tool`, else whether the task is OCR."""
    if row.get("use_tool") is not None:
        return bool(row["use_tool"])
    info_ = meta.get("info") if isinstance(meta.get("info"), dict) else {}
    if info_.get("use_tool") is not None:
        return bool(info_["use_tool"])
    return row["task"] == "ocr"


def verl_row(row: dict, system: str, user: str, index: int) -> dict:
    """One row in the VisionThink/verl schema."""
    meta = json.loads(row.get("meta") or "{}")
    problem = "<image>\n" + row["question"]
    if row.get("choices"):
        problem += "\nOptions: " + ", ".join(row["choices"])
    use_tool = _use_tool(row, meta)
    source = meta.get("data_source")
    if not source or (row.get("use_tool") is not None and source in REQUIRE_HIGH_LABELS):
        source = REQUIRE_HIGH_LABELS[0 if use_tool else 1]  # a curated label wins over the release's
    answer = row["answers"][0]
    return {"images": [{"bytes": row["image"], "path": None}], "problem": problem, "original_answer": answer,
            "answer": answer, "ground_truth": answer, "solution": f"<answer> {answer} </answer>", "data_source": source,
            "doc_id": row["id"], "use_tool": use_tool,
            "info": {"tgt_width": row["low_width"], "tgt_height": row["low_height"], "use_tool": use_tool},
            "prompt": [{"role": "system", "content": system}, {"role": "user", "content": user.format(question=problem)}],
            "reward_model": {"style": "model", "ground_truth": answer},
            "vt_info": {"index": index, "split": row["split"], "answers": list(row["answers"]),
                        "answer_type": row["answer_type"], "task": row["task"], "source": row["source"]}}


def _verl_features(image_list: bool):
    """The parquet file's schema (image_list: `images` a list, RLHFDataset) or the save_to_disk dir's (one Image)."""
    import datasets  # slow to import: see vtdata/__init__.py

    s = datasets.Value("string")
    return datasets.Features({
        "images": datasets.List(datasets.Image()) if image_list else datasets.Image(), "problem": s,
        "original_answer": s, "answer": s, "ground_truth": s, "solution": s,
        "data_source": s, "doc_id": s, "use_tool": datasets.Value("bool"),
        "info": {"tgt_width": datasets.Value("int32"), "tgt_height": datasets.Value("int32"),
                 "use_tool": datasets.Value("bool")},
        "prompt": datasets.List({"role": s, "content": s}),
        "reward_model": {"style": s, "ground_truth": s},
        "vt_info": {"index": datasets.Value("int64"), "split": s, "answers": datasets.List(s),
                    "answer_type": s, "task": s, "source": s}})


def export(cfg: ExportConfig) -> dict:
    """Write cfg.data in cfg.format to cfg.out; returns rows per split."""
    if not count_rows(cfg.data):  # not built: VtError
        raise VtError(f"{cfg.data} has no rows to export (every row was rejected? see the `rejects` table)")
    out = Path(cfg.out)
    out = check_out(out, "export.json", "a vt export", keep=(cfg.data,), force=cfg.force)
    with staging(out) as tmp:
        counts = (_export_verl if cfg.format == "verl" else _export_jsonl)(cfg.data, tmp)
        (tmp / "export.json").write_text(json.dumps({"format": cfg.format, "source": str(Path(cfg.data).resolve()),
                                                     "rows": counts}, indent=2) + "\n")
        publish(tmp, out)
    return counts


def _export_verl(data_dir: str, tmp: Path) -> dict:
    """tmp/{split}.parquet and the same as a save_to_disk dir tmp/{split}/; returns rows per split."""
    import datasets  # slow to import: see vtdata/__init__.py

    system, user = load("agent_system"), load("agent_user")
    feats, disk_feats = _verl_features(image_list=True), _verl_features(image_list=False)
    counts = {}
    for split in ("train", "val"):
        n = count_rows(data_dir, split)
        if not n:
            continue
        path = tmp / f"{split}.parquet"
        with progress_bar(f"export {split}", n) as bar:
            write_shard(path, feats.arrow_schema, _verl_parts(data_dir, split, system, user, feats.arrow_schema, bar),
                        digest=False)
        was_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            ds = datasets.Dataset.from_parquet(str(path), features=feats, cache_dir=str(tmp / ".cache"))
            ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
            ds = ds.map(lambda r: {"images": r["images"][0]}, features=disk_feats, desc=None)
            ds.save_to_disk(str(tmp / split))
            del ds
        finally:
            if was_on:
                datasets.enable_progress_bars()
        counts[split] = n
    shutil.rmtree(tmp / ".cache", ignore_errors=True)
    return counts


def _verl_parts(data_dir: str, split: str, system: str, user: str, schema, bar):
    """The split's rows in the verl schema, ROW_GROUP at a time."""
    rows = (verl_row(row, system, user, i) for i, row in enumerate(iter_samples(data_dir, split)))
    while batch := list(islice(rows, ROW_GROUP)):
        yield pa.Table.from_pylist(batch, schema=schema)
        bar.advance(len(batch))


def _export_jsonl(data_dir: str, tmp: Path) -> dict:
    """tmp/{split}.jsonl + tmp/images/<id>.<ext> (the original bytes); returns rows per split."""
    (tmp / "images").mkdir()
    counts = {}
    for split in ("train", "val"):
        n = 0
        with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in iter_samples(data_dir, split):
                data = row.pop("image")
                rel = f"images/{row['id']}.{_ext(data)}"
                (tmp / rel).write_bytes(data)
                row["image"] = rel
                row["meta"] = json.loads(row.get("meta") or "{}")
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                n += 1
        if n:
            counts[split] = n
        else:
            (tmp / f"{split}.jsonl").unlink()
    return counts


def run(cfg: ExportConfig) -> dict:
    counts = export(cfg)
    info(f"exported {', '.join(f'{k} {v}' for k, v in counts.items())} rows as {cfg.format} to {cfg.out}")
    return counts


export_command = command(ExportConfig, run)
