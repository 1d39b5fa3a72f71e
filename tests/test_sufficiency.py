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
    """Brightness gives nothing away: the box's mean grey is (dark + light) / 2 up to its pixel noise (sd 8 over
    3,136 pixels: ~0.14 levels) at the high view for each pattern, and the low views' box means agree within a
    level."""
    for i in range(30):
        means = []
        for spec in _patterns(scale, i):
            dark, light = spec["grey"]
            means.append(_box(spec, np.asarray(S.image(spec).convert("L"), dtype=float)).mean())
            assert abs(means[-1] - (dark + light) / 2) < 0.6
        assert max(means) - min(means) < 0.25, means  # the same noise for every pattern of an image
        lows = [_box(s, _view(s, 56), 2).mean() for s in _patterns(scale, i)]
        assert max(lows) - min(lows) <= 1.0, lows


def test_low_view_contrast_separates_the_scales():
    fine = [S.low_view_contrast(S.render(s), s) for i in range(20) for s in _patterns("fine", i)]
    coarse = [S.low_view_contrast(S.render(s), s) for i in range(20) for s in _patterns("coarse", i)]
    assert max(fine) < 6 and min(coarse) > 40  # fine: only the pixel noise is left


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


def _low_boxes(n, seed):
    X, y = [], []
    for i in range(n):
        spec = S.sample("ocr", seed, i, 112, "fine")["spec"]
        box = _box(spec, _view(spec, 56), 2).astype(np.float32)
        X.append((box - box.mean()).ravel())
        y.append(S.PATTERNS.index(spec["pattern"]))
    return np.array(X), np.array(y)


@pytest.mark.slow
def test_a_trained_classifier_cannot_read_fine_patterns_off_the_low_view():
    """The claim's premise, tested the way GRPO would break it: an MLP fitted to 2,000 fine low views (the
    box's pixels) does not tell the pattern on 600 held-out ones much above chance (1/3). With a 3-px linear
    contrast ramp and no noise the filter's edge residue let it read 100 %."""
    torch = pytest.importorskip("torch")
    Xtr, ytr = _low_boxes(2000, 1)
    Xte, yte = _low_boxes(600, 2)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(Xtr.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    opt = torch.optim.Adam(mlp.parameters(), 1e-3)
    xt, yt = torch.tensor(Xtr), torch.tensor(ytr)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(mlp(xt), yt).backward()
        opt.step()
    with torch.no_grad():
        train = (mlp(xt).argmax(1) == yt).float().mean().item()
        held_out = (mlp(torch.tensor(Xte)).argmax(1) == torch.tensor(yte)).float().mean().item()
    assert train > 0.9  # it fitted its training set: the probe had the capacity
    assert held_out < 0.5, held_out


def test_location_cue_adds_only_a_quadrant_tint_and_keeps_the_fine_low_view_flat(tmp_path):
    """`location_cue` (location made visible in content): the same row with and without the cue differs by a tint
    that depends on the pixel's quadrant alone (red by the half in x, blue by the half in y, +-CUE/2), not on the
    answer, uniform over the box; the low view's box stays flat for fine boxes and striped for coarse ones by the
    warm start's VISIBLE rule, with the same contrast as without the cue."""
    from vttrain.models.warmstart_data import VISIBLE
    for i in range(6):
        plain, cued = S.sample("ocr", 0, i, 112, "fine"), S.sample("ocr", 0, i, 112, "fine", cue=True)
        assert plain["answer"] == cued["answer"] and {**plain["spec"], "cue": S.CUE} == cued["spec"]
        a = np.asarray(S.image(plain["spec"]), dtype=int)
        b = np.asarray(S.image(cued["spec"]), dtype=int)
        d = b - a
        assert np.abs(d[:, :, 1]).max() == 0  # green untouched
        x0, y0 = cued["spec"]["box"]
        for y, x in ((0, 0), (0, 111), (111, 0), (111, 111), (y0 + 28, x0 + 28)):  # corners and the box's middle
            assert d[y, x, 0] == (8 if x >= 56 else -8) and d[y, x, 2] == (8 if y >= 56 else -8)
        for p in S.PATTERNS:  # the tint is the same whatever the answer
            other = np.asarray(S.image(dict(cued["spec"], pattern=p)), dtype=int) - np.asarray(
                S.image(dict(plain["spec"], pattern=p)), dtype=int)
            assert (other == d).mean() > 0.999  # all but a few box pixels clipped at 0 or 255
    for scale, flat in (("fine", True), ("coarse", False)):
        for i in range(20):
            spec = S.sample("ocr", 3, i, 112, scale, cue=True)["spec"]
            c = S.low_view_contrast(S.render(spec), spec)
            assert (c < VISIBLE) == flat
            plain = dict(spec)
            del plain["cue"]
            assert c == pytest.approx(S.low_view_contrast(S.render(plain), plain), abs=0.5)
    # the manifest option: sufficiency only, a boolean, a one-line error naming the source
    from build_helpers import build, write_manifest
    for src, msg in (({"family": "shapes", "location_cue": True}, "location_cue` applies to `family: sufficiency"),
                     ({"family": "sufficiency", "location_cue": "yes"}, "location_cue` must be true or false")):
        m = write_manifest(tmp_path, [{"name": "odd", "kind": "synthetic", "task": "ocr", "take": 4, **src}])
        with pytest.raises(VtError, match=f"odd: `{msg}"):
            build(m, tmp_path / "bad")


def test_zoom_manifest_is_the_shipped_one_with_the_cue():
    """manifests/sufficiency-zoom.yaml draws sufficiency.yaml's rows, each with the location cue, half of them fine
    (the curated balance: general and coarse take half as many)."""
    import yaml
    from vt import shipped
    plain, zoom = (yaml.safe_load(open(shipped(n))) for n in ("sufficiency.yaml", "sufficiency-zoom.yaml"))
    def rows(s):
        return {k: v for k, v in s.items() if k not in ("take", "count")}
    assert [dict(rows(s), location_cue=True) for s in plain["sources"]] == [rows(s) for s in zoom["sources"]]
    takes = {s["name"]: s["take"] for s in zoom["sources"]}
    assert takes == {"general": 120, "coarse": 120, "fine": 240}
    assert {k: v for k, v in plain.items() if k not in ("sources", "name")} == \
        {k: v for k, v in zoom.items() if k not in ("sources", "name")}
