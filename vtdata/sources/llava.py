"""`kind: llava` — LLaVA-style JSON (a list, or JSONL) of {id, image, conversations: [{from: human,
value: "<image>\\nQ"}, {from: gpt, value: A}, ...]}. Every human/gpt pair becomes one row whose source
row id is `<id>#<pair index>`; `image` is relative to `image_root` (default: the JSON's directory)."""
from __future__ import annotations


from vtdata.console import VtError
from vtdata.safeload import jsonl, load_json
from vtdata.sources import OUTSIDE_KEY, image_root, image_value, require_file

KEYS = {"path": "the LLaVA .json (list) or .jsonl file", "image_root": "directory the image paths start from"} | OUTSIDE_KEY
REQUIRED = ("path",)


def open(spec: dict, ctx):  # noqa: A001
    path = require_file(spec["path"], ctx.base_dir, "llava file")
    root = image_root(spec, ctx, default=path.parent)
    if path.suffix == ".jsonl":  # a bad line becomes a rejected row with its line number and reason
        recs = [obj if bad is None else {"_bad_line": f"{bad} (line {n})"} for n, obj, bad in jsonl(path, "llava file")]
    else:
        recs = load_json(path, "llava file")
    if not isinstance(recs, list):
        raise VtError(f"llava file {path} must hold a JSON list of records")
    index = []  # (record, pair) for every human/gpt pair
    for r, rec in enumerate(recs):
        conv = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(conv, list) or len(conv) < 2:
            index.append((r, -1))
            continue
        index.extend((r, k) for k in range(len(conv) // 2))
        if len(conv) % 2:  # a last turn without its answer: a row too, rejected, so the counts add up
            index.append((r, len(conv) // 2))
    return _Llava(recs, index, root)


class _Llava:
    def __init__(self, recs, index, root):
        self.recs, self.index, self.root = recs, index, root

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        r, k = self.index[i]
        rec = self.recs[r]
        rid = rec.get("id", r) if isinstance(rec, dict) else r
        if k < 0:
            bad = rec.get("_bad_line") if isinstance(rec, dict) else None
            return {"source_row": f"{rid}", "error": bad or "record has no human/gpt conversation pair"}
        conv = rec["conversations"]
        if 2 * k + 1 >= len(conv):
            return {"source_row": f"{rid}#{k}", "error": "conversation ends without an answer (last turn unpaired)"}
        q, a = conv[2 * k], conv[2 * k + 1]
        if not (isinstance(q, dict) and isinstance(a, dict) and q.get("from") == "human" and a.get("from") == "gpt"):
            return {"source_row": f"{rid}#{k}", "error": f"conversation pair is not human then gpt (pair {k})"}
        img = rec.get("image")
        try:
            img = image_value(img, self.root)
        except ValueError as err:
            return {"source_row": f"{rid}#{k}", "error": str(err)}
        meta = {key: v for key, v in rec.items() if key not in ("conversations", "image")}
        return {"source_row": f"{rid}#{k}", "question": q.get("value"), "answers": a.get("value"), "image": img,
                "meta": meta}
