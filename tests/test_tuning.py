"""The weight search: grids grow at open edges, the best value and the student reference."""

import pytest

from atkd_lite.experiments.tuning import SEARCHES, Search, _extension, best_values, tune


def test_a_grid_grows_only_at_an_open_edge():
    s = Search("fma", "beta", (0.1, 0.3, 1.0, 3.0, 10.0))
    assert _extension(s, {0.1: 0.5, 0.3: 0.6, 1.0: 0.9, 3.0: 0.7, 10.0: 0.6}) is None
    assert _extension(s, {0.1: 0.5, 0.3: 0.6, 1.0: 0.7, 3.0: 0.8, 10.0: 0.9}) == pytest.approx(
        10.0 * 10.0 / 3.0)
    assert _extension(s, {0.1: 0.9, 0.3: 0.6, 1.0: 0.7}) == pytest.approx(0.1 / 3.0)
    bounded = Search("kd", "alpha", (0.5, 0.7, 0.9), upper=1.0)
    assert _extension(bounded, {0.5: 0.1, 0.7: 0.2, 0.9: 0.3}) == 1.0  # capped at the bound
    assert _extension(bounded, {0.5: 0.1, 0.7: 0.2, 0.9: 0.2, 1.0: 0.3}) is None
    whole = Search("student", "epochs", (10, 15, 20), integer=True)
    assert _extension(whole, {10: 0.1, 15: 0.2, 20: 0.3}) == 27


def test_tune_runs_extends_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("ATKD_LITE_CACHE", str(tmp_path / "cache"))
    res = tune(searches=("fma",), seeds=(0,), per_class=2, epochs=1, extend=1,
               teacher_epochs=1, output_dir=tmp_path / "out", device="cpu", progress=False)
    values = [r["value"] for r in res.runs if r["search"] == "fma"]
    assert values[:5] == list(SEARCHES["fma"].grid)
    assert len(values) in (5, 6)  # one extension at most, only at an open edge
    best = best_values(res)["fma"]
    assert best["value"] in values and best["setting"] == "beta"
    assert [r["search"] for r in res.runs].count("student") == 1
    assert (tmp_path / "out" / "tuning.md").read_text().count("| value |") == 1
    with pytest.raises(ValueError, match="unknown or no search"):
        tune(searches=("nope",))
