"""The examples of the README and of every page in docs/, as a new user follows them after `make demo`: every
`vt` command shown names a command and options that exist and parses (so do `python -m vttrain.grpo.train`, `make`
targets and the scripts shown with their flags); none writes into the demo's outputs (`demo-out/`, only
`vt demo` itself does); and the CPU walkthrough (docs/score-and-curate.md) runs as printed in a fresh directory
where the demo's data exists, printing what the page says it prints."""
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
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
WALKTHROUGH_PAGE = REPO / "docs" / "score-and-curate.md"
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


def all_commands() -> list[str]:
    """The command lines of the README and of every docs/*.md page."""
    return [c for page in PAGES for c in commands(page.read_text())]


def test_no_readme_example_writes_into_the_demo_outputs():
    assert len(DOCS) >= 10, DOCS
    cmds = all_commands()
    assert len(cmds) > 40 and any(c.startswith("vt score-judge") for c in cmds)
    assert any(c.startswith("vt score-judge") for c in commands(README.read_text()))
    bad = [(c, w) for c in cmds for w in written(c) if Path(w).parts[:1] == ("demo-out",)]
    assert not bad, "\n".join(f"{c}\n  writes {w}" for c, w in bad)
    # the checker sees the old examples' writes
    assert written("vt curate --db demo-out/vt.duckdb --name demo --out demo-out/curated") == \
        ["demo-out/curated", "demo-out/vt.duckdb"]
    assert written("vt score-judge --data demo-out/data --policy local:m") == ["demo-out/vt.duckdb"]
    assert written("vt init-model tiny demo-out/model") == ["demo-out/model"]


WALKTHROUGH = ["vt init-model tiny models/tiny", "vt score-judge --data demo-out/data --db my/vt.duckdb",
               "vt curate --db my/vt.duckdb", "vt sql --db my/vt.duckdb"]
"""The CPU walkthrough after `make demo` (docs/score-and-curate.md), in this order (each prefix picks every line that starts
with it)."""


def _table(text: str) -> list[list[str]]:
    return [[c.strip() for c in re.split(r"[│┃]", line)] for line in text.splitlines() if "│" in line]


@pytest.mark.slow
def test_readme_walkthrough_runs_as_printed_beside_the_demo(tmp_path):
    text = WALKTHROUGH_PAGE.read_text()
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


# ---- every command shown exists and parses ----------------------------------------------------------------------

SHELL_ENDS = {"|", "||", "&&", "&", ";", ">", ">>", "<", "2>"}
"""Words that end a command's own arguments (a pipe, a background `&`, a redirection)."""
SCRIPT = re.compile(r"^(?:bench|tests)/[\w./-]+\.(?:py|sh)$")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command line) of every ```bash line and every `$ ...` line of another code block, README and docs."""
    out = []
    for page in PAGES:
        text = page.read_text()
        out += [(page.name, c) for c in commands(text)]
        for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
            out += [(page.name, line[2:].strip()) for line in block.splitlines() if line.startswith("$ ")]
    return out


def _own_words(command: str) -> list[str]:
    words = shlex.split(command)
    cut = next((i for i, w in enumerate(words) if w in SHELL_ENDS), len(words))
    words = words[:cut]
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value before the command
        words = words[1:]
    return words


def vt_words(command: str) -> list[str] | None:
    """The arguments after `vt` (`.venv/bin/vt`, `python -m vt`, `python cli.py`), or after `-m vttrain.grpo.train` as
    `["train", ...]`; None when the line runs no vt command."""
    words = _own_words(command)
    for i, w in enumerate(words):
        if w == "vt" or w.endswith("/vt") and i == 0:
            return words[i + 1:]
        if w == "-m" and i + 1 < len(words) and words[i + 1] in ("vt", "vttrain.grpo.train"):
            return (["train"] if words[i + 1] == "vttrain.grpo.train" else []) + words[i + 2:]
        if w == "cli.py" and i > 0 and words[i - 1].startswith("python"):
            return words[i + 1:]
    return None


def _train_options() -> set[str]:
    import dataclasses

    from vttrain.grpo.config import VtTrainConfig
    names = {f.name for f in dataclasses.fields(VtTrainConfig)}
    return {f"--{n}" for n in names} | {f"--{n.replace('_', '-')}" for n in names} | {"-q", "--quiet"}


def vt_problem(args: list[str]) -> str | None:
    """Why `vt ARGS` would not parse (an unknown command or option, a missing option value, an extra
    argument, an unknown `vt train` key), or None."""
    from typer.main import get_command

    from vt.cli import app
    group = get_command(app)
    top = {o for p in group.params for o in p.opts + p.secondary_opts} | {"--help", "-h"}
    while args and args[0].startswith("-"):
        if args[0] not in top:
            return f"unknown global option {args[0]}"
        args = args[1:]
    if not args:
        return None
    sub, rest = args[0], args[1:]
    if sub not in group.commands:
        return f"no command `vt {sub}`"
    cmd = group.commands[sub]
    try:  # parses and converts every value as `vt` would, without running the command
        ctx = cmd.make_context(f"vt {sub}", list(rest))
    except Exception as err:  # noqa: BLE001 -- typer's click (vendored or not) raises its own UsageError
        if type(err).__name__ == "Exit":  # --help
            return None
        if not hasattr(err, "format_message"):
            raise
        return f"vt {sub}: {err.format_message()}"
    extra = list(ctx.args)
    if sub == "train":
        known = _train_options()
        bad = [a.split("=", 1)[0] for a in extra if a.startswith("-") and a.split("=", 1)[0] not in known]
        return f"vt train: unknown option(s) {bad}" if bad else None
    return f"vt {sub}: unexpected argument(s) {extra}" if extra else None


def script_problem(words: list[str]) -> str | None:
    """A `make TARGET`, or a script of bench/ or tests/ run with flags: the target exists / the script exists and
    mentions every flag shown."""
    if words[:1] == ["make"]:
        targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
        missing = [w for w in words[1:] if "=" not in w and not w.startswith("-") and w not in targets]
        return f"no make target {missing}" if missing else None
    script = next((w for w in words if SCRIPT.match(w)), None)
    if script is None:
        return None
    path = REPO / script
    if not path.is_file():
        return f"no script {script}"
    src = path.read_text()
    flags = [w.split("=", 1)[0] for w in words[words.index(script) + 1:] if w.startswith("--")]
    missing = [f for f in flags if f"'{f}'" not in src and f'"{f}"' not in src and f"{f} " not in src]
    return f"{script} never mentions {missing}" if missing else None


def test_every_vt_command_and_option_shown_in_readme_and_docs_exists():
    shown = shown_commands()
    pages = {page for page, _ in shown}
    assert {"README.md", "data.md", "judges.md", "score-and-curate.md", "train.md", "eval-and-report.md"} <= pages
    problems, checked = [], 0
    for page, command in shown:
        args = vt_words(command)
        why = vt_problem(args) if args is not None else script_problem(_own_words(command))
        checked += args is not None
        if why:
            problems.append(f"{page}: {command}\n  {why}")
    assert not problems, "\n".join(problems)
    assert checked > 50


INLINE = re.compile(r"`(vt [^`]+)`")
PLACEHOLDERS = {"--key"}
"""Flags in prose that stand for any option (`vt train CONFIG.yaml [--key value ...]`)."""


def test_every_inline_vt_command_names_a_command_and_its_options():
    """`vt CMD --flag ...` written in prose (placeholders such as DIR or [--db PATH] allowed): the command exists
    and every --flag it shows is one of that command's options."""
    from typer.main import get_command

    from vt.cli import app
    group = get_command(app)
    problems, seen = [], 0
    for page in PAGES:
        for span in INLINE.findall(page.read_text()):
            words = re.sub(r"[\[\]|]", " ", span).split()[1:]
            while words and words[0] in ("-q", "-v", "--quiet", "--verbose"):
                words = words[1:]
            if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]) or words[0] in ("CMD",):
                continue
            sub, seen = words[0], seen + 1
            if sub not in group.commands:
                problems.append(f"{page.name}: `{span}`: no command vt {sub}")
                continue
            cmd = group.commands[sub]
            known = {o for p in cmd.params for o in p.opts + p.secondary_opts} | {"--help", "-h"}
            if sub == "train":
                known |= _train_options()
            bad = [w.split("=", 1)[0] for w in words[1:]
                   if w.startswith("--") and w.split("=", 1)[0] not in known | PLACEHOLDERS]
            if bad:
                problems.append(f"{page.name}: `{span}`: vt {sub} has no {bad}")
    assert seen > 50
    assert not problems, "\n".join(problems)


INLINE_RUN = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:python|bash|make|pytest) [^`]+)`")


def test_every_inline_make_target_and_script_shown_exists():
    """`make TARGET`, `python bench/X.py --flag`, `bash bench/X.sh` written in prose: the target exists, the script
    exists and mentions each flag shown (placeholders in <...> end the check)."""
    problems, seen = [], 0
    for page in PAGES:
        for span in INLINE_RUN.findall(page.read_text()):
            words = span.split()
            words = words[:next((i for i, w in enumerate(words) if "<" in w or "[" in w), len(words))]
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                words = words[1:]
            if vt_words(" ".join(words)) is not None:
                continue
            why = script_problem(words)
            seen += words[:1] == ["make"] or any(SCRIPT.match(w) for w in words)
            if why:
                problems.append(f"{page.name}: `{span}`: {why}")
    assert not problems, "\n".join(problems)
    assert seen > 15


def test_the_checker_sees_bad_commands():
    assert vt_problem(["curate", "--db", "x.duckdb", "--name", "n", "--out", "o"]) is None
    assert "no command" in vt_problem(["curat"])
    assert "--per-clas" in vt_problem(["curate", "--per-clas", "3"])
    assert "unexpected" in vt_problem(["sql", "SELECT 1", "extra"])
    assert vt_problem(["train", "train-demo.yaml", "--max_steps", "8", "--resume"]) is None
    assert "--max_step" in vt_problem(["train", "train-demo.yaml", "--max_step", "8"])
    assert vt_words("accelerate launch --config_file a.yaml -m vttrain.grpo.train c.yaml --seed 1")[:2] == ["train", "c.yaml"]
    assert vt_words("VT_DB=x vt sql 'SELECT 1' | tail -1") == ["sql", "SELECT 1"]
    assert vt_words("pip install 'vt[wandb]'") is None
    assert "no make target" in script_problem(["make", "demoo"])
    assert "--nope" in script_problem(["python", "bench/science.py", "--nope"])
