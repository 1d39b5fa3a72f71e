"""The warm start's model card (`vt init-model mini`: OUT/README.md), written by vttrain.models.warmstart._train."""
from __future__ import annotations

from pathlib import Path

from vttrain.models.warmstart_data import MINI_TEXT, UNSEEN, MiniConfig


def write_card(out: Path, cfg: MiniConfig, steps: int, checks: list[dict], calls: dict, said: dict | None = None) -> Path:
    """`out/README.md`: what the warm start is, its held-out accuracy and its per-source call probability."""
    last = checks[-1] if checks else {}
    sources = [k for k in calls if not k.endswith("_mass")]
    spread = max(calls[k] for k in sources) - min(calls[k] for k in sources)
    lines = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text", "tags: [vt, visionthink, qwen2_5_vl]",
             "---", "", "# vt mini warm start", "",
             f"A {MINI_TEXT['num_hidden_layers']}-layer Qwen2.5-VL (hidden {MINI_TEXT['hidden_size']}) trained from "
             f"scratch by `vt init-model mini` (SFT, {steps} steps, seed {cfg.seed}) on vt's image-decision task "
             "(`family: sufficiency`). It answers from whichever view it has and calls `resize_image` at the same "
             "rate whatever the question or image: WHEN to resize is left to GRPO (`vt train`)."
             + (f" Asked for the box pattern on a view that hides it (the box looks flat), it answers `{UNSEEN}` "
                "instead of guessing (`abstain`)." if cfg.abstain else ""), "",
             "| source | held-out accuracy (view) | P(call) at the decision token (low view) |", "|---|---|---|"]
    from vttrain.models.warmstart_check import CHECK_VIEW
    for k in sources:
        acc = last.get(k)
        lines.append(f"| {k} | {'n/a' if acc is None else f'{acc:.2f}'} ({CHECK_VIEW.get(k, '?')}) | {calls[k]:.3f} |")
    lines += ["", f"Spread of P(call) across sources: {spread:.3f} (untaught: should be < 0.05). P(call) sums over turn 1's "
              f"think sentences (the box question: striped or flat, which the model reads off the view) the sentence's "
              f"probability times the choice's; the sentences hold at least {calls['sentence_mass']:.3f} of turn 1's "
              f"probability, the two choice tokens at least {calls['choice_mass']:.3f} of the next token's.", ""]
    if said:
        lines += ["What turn 1 says, per source (P(sentence | source), held-out low views): the box sentence is the "
                  "model's reading of the view, taught in SFT from the view's contrast (`VISIBLE`); on this data it "
                  "coincides with the source (a fine box's low view looks flat, a coarse one's striped), so GRPO learns "
                  "which action follows that perception, not the perception itself.", "",
                  "| source | " + " | ".join(sorted({t for v in said.values() for t in v})) + " |",
                  "|---|" + "---|" * len({t for v in said.values() for t in v})]
        for k, v in said.items():
            lines.append(f"| {k} | " + " | ".join(f"{v.get(t, 0.0):.3f}" for t in sorted({t for v in said.values()
                                                                                         for t in v})) + " |")
        lines.append("")
    if "zoom_box" in last:
        lines += [f"Zoom box check: {last['zoom_box']:.2f} of {cfg.check_size} held-out fine questions get the quadrant "
                  "holding the grey box from the model's own turn-1 sentence and the zoom call after it. Its images "
                  "carry the location cue (`location_cue`, manifests/sufficiency-zoom.yaml).", ""]
    from vttrain.models.warmstart_check import unpassed
    failed = unpassed(checks, cfg)
    if failed:
        lines += [f"**Not passed:** the last held-out check ({', '.join(f'{k} {v:.2f}' for k, v in failed.items())}) "
                  f"is below the build's {cfg.check_accuracy}: GRPO from this warm start may not learn what the "
                  "miniature shows.", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path
