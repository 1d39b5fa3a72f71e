"""Packaging: a wheel carries the shipped manifests, prompts and model configs and works from another
directory; `vt --version`; shell completion; missing optional extras are one-line errors."""
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_vt(tmp_path_factory):
    """Build the wheel, install it (no deps) into a fresh venv that sees this environment's packages
    through a .pth line (not the editable vt: .pth files of an added path are not processed)."""
    d = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w",
                            d / "dist", REPO], check=True, capture_output=True, text=True)
    # every folder of package data is a listed package: no setuptools "Package would be ignored" warnings
    assert "would be ignored" not in build.stdout + build.stderr and "is absent from the `packages`" not in build.stderr
    whl = next((d / "dist").glob("vt-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", d / "venv"], check=True)
    py = d / "venv" / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index",
                    "--force-reinstall", whl], check=True, capture_output=True, env=env)
    return whl, d / "venv" / "bin" / "vt"


def _run(vt, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(vt), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**env, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})


def test_wheel_ships_manifests_and_runs_from_elsewhere(wheel_vt, tmp_path):
    whl, vt = wheel_vt
    names = zipfile.ZipFile(whl).namelist()
    for f in ("vt/manifests/demo.yaml", "vt/manifests/train-demo.yaml", "vt/manifests/models/qwen2.5-vl-3b.yaml",
              "vt/manifests/accelerate/zero3.yaml", "vtdata/prompts/agent_system.txt", "vt/cli.py"):
        assert f in names, f
    assert not any(n.split("/")[0] == "cli.py" for n in names)  # no top-level `cli` module to shadow
    (tmp_path / "cli.py").write_text("raise SystemExit('the wrong cli')\n")  # a user's own cli.py
    r = _run(vt, "--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("vt 0."), r.stdout + r.stderr
    r = _run(vt, "demo", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--out" in r.stdout, r.stderr
    # the demo's first stage, with the manifest the demo ships (vt demo's default --manifest)
    code = "from vttrain.demo import DemoConfig; print(DemoConfig().manifest)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    manifest = subprocess.run([vt.parent / "python", "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "site-packages" in manifest.stdout and Path(manifest.stdout.strip()).is_file(), manifest.stderr
    r = _run(vt, "-q", "build-data", manifest.stdout.strip(), "--out", tmp_path / "demo-out" / "data", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo-out" / "data" / "build.json").is_file() and (tmp_path / "demo-out" / "vt.duckdb").is_file()
    # shipped manifests and train configs by name, from a directory that has none
    r = _run(vt, "-q", "build-data", "demo.yaml", "--out", tmp_path / "by-name", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "by-name" / "build.json").is_file(), r.stdout + r.stderr
    r = _run(vt, "-q", "build-data", "no-such.yaml", "--out", tmp_path / "x", cwd=tmp_path)
    assert r.returncode == 2 and "manifest not found: no-such.yaml" in r.stdout + r.stderr
    r = _run(vt, "init-model", "random", "--config", "nope", tmp_path / "m", cwd=tmp_path)
    assert r.returncode == 2 and "qwen2.5-vl-3b" in r.stdout + r.stderr  # the shipped configs are found


def test_shipped_configs_by_name_from_any_directory(tmp_path, monkeypatch):
    from vt import shipped
    from vtdata.manifest import load
    from vttrain.grpo.config import parse_config
    monkeypatch.chdir(tmp_path)
    assert load("demo.yaml").path == shipped("demo.yaml")
    assert load("manifests/demo.yaml").path == shipped("demo.yaml")
    assert parse_config("train-demo.yaml", []).max_steps == parse_config(shipped("train-demo.yaml"), []).max_steps
    (tmp_path / "demo.yaml").write_text("{}")  # a file of the user's own, of the same name, comes first
    from vtdata.console import VtError
    with pytest.raises(VtError, match="demo.yaml"):
        load("demo.yaml")


def test_version_and_completion():
    from typer.testing import CliRunner

    from vt import __version__, cli
    r = CliRunner().invoke(cli.app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"vt {__version__}"
    r = CliRunner().invoke(cli.app, ["--help"])
    assert "--install-completion" in r.output


def test_missing_extras_are_one_line_errors(monkeypatch):
    import importlib.util
    from types import SimpleNamespace

    from vtdata.console import VtError
    from vttrain.grpo.config import check_extras

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "wandb", "deepspeed", "vllm") else real(name, *a))
    base = dict(use_vllm=False, report_to=["none"], deepspeed=None)
    check_extras(SimpleNamespace(**base))
    for change, extra in ((dict(report_to=["tensorboard"]), "tensorboard"), (dict(report_to="wandb"), "wandb"),
                          (dict(use_vllm=True), "vllm"), (dict(deepspeed="ds.json"), "deepspeed")):
        with pytest.raises(VtError, match=rf"pip install 'vt\[{extra}\]'"):
            check_extras(SimpleNamespace(**{**base, **change}))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(VtError, match="deepspeed"):
        check_extras(SimpleNamespace(**base))


def test_vt_db_is_the_default_database_everywhere(tmp_path, monkeypatch):
    from vtdata.db import default_db
    monkeypatch.delenv("VT_DB", raising=False)
    assert default_db(tmp_path / "data") == tmp_path / "vt.duckdb" and default_db() == __import__("pathlib").Path("vt.duckdb")
    monkeypatch.setenv("VT_DB", str(tmp_path / "x.duckdb"))
    assert default_db(tmp_path / "data") == default_db() == tmp_path / "x.duckdb"


@pytest.mark.parametrize("args, spec, index", [
    ([], "torch==2.13.0+cpu", None),
    (["TORCH_INDEX=https://example.org/cpu"], "torch==2.13.0+cpu", "--extra-index-url https://example.org/cpu"),
    (["TORCH=cuda"], "torch==2.13.0'", None),
    (["TORCH=cuda", "TORCH_VERSION=2.7.1", "TORCH_INDEX=https://example.org/cu126"], "torch==2.7.1'",
     "--extra-index-url https://example.org/cu126"),
])
def test_make_install_torch_build_is_chosen(args, spec, index, tmp_path):
    """`make install` installs the torch build TORCH names (cpu by default), never an unpinned torch."""
    import shutil
    if shutil.which("make") is None:
        pytest.skip("no make")
    r = subprocess.run(["make", "-n", "-B", "install", f"BIN={tmp_path}/bin", *args], cwd=REPO, capture_output=True,
                       text=True)
    line = next(x for x in r.stdout.splitlines() if "pip install" in x and "'torch==" in x)
    assert spec in line and (index in line if index else "index-url" not in line), line
    r = subprocess.run(["make", "-B", "install", f"BIN={tmp_path}/bin", "TORCH=rocm", "PY=false"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "use TORCH=cpu or TORCH=cuda" in r.stdout + r.stderr


def test_top_level_cli_runs_the_same_cli_from_a_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, REPO / "cli.py", "--version"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=120)
    from vt import __version__
    assert r.returncode == 0 and r.stdout.strip() == f"vt {__version__}", r.stderr
    r = subprocess.run([sys.executable, REPO / "cli.py", "sql", "SELECT 1", "--db", tmp_path / "none.duckdb"],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and (r.stdout + r.stderr).startswith("error: database")  # vt's one-line errors, not a trace
