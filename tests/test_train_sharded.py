"""Sharded training on CPU: `vt`'s trainer under FSDP (2 processes, gloo, accelerate with
manifests/accelerate/fsdp-cpu-2proc.yaml) trains, checkpoints and resumes, and gives the figures of the same
run unsharded (2-process DDP, the layout whose per-process refill it shares).

accelerate 1.16 never takes its FSDP path on CPU (its FSDP branch is for accelerator devices only: an FSDP
config with use_cpu silently runs DDP); tests/train_shard_script.py makes it (VT_TEST_FSDP_ON_CPU=1), and
the run checks that FSDP really was on."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import train_helpers as h

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("train_shard_script.py")
KEYS = ("reward", "refill_rounds", "filtered_share", "informative_share", "accuracy", "resize_ratio")


def _launch(config, model, data, out, steps, resume=False, fsdp=False):
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(ROOT / "manifests" / "accelerate" / config),
           "--main_process_port", str(29500 + (os.getpid() + 7 * (steps + resume + 3 * fsdp)) % 1000),
           str(SCRIPT), str(model), str(data), str(out), "4", str(steps), "2", "1" if resume else "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "VT_TEST_FSDP_ON_CPU": "1" if fsdp else "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps_ = {r["step"]: r for r in rows if r.get("loss") is not None}
    return steps_, json.loads((out / "final_norm.json").read_text())


def _same(a: dict, b: dict, steps):
    for s in steps:
        assert {k: a[s].get(k) for k in KEYS} == {k: b[s].get(k) for k in KEYS}, s
        assert abs(a[s]["loss"] - b[s]["loss"]) < 1e-4, (s, a[s]["loss"], b[s]["loss"])


@pytest.mark.slow
@pytest.mark.sharded
def test_fsdp_on_two_cpu_processes_trains_checkpoints_and_resumes_like_ddp(tmp_path):
    model = h.tiny_model(tmp_path)
    data = h.write_dataset(tmp_path / "data", n=32)   # the epoch outlasts the 4 steps and their refills
    ddp, ddp_w = _launch("cpu-2proc.yaml", model, data, tmp_path / "ddp", 4)
    fsdp, fsdp_w = _launch("fsdp-cpu-2proc.yaml", model, data, tmp_path / "fsdp", 4, fsdp=True)
    assert fsdp_w["fsdp"] and fsdp_w["world"] == 2 and not ddp_w["fsdp"] and ddp_w["world"] == 2
    assert sorted(fsdp) == [1, 2, 3, 4] and any(fsdp[s]["refill_rounds"] for s in fsdp)  # refill really ran
    _same(fsdp, ddp, [1, 2, 3, 4])
    # the trained weights: the same within 0.1 % (lm_head's gradient differs a few % under FSDP: README)
    assert abs(fsdp_w["norm"] - ddp_w["norm"]) < 1e-3 * ddp_w["norm"], (fsdp_w, ddp_w)

    ckpt = tmp_path / "fsdp" / "checkpoint-2"
    assert (ckpt / "pytorch_model_fsdp.bin").is_file() and (ckpt / "refill_taken.json").is_file()
    # resume from checkpoint-2: steps 3-4 again, with the refill takes replayed
    again = tmp_path / "fsdp-resumed"
    again.mkdir()
    shutil.copytree(ckpt, again / "checkpoint-2")
    resumed, resumed_w = _launch("fsdp-cpu-2proc.yaml", model, data, again, 4, resume=True, fsdp=True)
    assert sorted(resumed) == [3, 4] and resumed_w["fsdp"]
    _same(resumed, fsdp, [3, 4])
    assert abs(resumed_w["norm"] - fsdp_w["norm"]) < 1e-3 * fsdp_w["norm"], (resumed_w, fsdp_w)
    taken = lambda d: json.loads((d / "checkpoint-4" / "refill_taken.json").read_text())  # noqa: E731
    assert taken(again) == taken(tmp_path / "fsdp")


@pytest.mark.slow
def test_vt_train_refuses_an_fsdp_launch_that_would_not_shard(tmp_path):
    """Without the test script's patch, accelerate runs an FSDP config on CPU as plain DDP: vt stops, one line."""
    model = h.tiny_model(tmp_path)
    data = h.write_dataset(tmp_path / "data", n=8)
    with pytest.raises(AssertionError, match="does not shard here"):
        _launch("fsdp-cpu-2proc.yaml", model, data, tmp_path / "out", 1, fsdp=False)
