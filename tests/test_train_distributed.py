"""The group penalty is computed on the whole group after TRL gathers rewards across processes: a
2-process CPU run (`accelerate launch --num_processes 2`, gloo) gives the same penalties as 1 process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train_helpers as h
from vttrain.grpo.reward import Rollout, group_penalties

SCRIPT = Path(__file__).with_name("train_dist_script.py")


def _launch(model, data, out, nproc, per_device, mode="paper"):
    accelerate = Path(sys.executable).with_name("accelerate")
    # --multi_gpu selects accelerate's torchrun launcher; with use_cpu=True in the config each process runs
    # on CPU with the gloo backend (accelerate's own multi-CPU launcher needs mpirun).
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(29500 + os.getpid() % 1000),
           str(SCRIPT), str(model), str(data), str(out), str(per_device), mode]
    if nproc == 1:
        cmd = [sys.executable, str(SCRIPT), str(model), str(data), str(out), str(per_device), mode]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=SCRIPT.parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(x) for x in (out / "rollouts.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_give_the_same_group_penalties(tmp_path):
    model = h.tiny_model(tmp_path)
    data = h.write_dataset(tmp_path / "data", n=4)
    one = _launch(model, data, tmp_path / "p1", nproc=1, per_device=4)
    two = _launch(model, data, tmp_path / "p2", nproc=2, per_device=2)

    # the group of 4 really was split: 2 rollouts on each rank
    assert {r["rank"] for r in one} == {0}
    assert sorted(r["rank"] for r in two) == [0, 0, 1, 1]
    key = ["id", "group", "score", "used_high", "attempted", "penalty", "reward"]
    assert [[r[k] for k in key] for r in two] == [[r[k] for k in key] for r in one]
    assert [r["penalty"] for r in two] == [0.1, 0.1, 0.0, 0.0]

    # a per-process penalty (each rank seeing half the group) would have been different
    halves = [[Rollout(r["score"], r["used_high"], r["attempted"]) for r in two if r["rank"] == k] for k in (0, 1)]
    per_process = group_penalties(halves[0], "paper") + group_penalties(halves[1], "paper")
    assert per_process != [r["penalty"] for r in two]
