"""The image-decision family (`family: sufficiency`): one question whose answer the low view keeps on
coarse images and loses on fine ones; nothing but the pixels tells the two apart."""
import itertools

import numpy as np
import pytest

from vtdata.console import VtError
from vtdata.resolution import view
from vtdata.sources import sufficiency as S


def _view(spec, side):
    return np.asarray(view(S.render(spec), (side, side)).convert("L"), dtype=int)


def _box(spec, arr, scale=1):
    x0, y0, n = spec["box"][0] // scale, spec["box"][1] // scale, spec["box_size"] // scale
    return arr[y0:y0 + n, x0:x0 + n]


def _patterns(scale, i, seed=0):
    spec = S.sample("ocr", seed, i, 112, scale)["spec"]
    return [dict(spec, pattern=p) for p in S.PATTERNS]


def test_fine_low_views_are_indistinguishable_across_answers():
    for i in range(40):
        specs = _patterns("fine", i)
        lows = [_view(s, 56) for s in specs]
        highs = [_view(s, 112) for s in specs]
        for a, b in itertools.combinations(range(3), 2):
            assert np.abs(lows[a] - lows[b]).max() <= 8, (i, S.PATTERNS[a], S.PATTERNS[b])  # the filter's rounding
            assert np.abs(highs[a] - highs[b]).max() >= 100  # plain at the high view


def test_coarse_low_views_differ_plainly_across_answers():
    for i in range(40):
        specs = _patterns("coarse", i)
        lows = [_box(s, _view(s, 56), 2) for s in specs]
        for a, b in itertools.combinations(range(3), 2):
            # a quarter of the box's low-view pixels differ by 60+ grey levels between any two patterns
            assert (np.abs(lows[a] - lows[b]) >= 60).mean() >= 0.25, (i, S.PATTERNS[a], S.PATTERNS[b])


@pytest.mark.parametrize("scale", ["fine", "coarse"])
def test_the_box_mean_is_the_same_for_every_pattern_and_scale(scale):
    """Brightness gives nothing away: the box's mean grey is (dark + light) / 2 exactly, at the high view
    (as drawn) for each pattern, and the low views' box means agree within a level."""
    for i in range(30):
        for spec in _patterns(scale, i):
            dark, light = spec["grey"]
            high = np.asarray(S.image(spec).convert("L"), dtype=float)
            assert _box(spec, high).mean() == (dark + light) / 2
        lows = [_box(s, _view(s, 56), 2).mean() for s in _patterns(scale, i)]
        assert max(lows) - min(lows) <= 1.0, lows


def test_low_view_contrast_separates_the_scales():
    fine = [S.low_view_contrast(S.render(s), s) for i in range(20) for s in _patterns("fine", i)]
    coarse = [S.low_view_contrast(S.render(s), s) for i in range(20) for s in _patterns("coarse", i)]
    assert max(fine) < 2 and min(coarse) > 40


def test_samples_are_deterministic_by_seed():
    for scale in ("fine", "coarse", 4):
        a = [S.sample("ocr", 3, i, 112, scale) for i in range(30)]
        assert a == [S.sample("ocr", 3, i, 112, scale) for i in range(30)]
        assert S.render(a[0]["spec"]) == S.render(S.sample("ocr", 3, 0, 112, scale)["spec"])
        assert a != [S.sample("ocr", 4, i, 112, scale) for i in range(30)]
        assert {s["answer"] for s in a} == set(S.PATTERNS)
    assert {S.sample("general", 0, i)["answer"] for i in range(60)} == set(S.COLORS)


def test_coarse_and_fine_ask_the_same_question():
    assert {S.sample("ocr", 0, i, 112, sc)["question"] for i in range(10) for sc in ("fine", "coarse", 6)} \
        == {S.QUESTIONS["ocr"]}


def test_scale_is_validated():
    for bad in ("medium", 3, 0, 18, True, None):
        with pytest.raises(ValueError, match="scale must be"):
            S.period_of(bad)
    assert [S.period_of(s) for s in ("fine", "coarse", 4, 6)] == [2, 8, 4, 6]


def test_shipped_manifest_builds_three_sources_with_one_detail_question(tmp_path):
    from vt import shipped
    from build_helpers import build, write_manifest
    from vtdata.dataset import read_split
    res = build(shipped("sufficiency.yaml"), tmp_path / "data")
    assert res["counts"]["rejected"] == 0
    rows = read_split(tmp_path / "data", "all", columns=["source", "question"])
    by = {}
    for r in rows:
        by.setdefault(r["source"], []).append(r)
    assert set(by) == {"general", "coarse", "fine"} and all(len(v) == 240 for v in by.values())
    assert {r["question"] for r in by["coarse"]} == {r["question"] for r in by["fine"]} == {S.QUESTIONS["ocr"]}
    # a bad scale is a one-line error naming the source
    m = write_manifest(tmp_path, [{"name": "odd", "kind": "synthetic", "family": "sufficiency", "task": "ocr",
                                   "scale": "medium", "take": 4}])
    with pytest.raises(VtError, match="odd: scale must be"):
        build(m, tmp_path / "bad")
