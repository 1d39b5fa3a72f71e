"""`vt init-model`: write a model checkpoint offline: `tiny` and `random` (vttrain.models.build) or the
`mini` warm start (vttrain.models.warmstart), into OUT through vtdata.outdir (staged, then published)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vtdata.config import command
from vtdata.console import VtError, info
from vtdata.outdir import check_out, publish, staging
from vttrain.models.build import INIT_FILE, init_random, init_tiny


@dataclass
class InitModelConfig:
    """Build a model checkpoint offline: `vt init-model tiny|mini OUT` or `vt init-model random --config FILE OUT`."""

    kind: Literal["tiny", "mini", "random"] = field(metadata={"argument": True})
    """`tiny` (a ~1 MB random Qwen2.5-VL for CPU tests), `mini` (a ~1 M-parameter Qwen2.5-VL warm-started
    by SFT on the miniature task, cached; vttrain/models/warmstart.py) or `random` (a real architecture size from
    --config, random weights)."""
    out: Path = field(metadata={"argument": True, "flags": ["--out", "-o"]})
    """Output checkpoint directory."""
    config: Path | None = None
    """For `random`: a model YAML, e.g. manifests/models/qwen2.5-vl-3b.yaml (not allowed for `tiny`)."""
    seed: int = 0
    """Seed for the tokenizer corpus and the weights."""
    save_weights: bool = False
    """For `random`: write bf16 safetensors (e.g. for `vllm serve`) instead of drawing the weights at load."""
    steps: int | None = None
    """For `mini`: SFT steps of the warm start (default: vttrain.models.warmstart_data.MiniConfig.steps)."""
    tools: str = "resize"
    """For `mini`: the tools its agent trajectories call: resize | zoom | resize,zoom (vtdata/protocol/tools.py). A build
    with zoom learns where the grey box is from images with the location cue (train it on
    manifests/sufficiency-zoom.yaml) and a turn-1 sentence that names the box's quadrant."""
    force: bool = False
    """Replace a non-empty OUT that vt cannot prove it wrote (no .vt-output listing every path in it:
    a foreign directory, or a model of a vt older than that marker), deleting everything in it."""

    def __post_init__(self):
        if self.kind not in ("tiny", "mini", "random"):
            raise VtError(f"unknown model kind {self.kind!r}: use `tiny`, `mini` or `random`")
        if self.kind != "mini" and self.steps is not None:
            raise VtError("--steps applies to `vt init-model mini` only")
        from vtdata.protocol.tools import selection
        if self.kind != "mini" and selection(self.tools) != ("resize",):
            raise VtError("--tools applies to `vt init-model mini` only")
        if self.steps is not None and self.steps < 1:
            raise VtError(f"--steps must be at least 1, got {self.steps}")
        if self.kind == "mini" and (self.config is not None or self.save_weights):
            raise VtError("`vt init-model mini` takes no --config/--save-weights (its sizes are fixed)")
        if self.kind == "tiny" and self.config is not None:
            raise VtError("`vt init-model tiny` takes no --config (its sizes are fixed); use `random --config`")
        if self.kind == "random" and self.config is None:
            raise VtError("`vt init-model random` needs --config (e.g. manifests/models/qwen2.5-vl-3b.yaml)")


def init_model(cfg: InitModelConfig) -> Path:
    """Write the checkpoint into a temp dir and put it in place of OUT (vtdata.outdir: an OUT vt did not
    write is refused unless --force); returns its directory."""
    out = Path(cfg.out)
    if cfg.kind == "mini":
        from vttrain.models.warmstart import init_mini, is_build
        from vttrain.models.warmstart_data import MiniConfig
        from vtdata.protocol.tools import selection
        mini = MiniConfig(seed=cfg.seed, tools=selection(cfg.tools))
        if cfg.steps is not None:
            mini.steps = cfg.steps
        if is_build(out, mini.key()):
            return out  # this very model is there already
    out = check_out(out, INIT_FILE, "a vt model", force=cfg.force)
    with staging(out) as tmp:
        if cfg.kind == "mini":
            init_mini(tmp, mini)
        elif cfg.kind == "tiny":
            init_tiny(tmp, seed=cfg.seed)
        else:
            init_random(cfg.config, tmp, seed=cfg.seed, save_weights=cfg.save_weights)
        publish(tmp, out)
    return out


def run(cfg: InitModelConfig) -> Path:
    path = init_model(cfg)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    info(f"wrote {cfg.kind} model to {path} ({size / 1e6:.1f} MB)")
    return path


init_model_command = command(InitModelConfig, run)
