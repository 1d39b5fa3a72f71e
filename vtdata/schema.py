"""The sample schema of a built vt dataset, documented in one place.

A built dataset is a directory `DIR/` with `DIR/data/{train,val}-NNNNN.parquet` and `DIR/build.json`.
Every row is one question about one image:

| column        | type                      | meaning                                                       |
|---------------|---------------------------|---------------------------------------------------------------|
| id            | string                    | stable id: sha256(source + "\\0" + source row id)[:16]          |
| source        | string                    | the manifest's source name                                    |
| task          | string                    | `general` (answerable at low res) or `ocr` (fine detail)      |
| question      | string                    | the question, without any `<image>` placeholder               |
| answers       | list[string]              | accepted answers; the first is canonical                      |
| answer_type   | string                    | `open` / `number` / `mc` / `math` / `anls`                    |
| choices       | list[string] or null      | options of a multiple-choice question                         |
| image         | struct{bytes, path}       | the ORIGINAL encoded image bytes (HF `Image` feature)         |
| image_sha256  | string                    | sha256 of the image bytes                                     |
| width, height | int32                     | original size after EXIF orientation                          |
| low_width/_height, high_width/_height | int32 | the two views (vtdata.resolution.view_sizes)            |
| split         | string                    | `train` or `val`                                              |
| meta          | string (JSON)             | source-specific extras (labels of the release, paths, ...)    |

Curated sets (vt curate) add `use_tool: bool`. The parquet files carry the HF `features` metadata, so
`datasets.load_dataset("parquet", data_files=...)` returns `image` as PIL images.
"""
from __future__ import annotations

import hashlib

import pyarrow as pa

TASKS = ("general", "ocr")
ANSWER_TYPES = ("open", "number", "mc", "math", "anls")
SPLITS = ("train", "val")

COLUMNS = ["id", "source", "task", "question", "answers", "answer_type", "choices", "image", "image_sha256",
           "width", "height", "low_width", "low_height", "high_width", "high_height", "split", "meta"]
# columns of the DuckDB `samples` table (everything except the image bytes)
SAMPLE_COLUMNS = [c for c in COLUMNS if c != "image"]


def sample_id(source: str, source_row: object) -> str:
    """Stable id of a sample: the same source name and source row id always give the same id."""
    return hashlib.sha256(f"{source}\0{source_row}".encode()).hexdigest()[:16]


def features(extra: dict | None = None):
    """The `datasets.Features` of a built set (imports `datasets` lazily)."""
    import datasets

    s, i = datasets.Value("string"), datasets.Value("int32")
    feats = {"id": s, "source": s, "task": s, "question": s, "answers": datasets.List(s),
             "answer_type": s, "choices": datasets.List(s), "image": datasets.Image(), "image_sha256": s,
             "width": i, "height": i, "low_width": i, "low_height": i, "high_width": i, "high_height": i,
             "split": s, "meta": s}
    feats.update(extra or {})
    return datasets.Features(feats)


def arrow_schema(extra: dict | None = None) -> pa.Schema:
    """The pyarrow schema, with the HF features metadata so `image` reads back as an Image feature."""
    return features(extra).arrow_schema
