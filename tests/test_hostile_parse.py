"""Classes 2 and 3 of the hostile-input issue: one safe reader for everything vt parses, and model
output that never crashes a command.

Every YAML / JSON / JSON-lines file a command reads, and the JSON a model writes in a tool call, go
through vtdata/safeload.py: alias bombs, deep nesting, huge numbers, invalid UTF-8 and FIFOs give a
one-line error (a file) or a skipped line / rejected row with its line number (a JSON line), or the
error turn (a tool call). Files are made by the tests; a subprocess runs with a timeout where the
old code hung."""
import json
import os
import time

import pytest
from typer.testing import CliRunner

from build_helpers import build, image_bytes, vt, write_manifest
from vtdata.console import VtError

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi"))                     # 10^9 values from 1 KB
DEEP_YAML = "[" * 50_000 + "]" * 50_000
DEEP_JSON = "[" * 100_000 + "]" * 100_000
HUGE_NUMBER = '{"n": ' + "9" * 5001 + "}"
BAD_UTF8 = b'{"question": "caf\xe9"}'


@pytest.mark.parametrize("text,why", [(BOMB, "expands to more than"), (DEEP_YAML, "nested too deeply")])
def test_command_config_files_are_bounded(tmp_path, text, why):
    """`--config` of any command (here `vt export`), in a subprocess: the old code ran out of memory or
    recursion."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    t0 = time.monotonic()
    proc = vt("export", "--config", cfg, timeout=60, env={**os.environ, "PYTHONMALLOC": "malloc"})
    assert proc.returncode == 2 and why in proc.stderr + proc.stdout, proc.stderr[-400:]
    assert "Traceback" not in proc.stderr and time.monotonic() - t0 < 60


@pytest.mark.parametrize("text,why", [(BOMB, "expands to more than"), (DEEP_YAML, "nested too deeply"),
                                      ("model: m\n\x00\x01\x02binary", "binary")])
def test_train_yaml_is_bounded(tmp_path, text, why):
    from vttrain.grpo.config import parse_config
    p = tmp_path / "train.yaml"
    p.write_text(text)
    with pytest.raises(VtError, match=why):
        parse_config(p, [])


def test_a_fifo_config_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    proc = vt("export", "--config", fifo, timeout=30)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr + proc.stdout


def test_report_ignores_a_bombed_saved_config(tmp_path):
    """A run dir's vt_train_config.yaml read by `vt report`: refused (treated as unreadable), quickly."""
    from vttrain.report.examples import train_config
    (tmp_path / "vt_train_config.yaml").write_text(BOMB)
    assert train_config(tmp_path) == {}
    (tmp_path / "vt_train_config.yaml").write_text(DEEP_YAML)
    assert train_config(tmp_path) == {}


def _hostile_lines(good: list[dict]) -> bytes:
    return b"\n".join([json.dumps(good[0]).encode(), DEEP_JSON.encode(), HUGE_NUMBER.encode(), BAD_UTF8,
                       json.dumps(good[1]).encode()]) + b"\n"


def test_run_files_skip_hostile_lines(tmp_path):
    from vttrain.report.report import read_metrics
    (tmp_path / "metrics.jsonl").write_bytes(_hostile_lines([{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]))
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2]


def test_vt_judge_skips_hostile_lines_with_their_numbers(tmp_path):
    from vt.cli import app
    good = [{"id": i, "question": "q", "answer": "a", "prediction": "<answer>a</answer>"} for i in range(2)]
    src = tmp_path / "in.jsonl"
    src.write_bytes(_hostile_lines(good))
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["judge", str(src), "--out", str(out), "--judge", "auto"])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [0, 1]
    assert all(f"line {n}" in res.output for n in (2, 3, 4)), res.output


def test_build_data_rejects_hostile_jsonl_rows_by_line(tmp_path):
    import duckdb
    img = tmp_path / "a.png"
    img.write_bytes(image_bytes((120, 90)))
    good = [{"id": f"g{i}", "image": "a.png", "question": f"what is {i}?", "answers": ["x"]} for i in range(2)]
    (tmp_path / "d.jsonl").write_bytes(_hostile_lines(good))
    m = write_manifest(tmp_path, [{"name": "j", "kind": "jsonl", "path": "d.jsonl"}])
    res = build(m, tmp_path / "out")
    assert res["counts"]["kept"] == 2
    con = duckdb.connect(str(tmp_path / "vt.duckdb"), read_only=True)
    rejects = dict(con.execute("SELECT source_row, reason FROM rejects").fetchall())
    con.close()
    assert sorted(rejects) == ["line2", "line3", "line4"], rejects


@pytest.mark.parametrize("text", [DEEP_JSON, HUGE_NUMBER])
def test_a_llava_file_gives_one_line(tmp_path, text):
    (tmp_path / "l.json").write_text(text)
    m = write_manifest(tmp_path, [{"name": "l", "kind": "llava", "path": "l.json"}])
    with pytest.raises(VtError, match="llava file"):
        build(m, tmp_path / "out")


# ---------------------------------------------------------------------------------- class 3: model output

HOSTILE_CALLS = [
    '<tool_call>{"name": "resize_image", "arguments": {"action": "resize", "n": ' + "1" * 5001 + "}}</tool_call>",
    "<tool_call>" + "[" * 100_000 + "]" * 100_000 + "</tool_call>",
    '<tool_call>{"name": "resize_image", "arguments": "' + "[" * 100_000 + '"}</tool_call>',
    '<tool_call>{"name": "resize_image", "arguments": {"action": "resize", "x": 1e' + "9" * 400 + "}}</tool_call>",
]


@pytest.mark.parametrize("call", HOSTILE_CALLS)
def test_hostile_tool_calls_get_the_error_turn(call):
    from vtdata import protocol
    from vtdata.protocol import tools
    text = "<think>zoom</think>\n" + call
    assert isinstance(protocol.parse_tool_call(text), str)            # an error message for the error turn
    assert isinstance(tools.parse_call(text, tools.selection("resize,zoom")), str)


def test_vt_eval_survives_a_hostile_tool_call(tmp_path):
    """Think-mode eval whose policy's first turn is a 5,001-digit tool call: the error turn, then its answer."""
    from eval_helpers import eval_data, val_rows
    from fake_openai import FakeOpenAI
    from vttrain.eval import EvalConfig, run
    data = eval_data()
    rows = val_rows(data)

    def policy(req):
        if not any(m["role"] == "assistant" for m in req["messages"]):
            return "<think>zoom</think>\n" + HOSTILE_CALLS[0]
        return "<think>ok</think>\n<answer>x</answer>"
    with FakeOpenAI(responder=policy) as srv:
        res = run(EvalConfig(data=str(data), policy="openai:p", policy_base_url=srv.url, mode="think", name="h",
                             db=str(tmp_path / "vt.duckdb"), out=str(tmp_path), limit=2))
    assert res["done"] == min(2, len(rows))
