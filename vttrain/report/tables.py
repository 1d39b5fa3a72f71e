"""The first section of `vt report`, the page a researcher reads first: per source, the accuracy of the
latest full, low and think eval runs, the think run's resize ratio and the visual tokens each mode spends
(% of full resolution), judge errors apart; plus which model each run evaluated and which model each
training run started from. Sources are whatever the eval runs hold."""
from __future__ import annotations

import html
from pathlib import Path

from vttrain.report.examples import train_config
from vttrain.report.summary import summarize

MODES = ("full", "low", "think")


def latest_runs(con) -> dict[str, dict]:
    """mode -> the latest eval run of that mode with predictions: {run, policy, data}."""
    rows = con.execute("""SELECT r.mode, r.run, r.policy, r.data FROM eval_runs r
                          WHERE r.mode IN ('full', 'low', 'think')
                            AND EXISTS (SELECT 1 FROM eval_predictions p WHERE p.run = r.run)
                          ORDER BY r.started, r.run""").fetchall()
    return {mode: {"run": run, "policy": policy, "data": data} for mode, run, policy, data in rows}


def source_rows(con, picks: dict[str, dict]) -> list[dict]:
    """One row per source, then `all`: samples and, per picked mode, accuracy (`<mode>_acc`), resize ratio
    (`<mode>_resize`), visual tokens relative to full (`<mode>_tokens`), judge errors (`<mode>_errors`)."""
    per = {mode: {r["source"]: r for r in summarize(con, p["run"], by="source")} for mode, p in picks.items()}
    sources = sorted({s for rows in per.values() for s in rows if s != "all"}) + ["all"]
    out = []
    for src in sources:
        row = {"source": src, "samples": max((per[m].get(src, {}).get("samples") or 0) for m in per)}
        for mode in picks:
            r = per[mode].get(src, {})
            row |= {f"{mode}_acc": r.get("accuracy"), f"{mode}_resize": r.get("resize_ratio"),
                    f"{mode}_tokens": r.get("visual_tokens_rel"), f"{mode}_errors": r.get("judge_errors")}
        out.append(row)
    return out


def columns(modes: list[str]) -> tuple[list[tuple[str, str]], set[str]]:
    """The first page's table columns (key, label) and which of them are percentages."""
    cols = [("source", "source"), ("samples", "samples")]
    cols += [(f"{m}_acc", f"{m} acc %") for m in modes]
    cols += [("think_resize", "think resize %")] if "think" in modes else []
    cols += [(f"{m}_tokens", f"{m} tokens %") for m in modes]
    cols += [(f"{m}_errors", f"{m} judge errors") for m in modes]
    return cols, {k for k, _ in cols if k.endswith(("_acc", "_resize", "_tokens"))}


def models_html(picks: dict[str, dict], run_dirs: list[str]) -> str:
    """Which model each picked eval run evaluated and which model each training run started from."""
    items = [f"<li><b>{html.escape(m)}</b>: eval run <code>{html.escape(p['run'])}</code> of "
             f"<code>{html.escape(str(p['policy']))}</code></li>" for m, p in picks.items()]
    for d in run_dirs:
        base = train_config(Path(d)).get("model")
        if base:
            items.append(f"<li>training run <code>{html.escape(Path(d).name or d)}</code> started from "
                         f"<code>{html.escape(str(base))}</code></li>")
    return f"<ul>{''.join(items)}</ul>" if items else ""
