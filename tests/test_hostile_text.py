"""Classes 6 and 7 of the hostile-input issue: text is printed as text; broken values give one line.

Data, names and error messages that look like rich markup (`[/x]`, `[bold]`) or matplotlib mathtext
(`$\\foo{$`) are printed and drawn verbatim; a float option that is nan/inf or a non-path where a path
goes is a one-line error, for every command (vtdata/config.py converts every option)."""
import io

import pytest
from rich.console import Console

from vtdata.console import VtError

MARKUP = ["[/x]", "[bold]boom[/]", "a [/red] b", "[link=file:///etc/passwd]x[/link]"]


@pytest.mark.parametrize("text", MARKUP)
def test_messages_and_errors_print_markup_verbatim(text, monkeypatch):
    from vtdata import console as c
    buf = io.StringIO()
    monkeypatch.setattr(c, "console", Console(file=buf, width=200, markup=False))
    monkeypatch.setattr(c, "_level", {"value": 2})
    c.info(f"source {text}")
    c.debug(f"retry {text}")
    c.error_line(VtError(f"bad value {text}"))
    out = buf.getvalue()
    assert out.count(text) == 3, out


@pytest.mark.parametrize("text", MARKUP)
def test_vt_sql_prints_markup_in_data_verbatim(tmp_path, text, monkeypatch):
    from vtdata.sql import print_result
    out = io.StringIO()
    print_result(["name"], [(text,)], "table", out=out)
    assert text in out.getvalue()


def test_shared_consoles_do_not_render_markup():
    from vtdata.console import console, results_console
    for con in (console, results_console()):
        con = Console(file=io.StringIO(), markup=con._markup)
        con.print("[/x]")                   # raised MarkupError with markup on
        assert "[/x]" in con.file.getvalue()


def test_report_plots_draw_dollar_names_as_text(tmp_path):
    from vttrain.report.plots import plot_tradeoff
    points = [{"run": r"$\foo{$", "mode": "think", "accuracy": 0.5, "visual_tokens_rel": 0.4, "resize_ratio": 0.2},
              {"run": "$x$ [/y]", "mode": "full", "accuracy": 0.6, "visual_tokens_rel": 1.0, "resize_ratio": 0.0}]
    plot_tradeoff(points, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_float_options_must_be_finite(value):
    from vt.cli import app
    from typer.testing import CliRunner
    res = CliRunner().invoke(app, ["judge", "in.jsonl", "--out", "o.jsonl", "--timeout", value])
    assert isinstance(res.exception, VtError) and "finite" in str(res.exception), (res.exception, res.output)


def test_a_mapping_where_a_path_goes_is_one_line(tmp_path):
    from vt.cli import app
    from typer.testing import CliRunner
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {a: 1}\nout: [x, y]\n")
    res = CliRunner().invoke(app, ["export", "--config", str(cfg)])
    assert isinstance(res.exception, VtError) and "must be a " in str(res.exception), (res.exception, res.output)
