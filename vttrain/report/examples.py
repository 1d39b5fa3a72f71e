"""Example rollouts of `vt report`: a few rollouts of each training run's last logged step
(`rollouts.jsonl`) and of each think-mode eval run (`eval_predictions`), each with a thumbnail of both
views of its sample, the question, both assistant turns, the verdict and the reward.

The thumbnails are inline JPEG data URIs (the page needs no extra files for them). Both views are
scaled by the same factor, so the low view's thumbnail has a quarter of the high one's pixels, and
both are shown at the same width: what the model saw before and after the resize. The images come from
the dataset the run used (the sample id's row in the built or curated data dir); without that dataset
the rollouts are still listed, under a note saying why they have no pictures.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from PIL import Image

from vtdata.dataset import shard_files
from vtdata.console import VtError
from vtdata.resolution import view_of

THUMB = 160
"""Longer side of the high view's thumbnail, in pixels (the low view is scaled by the same factor)."""
PER_RUN = 4
"""Example rollouts per training or eval run."""
VIEW_COLUMNS = ["id", "question", "image", "low_width", "low_height", "high_width", "high_height"]


@dataclass
class Example:
    id: str
    turns: list[str]
    score: Optional[float]
    resized: Optional[bool]
    question: Optional[str] = None
    reward: Optional[float] = None
    penalty: Optional[float] = None
    status: Optional[str] = None          # an eval prediction's judge status ("ok" or why there is no verdict)
    views: list[str] = field(default_factory=list)  # the two <img> tags, once the dataset row is found


def read_jsonl(path: Path) -> list[dict]:
    """The JSON lines of a file; a line cut by a crash is skipped; no file gives []."""
    from vtdata.safeload import jsonl
    if not path.is_file():
        return []
    return [_plausible(obj) for _, obj, bad in jsonl(path, "run file") if bad is None and isinstance(obj, dict)]


MAX_LOGGED = 1e30  # a logged number beyond this (1e308, inf, nan) is a broken value, left out like a missing one


def _plausible(obj: dict) -> dict:
    """A log line without its numbers that cannot be plotted or summed (non-finite or beyond MAX_LOGGED)."""
    import math
    return {k: v for k, v in obj.items()
            if not (isinstance(v, float) and not (math.isfinite(v) and abs(v) <= MAX_LOGGED))}


def train_config(run_dir: Path) -> dict:
    """The resolved config `vt train` writes (vt_train_config.yaml); {} when missing or unreadable."""
    from vtdata.safeload import load_yaml
    try:
        cfg = load_yaml(run_dir / "vt_train_config.yaml", "saved train config")
    except VtError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def train_examples(run_dir: Path, per_run: int = PER_RUN) -> tuple[int, list[Example]]:
    """(last logged step, the first rollout of each of its groups, at most `per_run`)."""
    rows = read_jsonl(run_dir / "rollouts.jsonl")
    if not rows:
        return 0, []
    last = max(r.get("step", 0) for r in rows)
    seen, picked = set(), []
    for r in rows:
        if r.get("step") == last and r.get("group") not in seen and len(picked) < per_run:
            seen.add(r.get("group"))
            picked.append(Example(id=str(r.get("id")), turns=list(r.get("turns") or []), score=r.get("score"),
                                  resized=r.get("used_high"), reward=r.get("reward"), penalty=r.get("penalty")))
    return last, picked


def eval_examples(con, per_run: int = PER_RUN) -> list[tuple[str, Optional[str], list[Example]]]:
    """(run, data dir, examples) of each think-mode eval run: resized and direct answers alternating."""
    out = []
    for run, data in con.execute("SELECT run, data FROM eval_runs WHERE mode = 'think' ORDER BY started, run").fetchall():
        rows = con.execute("""SELECT sample_id, question, turns, score, resized, status FROM (
                                  SELECT *, row_number() OVER (PARTITION BY resized ORDER BY doc_id) AS k
                                  FROM eval_predictions WHERE run = ?)
                              ORDER BY k, resized DESC NULLS LAST, doc_id LIMIT ?""", [run, per_run]).fetchall()
        if rows:
            out.append((run, data, [Example(id=i, question=q, turns=list(t or []), score=s, resized=z, status=st)
                                    for i, q, t, s, z, st in rows]))
    return out


def _thumb(img: Image.Image, scale: float) -> str:
    w, h = img.size
    small = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def thumbnails(row: dict) -> list[str]:
    """The two <img> tags of a dataset row: the low and the high view, scaled alike, shown equally wide."""
    scale = min(1.0, THUMB / max(int(row["high_width"]), int(row["high_height"])))
    shown = max(1, round(int(row["high_width"]) * scale))
    tags = []
    for which in ("low", "high"):
        img = view_of(row, which)
        size = f"{img.size[0]}×{img.size[1]}"
        tags.append(f"<img class='thumb' src='{_thumb(img, scale)}' width='{shown}' "
                    f"alt='{which} view {size}' title='{which} view, {size} px'>")
    return tags


def find_rows(data_dir: str, ids: set[str]) -> dict[str, dict]:
    """The rows of a built set with these ids (VIEW_COLUMNS, `image` as encoded bytes). Only the id
    column is read everywhere; the images only of the row groups that hold a wanted id."""
    import pyarrow.parquet as pq

    out: dict[str, dict] = {}
    for f in shard_files(data_dir):
        pf = pq.ParquetFile(f)
        cols = [c for c in VIEW_COLUMNS if c in pf.schema_arrow.names]
        for g in range(pf.num_row_groups):
            hits = [i for i, x in enumerate(pf.read_row_group(g, columns=["id"]).column("id").to_pylist())
                    if x in ids]
            for row in pf.read_row_group(g, columns=cols).take(hits).to_pylist() if hits else []:
                if isinstance(row.get("image"), dict):
                    row["image"] = row["image"]["bytes"]
                out[row["id"]] = row
            if len(out) == len(ids):
                return out
    return out


def attach_views(examples: list[Example], data_dir: Optional[str]) -> Optional[str]:
    """Fill each example's views and missing question from its dataset row; returns why not, if not."""
    if not examples:
        return None
    if not data_dir:
        return "the run does not name its dataset"
    try:
        rows = find_rows(data_dir, {e.id for e in examples})
    except (VtError, OSError, ValueError, KeyError) as err:  # gone, moved, not a built set, a damaged shard
        return f"dataset {data_dir}: {err}"
    missing = 0
    for e in examples:
        row = rows.get(e.id)
        if row is None:
            missing += 1
            continue
        e.question = e.question or row.get("question")
        try:
            e.views = thumbnails(row)
        except (VtError, OSError, ValueError, KeyError) as err:
            return f"sample {e.id} of {data_dir}: {err}"
    return f"{missing} of these samples not in {data_dir}" if missing else None


def _verdict(e: Example) -> str:
    if e.status not in (None, "ok"):
        return f"no verdict (judge {e.status})"
    if e.score is None:
        return "no verdict"
    return f"{'correct' if e.score >= 1 else 'wrong' if e.score <= 0 else 'partly'} ({e.score:g})"


def cell(x) -> str:
    """A value as the report shows it: yes/no, – for none, small floats (a learning rate) in 3 significant
    digits, other floats with 2 decimals."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.3g}" if x and abs(x) < 0.01 else f"{x:.2f}"
    return str(x)


def render(title: str, examples: list[Example], note: Optional[str]) -> str:
    """One block of examples: a caption, the note when the pictures are missing, one row per rollout."""
    if not examples:
        return ""
    out = [f"<p>{html.escape(title)}</p>"]
    if note:
        out.append(f"<p class='missing'>no thumbnails: {html.escape(note)}</p>")
    out.append("<table class='examples'><tr><th>views (low, high)</th><th>sample and question</th>"
               "<th>assistant turns</th><th>verdict</th><th>resized</th><th>penalty</th><th>reward</th></tr>")
    for e in examples:
        turns = "".join(f"<div class='turn'><b>turn {k}</b> {html.escape(t)}</div>"
                        for k, t in enumerate(e.turns, 1)) or "<i>no turns</i>"
        out.append(f"<tr><td>{''.join(e.views)}</td>"
                   f"<td><code>{html.escape(e.id)}</code><br>{html.escape(e.question or '')}</td>"
                   f"<td>{turns}</td><td>{html.escape(_verdict(e))}</td><td>{cell(e.resized)}</td>"
                   f"<td>{cell(e.penalty)}</td><td>{cell(e.reward)}</td></tr>")
    return "".join(out) + "</table>"


def train_block(run_dir: Path) -> str:
    """The example rollouts of one training run (empty when it logged none)."""
    step, examples = train_examples(run_dir)
    note = attach_views(examples, train_config(run_dir).get("data_dir"))
    return render(f"{run_dir.name}, step {step}", examples, note)


def eval_blocks(con) -> str:
    """The example rollouts of every think-mode eval run."""
    parts = []
    for run, data, examples in eval_examples(con):
        parts.append(render(f"eval run {run}", examples, attach_views(examples, data)))
    return "".join(parts)
