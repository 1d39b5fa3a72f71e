"""Class 5 of the hostile-input issue: vt never deletes (or overwrites) what it did not write.

An output directory is replaced only when vt can prove it wrote everything in it: the command's own
marker file and a .vt-output that lists every path inside (vtdata/outdir.py). Anything else -- a
directory that merely holds a file called build.json / export.json / vt_init.json / index.html, a vt
output the user added a file to, an output of an older vt (no listing) -- is a one-line error that
names --force, and the user's files survive. A curated set's name is replaced only where it lives."""
from __future__ import annotations

import json

import duckdb
import pytest

from build_helpers import build, vt, write_manifest
from vtdata.build import BuildDataConfig, build as build_cfg
from vtdata.console import VtError
from vtdata.export import ExportConfig, export
MARKER = ".vt-output"  # vtdata.outdir.MARKER (spelled out: these tests also run against older code)

SYNTH = [{"name": "g", "kind": "synthetic", "task": "general", "take": 4}]


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path, SYNTH)


def _foreign(out, files):
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)


@pytest.mark.parametrize("marker", ["build.json", "vt_init.json"])
def test_build_data_keeps_a_directory_that_only_holds_a_marker_named_file(tmp_path, manifest, marker):
    out = tmp_path / "mine"
    _foreign(out, {"build.json": "{}", marker: "{}", "thesis.tex": "years of work"})
    with pytest.raises(VtError, match="--force") as e:
        build(manifest, out)
    assert "\n" not in str(e.value)
    assert (out / "thesis.tex").read_text() == "years of work"


def test_export_keeps_a_directory_that_only_holds_export_json(tmp_path, manifest):
    build(manifest, tmp_path / "set")
    out = tmp_path / "exp"
    _foreign(out, {"export.json": "{}", "notes/todo.txt": "mine"})
    with pytest.raises(VtError, match="--force"):
        export(ExportConfig(str(tmp_path / "set"), str(out), "jsonl"))
    assert (out / "notes" / "todo.txt").read_text() == "mine"
    export(ExportConfig(str(tmp_path / "set"), str(out), "jsonl", force=True))  # the user asked for it
    assert not (out / "notes").exists() and (out / "train.jsonl").is_file()


@pytest.mark.parametrize("added", ["notes.txt", "data/notes.txt", "data/sub/x.bin", ".hidden"])
def test_a_file_added_to_a_vt_output_is_not_deleted_by_a_rebuild(tmp_path, manifest, added):
    out = tmp_path / "set"
    build(manifest, out)
    build(manifest, out)  # vt's own output, listed in .vt-output: replaced without --force
    listed = json.loads((out / MARKER).read_text())["paths"]
    assert "build.json" in listed and any(p.startswith("data/") for p in listed)
    _foreign(out, {added: "mine"})
    with pytest.raises(VtError, match=r"did not write.*--force"):
        build(manifest, out)
    assert (out / added).read_text() == "mine"
    (out / added).unlink()
    if added.count("/") == 2:
        with pytest.raises(VtError, match="did not write"):  # an empty directory the user made is theirs too
            build(manifest, out)
        (out / added).parent.rmdir()
    build(manifest, out)


def test_an_output_of_an_older_vt_needs_force(tmp_path, manifest):
    out = tmp_path / "set"
    build(manifest, out)
    (out / MARKER).unlink()  # what vt wrote before the listing existed
    with pytest.raises(VtError, match=r"older vt.*--force"):
        build(manifest, out)
    (out / MARKER).write_text('{"paths": ')  # unreadable: no proof either
    with pytest.raises(VtError, match="--force"):
        build(manifest, out)
    r = build_cfg(BuildDataConfig(manifest=str(manifest), out=str(out), force=True))
    assert r["counts"]["kept"] == 4 and (out / MARKER).is_file()


def test_force_never_replaces_an_input(tmp_path, manifest):
    with pytest.raises(VtError, match="needs"):
        build_cfg(BuildDataConfig(manifest=str(manifest), out=str(tmp_path), force=True))
    assert manifest.is_file()


def test_cli_refusal_is_one_line_naming_force(tmp_path, manifest):
    out = tmp_path / "mine"
    _foreign(out, {"build.json": "{}", "keep.txt": "x"})
    r = vt("build-data", manifest, "--out", out, "--db", tmp_path / "vt.duckdb")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--force" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and (out / "keep.txt").read_text() == "x"
    assert not (tmp_path / "vt.duckdb").exists()  # refused before the database was created


def test_init_model_keeps_a_foreign_directory(tmp_path):
    from vttrain.models.init_model import InitModelConfig, init_model
    out = tmp_path / "m"
    _foreign(out, {"config.json": "{\"mine\": 1}", "vt_init.json": "{}"})
    with pytest.raises(VtError, match="--force"):
        init_model(InitModelConfig(kind="tiny", out=out))
    assert json.loads((out / "config.json").read_text()) == {"mine": 1}
    init_model(InitModelConfig(kind="tiny", out=tmp_path / "new"))
    init_model(InitModelConfig(kind="tiny", out=tmp_path / "new", seed=1))  # its own output: replaced
    assert json.loads((tmp_path / "new" / "vt_init.json").read_text())["seed"] == 1
    init_model(InitModelConfig(kind="tiny", out=out, force=True))
    assert "mine" not in json.loads((out / "config.json").read_text())


def test_report_keeps_a_foreign_directory(tmp_path):
    from vttrain.report.report import ReportConfig, build_report
    db = tmp_path / "vt.duckdb"
    duckdb.connect(str(db)).close()
    out = tmp_path / "site"
    _foreign(out, {"index.html": "<p>my page</p>", "plots/mine.png": "png"})
    with pytest.raises(VtError, match="--force"):
        build_report(ReportConfig(out=str(out), db=str(db), runs=[]))
    assert (out / "plots" / "mine.png").read_text() == "png" and "my page" in (out / "index.html").read_text()
    build_report(ReportConfig(out=str(tmp_path / "rep"), db=str(db), runs=[]))
    build_report(ReportConfig(out=str(tmp_path / "rep"), db=str(db), runs=[]))  # its own: replaced


def test_curate_name_of_an_existing_set_is_replaced_only_where_it_lives(tmp_path):
    from test_curate_select import _labelled_db
    from vtdata.curate import CurateConfig, curate
    data, db, _ = _labelled_db(tmp_path, ["low_ok", "needs_high"])
    cfg = dict(db=db, name="base", per_class=2)
    curate(CurateConfig(out=tmp_path / "base", **cfg))

    def rows():
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute("SELECT sample_id, rank FROM curated WHERE name = 'base' ORDER BY rank").fetchall()
        finally:
            con.close()
    before = rows()
    with pytest.raises(VtError, match=r"'base' already exists.*--force"):
        curate(CurateConfig(out=tmp_path / "elsewhere", seed=5, **cfg))
    assert rows() == before and not (tmp_path / "elsewhere").exists()
    curate(CurateConfig(out=tmp_path / "base", seed=5, **cfg))  # where it lives: replaced
    curate(CurateConfig(out=tmp_path / "elsewhere", seed=7, force=True, **cfg))
    assert (tmp_path / "elsewhere" / "build.json").is_file()


def test_the_demo_rebuilds_its_own_older_outputs(tmp_path, manifest):
    """`vt demo` owns OUT: its writing stages pass --force at run time (not in their identity, so the
    stages of a demo directory from before the flag are still reused)."""
    from vttrain.demo import Demo, DemoConfig, vt as vt_in_process
    run = Demo(DemoConfig(out=str(tmp_path / "demo")))
    by = {s.name: s for s in run.stages()}
    for name in ("build-data", "init-model", "curate", "report"):
        assert by[name].extra() == ["--force"] and "--force" not in by[name].identity()["args"]
    old = tmp_path / "demo" / "data"
    build(manifest, old)
    (old / MARKER).unlink()  # written by an older vt
    vt_in_process(["build-data", str(manifest), "--out", str(old), "--db", str(tmp_path / "d.duckdb")] + by["build-data"].extra())
    assert (old / MARKER).is_file()
    (tmp_path / "demo" / ".demo").mkdir()
    with pytest.raises(VtError, match="belongs to the vt demo"):  # a README example run by hand into the demo
        build(manifest, old)
