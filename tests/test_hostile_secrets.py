"""Round 3, class 3 (issue 30's "secrets stored"): keys, URL credentials and query tokens are redacted from
every stored error text, config and results file (vtdata.console.redact, applied where rows, run configs
and judge outputs are written); an --...-api-key-env value that is not a variable name is refused."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from build_helpers import vt
from fake_openai import FakeOpenAI, Reply
from vtdata.console import VtError

KEY = "sk-test-SECRETSECRET1234567890"


def _judge_input(path, n=2):
    path.write_text("".join(json.dumps({"id": str(i), "question": f"q{i}", "answer": "a", "prediction": "b"}) + "\n"
                            for i in range(n)))
    return path


def test_a_judge_error_that_echoes_the_key_is_not_stored(tmp_path):
    with FakeOpenAI() as srv:
        srv.push(*[Reply(status=400, error=f"bad request; you sent Authorization: Bearer {KEY}")] * 8)
        env = {**os.environ, "JK": KEY}
        r = vt("judge", _judge_input(tmp_path / "in.jsonl"), "--out", tmp_path / "o.jsonl", "--judge", "openai:m",
               "--judge-base-url", srv.url, "--judge-api-key-env", "JK", "--no-cache", "--max-attempts", "1", env=env)
    assert KEY not in r.stderr and KEY not in r.stdout
    out = (tmp_path / "o.jsonl").read_text()
    assert "error" in out and KEY not in out and "SECRETSECRET" not in out, out


@pytest.mark.parametrize("value", [KEY, "my key", "X-Y", "1ABC"])
def test_an_api_key_env_that_is_not_a_variable_name_is_refused(tmp_path, value):
    r = vt("judge", _judge_input(tmp_path / "in.jsonl"), "--out", tmp_path / "o.jsonl", "--judge", "openai:m",
           "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-api-key-env", value)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "NAME" in r.stderr, r.stderr
    assert value not in r.stderr or value in ("X-Y",)
    assert not (tmp_path / "o.jsonl").exists()


def test_policy_api_key_env_pasted_key_is_refused_by_the_config():
    from vtdata.config import build
    from vttrain.score import ScoreConfig
    with pytest.raises(VtError, match="NAME"):
        build(ScoreConfig, {"data": ".", "policy": "openai:m", "policy_api_key_env": KEY})


@pytest.mark.parametrize("text,gone", [
    ("http://user:hunter2@host:8000/v1", "hunter2"),
    ("https://host/v1?token=abcdef123456&x=1", "abcdef123456"),
    ("Error code: 401 - Bearer abcdefghijklmnop rejected", "abcdefghijklmnop"),
    (f"Incorrect API key provided: {KEY}", "SECRETSECRET"),
])
def test_redact(text, gone):
    from vtdata.console import redact
    assert gone not in redact(text)


def test_stored_error_rows_are_redacted(tmp_path):
    import duckdb
    from vtdata.db import insert_rows
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    con.execute("CREATE TABLE t (id INT, reason VARCHAR, error VARCHAR)")
    insert_rows(con, "t", [{"id": 1, "reason": "http://u:pw1234@h/v1 said no", "error": f"echo {KEY}"}],
                ["id", "reason", "error"])
    got = " ".join(map(str, con.execute("SELECT * FROM t").fetchone()))
    assert "pw1234" not in got and "SECRETSECRET" not in got, got


def test_train_config_dump_has_no_url_credentials(tmp_path):
    from train_helpers import config
    from vttrain.grpo.config import write_config
    cfg = config(tmp_path / "m", tmp_path / "d", tmp_path / "r", judge="openai:m",
                 judge_base_url="http://user:hunter2@127.0.0.1:9/v1?token=abcdef123456")
    text = write_config(cfg, tmp_path / "c.yaml").read_text()
    assert "hunter2" not in text and "abcdef123456" not in text


def test_train_run_directory_keeps_no_url_credentials(tmp_path):
    """rollouts.jsonl (a rollout that writes a credential URL) and every training_args.bin (checkpoint and
    final) store the judge's base URL and the texts redacted; the live config is left as it was."""
    import torch
    import train_helpers as h
    from fake_openai import FakeOpenAI
    from vttrain.grpo import scripted
    from vttrain.grpo.train import run

    leak = "see http://bob:hunter2@example.com/x?token=abcdef123456"

    class T(scripted.ScriptedGRPOTrainer):
        script = staticmethod(lambda turn, index, prompt: scripted.answer(leak))

    model, data = h.tiny_model(tmp_path), h.write_dataset(tmp_path / "data", n=4)
    with FakeOpenAI() as srv:
        url = srv.url.replace("http://", "http://user:hunter2@")
        cfg = h.config(model, data, tmp_path / "run", judge="openai:m", judge_base_url=url, max_steps=1,
                       save_strategy="steps", save_steps=1)
        final = run(cfg, trainer_class=T)
        assert "hunter2" in cfg.judge_base_url  # the live config keeps what the judge client needs
    rollouts = (tmp_path / "run" / "rollouts.jsonl").read_text()
    assert "bob:***@" in rollouts or "***@example.com" in rollouts, rollouts[:500]
    bins = sorted((tmp_path / "run").rglob("training_args.bin"))
    assert len(bins) >= 2, bins  # the checkpoint's and final/'s
    for f in [tmp_path / "run" / "rollouts.jsonl", *bins]:
        raw = f.read_bytes()
        assert b"hunter2" not in raw and b"abcdef123456" not in raw, f
    args = torch.load(Path(final) / "training_args.bin", weights_only=False)
    assert "hunter2" not in args.judge_base_url and args.judge_base_url.endswith("/v1")
