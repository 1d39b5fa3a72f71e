"""bench/gpu_check.sh, the one-command GPU check: its syntax, and (DRY=1, on CPU) that every vt command and
flag it would run exists: the `vt train` lines go through `vt train --dry-run` with the very same flags,
the other vt lines' flags are checked against their `--help`."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
VT = f"{sys.executable} -m vt"   # the worktree's vt (the script runs from the repo root)


def test_the_script_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _dry(tmp_path, gpu_gb: int, stages: str):
    env = dict(os.environ, DRY="1", GPU_GB=str(gpu_gb), STAGES=stages, VT=VT, PY=sys.executable,
               HF_HUB_OFFLINE="1")
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "w")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _help_flags(command: str) -> set:
    from vt.cli import app
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})
    assert res.exit_code == 0, res.output
    return set(re.findall(r"(--[a-z][a-z-]*)", res.output))


def _would_run(out: str) -> list[list[str]]:
    return [shlex.split(line.split("would run: ", 1)[1]) for line in out.splitlines() if line.startswith("would run: ")]


def test_dry_run_on_one_80gb_gpu_checks_every_command(tmp_path):
    out = _dry(tmp_path, 80, "3b mini")
    # the recipe's full fine-tune cannot fit one 80 GB GPU: the dry-run says so and the check falls back to LoRA
    assert "cannot fit" in out and "--use_peft true" in out
    assert out.count("fits: yes") == 2 and "model Qwen/Qwen2.5-VL-3B-Instruct" in out
    assert re.search(r"batch: 1 per GPU x 1 GPUs x 16 accumulation = 16 completions per optimiser step \(1 prompts", out)
    cmds = _would_run(out)
    prefix = shlex.split(VT)
    vt_cmds = [c[len(prefix):] for c in cmds if c[:len(prefix)] == prefix]
    assert [c[0] for c in vt_cmds] == ["build-data", "train", "init-model", "train", "eval"], cmds
    for c in vt_cmds:
        if c[0] == "train":   # the same flags the dry-run above accepted (printed with the estimate)
            assert c[1] in ("manifests/train-visionthink-3b.yaml", "manifests/train-mini.yaml")
            assert (ROOT / c[1]).is_file()
            continue
        known = _help_flags(c[0])
        used = {a for a in c if a.startswith("--")}
        assert used <= known, (c[0], used - known)
    serve = next(c for c in cmds if "vllm.entrypoints.openai.api_server" in c)
    assert serve[serve.index("--model") + 1].endswith("/train/final")


@pytest.mark.slow
def test_dry_run_on_one_h200_trains_all_weights(tmp_path):
    out = _dry(tmp_path, 150, "3b")
    assert "cannot fit" not in out and "--use_peft" not in out and out.count("fits: yes") == 1
