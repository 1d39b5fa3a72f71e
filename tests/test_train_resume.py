"""`--resume` continues a crashed run from its latest checkpoint at the same step and data position."""
import json

import pytest
import torch
from transformers import TrainerCallback

import train_helpers as h
from vtdata.console import VtError
from vttrain.grpo import scripted


class Crash(Exception):
    pass


class _CrashAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if state.global_step == 2:
            raise Crash("simulated crash after checkpoint-2")


class Crashing(scripted.ScriptedGRPOTrainer):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.add_callback(_CrashAfterSave())


def _steps(run_dir):
    rows = [json.loads(x) for x in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    return [(r["step"], r["id"]) for r in rows]


@pytest.mark.slow
def test_resume_continues_at_the_right_step_and_data_position(tmp_path):
    from vttrain.models import build as models
    from vttrain.grpo.train import run

    model = h.tiny_model(tmp_path)
    data = h.write_dataset(tmp_path / "data", n=6)
    common = dict(max_steps=3, lr_scheduler_type="constant")

    full = run(h.config(model, data, tmp_path / "full", **common), trainer_class=scripted.ScriptedGRPOTrainer)

    crashed = tmp_path / "crashed"
    cfg = h.config(model, data, crashed, save_strategy="steps", save_steps=1, **common)
    with pytest.raises(Crash):
        run(cfg, trainer_class=Crashing)
    assert (crashed / "checkpoint-2").is_dir() and not (crashed / "checkpoint-3").exists()
    with pytest.raises(VtError, match="--resume"):  # never silently restarts over a checkpointed run
        run(h.config(model, data, crashed, save_strategy="steps", save_steps=1, **common),
            trainer_class=scripted.ScriptedGRPOTrainer)

    resumed = run(h.config(model, data, crashed, save_strategy="steps", save_steps=1, resume=True, **common),
                  trainer_class=scripted.ScriptedGRPOTrainer)
    state = json.loads((crashed / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    # same prompts at the same steps as the uninterrupted run (data position restored), logs not duplicated
    assert _steps(crashed) == _steps(tmp_path / "full")
    assert len({s for s, _ in _steps(crashed)}) == 3
    steps = [json.loads(x)["step"] for x in (crashed / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3]
    a = models.load(full, device="cpu")[0].state_dict()
    b = models.load(resumed, device="cpu")[0].state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    # resuming a finished run trains no extra step; a lost final/ is rebuilt from the last checkpoint
    import shutil
    shutil.rmtree(crashed / "final")
    again = run(h.config(model, data, crashed, save_strategy="steps", save_steps=1, resume=True, **common),
                trainer_class=scripted.ScriptedGRPOTrainer)
    assert not (crashed / "checkpoint-4").exists()
    assert len({s for s, _ in _steps(crashed)}) == 3
    c = models.load(again, device="cpu")[0].state_dict()
    assert all(torch.equal(b[k], c[k]) for k in b)
    assert run(h.config(model, data, crashed, resume=True, **common)) == again  # nothing to do: returns at once
