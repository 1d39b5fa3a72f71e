"""Hugging Face cards for what vt writes: `README.md` of a built or curated dataset (so that
`datasets.load_dataset(DIR)` gives the `train` and `validation` splits, and the hub shows what it is)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from vtdata import __version__

SPLITS = {"train": "train", "val": "validation"}  # vt's split name -> the hub's


def write_dataset_card(d: Path, meta: dict) -> Path:
    """`d/README.md` from the build.json content `meta` (and the schema of d's first shard)."""
    import datasets
    import pyarrow.parquet as pq

    by_split = meta.get("counts", {}).get("by_split", {})
    splits = [s for s in SPLITS if by_split.get(s)]
    front = {"license": meta.get("license") or "other", "pretty_name": meta.get("name"),
             "task_categories": ["visual-question-answering"], "tags": ["vt", "visionthink"],
             "configs": [{"config_name": "default",
                          "data_files": [{"split": SPLITS[s], "path": f"data/{s}-*.parquet"} for s in splits]}]}
    shards = sorted((d / "data").glob("*.parquet"))
    feats = datasets.Features.from_arrow_schema(pq.read_schema(shards[0])) if shards else {}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {meta.get('name')}", ""]
    if meta.get("description"):
        lines += [str(meta["description"]).strip(), ""]
    curated = meta.get("curated")
    lines += [f"Built by vt {__version__} (`vt {'curate' if curated else 'build-data'}`) from the manifest "
              f"`{Path(str(meta.get('manifest'))).name}` (sha256 `{str(meta.get('manifest_sha256'))[:16]}…`), "
              f"seed {meta.get('seed')}, license `{front['license']}` (from the manifest's `license:`).", "",
              "```python", "import datasets",
              "ds = datasets.load_dataset(\"path/to/this/directory\")   # splits: " + ", ".join(SPLITS[s] for s in splits),
              "```", "", "## Splits", "", "| split | rows |", "|---|---|"]
    lines += [f"| {SPLITS[s]} | {by_split[s]} |" for s in splits]
    by_source = meta.get("counts", {}).get("by_source") or {}
    if by_source:
        lines += ["", "## Sources", "", "| source | kept | duplicates | rejected |", "|---|---|---|---|"]
        lines += [f"| {k} | {v.get('kept', '')} | {v.get('duplicates', '')} | {v.get('rejected', '')} |"
                  for k, v in by_source.items()]
    if curated:
        lines += ["", "## Curation", "", "```json", json.dumps(curated, indent=2, default=str), "```"]
    lines += ["", "## Features", "", "| column | type |", "|---|---|"]
    lines += [f"| `{k}` | `{_type(v)}` |" for k, v in feats.items()]
    path = d / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _type(feature) -> str:
    import datasets
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return f"list<{_type(feature.feature)}>"
    return type(feature).__name__
