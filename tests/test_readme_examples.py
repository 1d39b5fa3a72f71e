"""The README's examples, as a new user follows them after `make demo`: none writes into the demo's outputs
(`demo-out/`, only `vt demo` itself does), and the walkthrough's CPU examples run as printed in a fresh
directory where the demo's data exists, printing what the README says they print."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
WRITE_FLAGS = {"--out", "-o", "--output_dir", "--output-dir"}
WRITES_DB = {"build-data", "score-judge", "eval", "curate"}  # commands that write into a database
"""Commands that write into the database: `--db`, else the vt.duckdb beside `--data` (beside `--out` for build-data)."""


def commands(text: str) -> list[str]:
    """Every command line of the README's ```bash blocks: continuations joined, comments dropped, shell
    variables assigned in the same block (`D="..."`) expanded."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        vars_: dict[str, str] = {}
        buf = ""
        for line in block.replace("\\\n", " ").splitlines():
            line = f"{buf}\n{line}" if buf else line
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # a quoted string that goes on on the next line
                buf = line
                continue
            buf = ""
            if not words:
                continue
            if len(words) == 1 and re.fullmatch(r"\w+=.*", words[0]):
                name, value = words[0].split("=", 1)
                vars_[name] = value
                continue
            out.append(re.sub(r"\$(\w+)", lambda m: vars_.get(m.group(1), m.group(0)), line.split(" #")[0].strip()))
    return out


def written(command: str) -> list[str]:
    """The paths a `vt` command (or `-m vttrain.grpo.train`) writes: its output and the database it adds to."""
    words = shlex.split(command)
    if "vt" in words:
        words = words[words.index("vt") + 1:]
    elif "vttrain.grpo.train" in words:
        words = ["train"] + words[words.index("vttrain.grpo.train") + 1:]
    else:
        return []
    while words and words[0].startswith("-"):
        words = words[1:]  # -q, -v
    if not words:
        return []
    sub, args = words[0], words[1:]
    value = {a: b for a, b in zip(args, args[1:]) if a.startswith("-")}
    out = [value[f] for f in WRITE_FLAGS if f in value]
    if sub == "init-model":
        out.append([a for a in args if not a.startswith("-") and value.get("--config") != a][-1])
    if sub in WRITES_DB:
        beside = value.get("--data") or (out[0] if sub == "build-data" and out else None)
        out.append(value.get("--db") or (str(Path(beside).parent / "vt.duckdb") if beside else "vt.duckdb"))
    return out if sub != "demo" else []  # writing demo-out/ is `vt demo`'s job


def test_no_readme_example_writes_into_the_demo_outputs():
    cmds = commands(README.read_text())
    assert len(cmds) > 40 and any(c.startswith("vt score-judge") for c in cmds)
    bad = [(c, w) for c in cmds for w in written(c) if Path(w).parts[:1] == ("demo-out",)]
    assert not bad, "\n".join(f"{c}\n  writes {w}" for c, w in bad)
    # the checker sees the old examples' writes
    assert written("vt curate --db demo-out/vt.duckdb --name demo --out demo-out/curated") == \
        ["demo-out/curated", "demo-out/vt.duckdb"]
    assert written("vt score-judge --data demo-out/data --policy local:m") == ["demo-out/vt.duckdb"]
    assert written("vt init-model tiny demo-out/model") == ["demo-out/model"]


WALKTHROUGH = ["vt init-model tiny models/tiny", "vt score-judge --data demo-out/data --db my/vt.duckdb",
               "vt curate --db my/vt.duckdb", "vt sql --db my/vt.duckdb"]
"""The README's CPU walkthrough after `make demo`, in this order (each prefix picks every line that starts
with it)."""


def _table(text: str) -> list[list[str]]:
    return [[c.strip() for c in re.split(r"[│┃]", line)] for line in text.splitlines() if "│" in line]


@pytest.mark.slow
def test_readme_walkthrough_runs_as_printed_beside_the_demo(tmp_path):
    text = README.read_text()
    cmds = commands(text)
    steps = list(dict.fromkeys(c for prefix in WALKTHROUGH for c in cmds if c.startswith(prefix)))
    assert len(steps) == 6, steps
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1", "COLUMNS": "200",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    # the demo's first stage (`vt demo` runs it as `vt build-data manifests/sufficiency.yaml --out demo-out/data`)
    subprocess.run(["vt", "-q", "build-data", "sufficiency.yaml", "--out", "demo-out/data"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in (tmp_path / "demo-out").rglob("*"))
    outputs = []
    for step in steps:
        r = subprocess.run(step, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{step}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        outputs.append(r.stdout)
    assert sorted((str(p), p.stat().st_mtime_ns) for p in (tmp_path / "demo-out").rglob("*")) == before
    assert (tmp_path / "my" / "curated" / "build.json").is_file()
    # what the README prints for the last query is what it prints (the generated length may vary)
    printed = text.split("the last query prints:\n\n```\n", 1)[1].split("```", 1)[0]
    want, got = _table(printed), _table(outputs[-1])
    assert [row[:2] + row[3:] for row in got] == [row[:2] + row[3:] for row in want], outputs[-1]
    # the Python example's loader line
    line = next(x for x in text.splitlines() if x.startswith("model, processor = load("))
    code = "from vttrain.models.build import load\n" + line.split("#")[0] + "\nprint(type(model).__name__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "Qwen2_5_VL" in r.stdout, r.stderr[-2000:]
