"""The decoy testbed: the MLP student, and the cost of the shortcut computed by hand."""

import statistics

import pytest
import torch
from scipy import stats

from atkd_lite.experiments.results import ExperimentResults
from atkd_lite.experiments.testbed import CANDIDATES, candidate_markdown, candidate_rows
from atkd_lite.models import MLP, build_model, student_mlp


def test_the_mlp_student_is_rebuilt_from_its_config():
    torch.manual_seed(0)
    net = student_mlp((32, 16))
    twin = build_model(net.config)
    twin.load_state_dict(net.state_dict())
    x = torch.rand(3, 1, 28, 28)
    assert isinstance(twin, MLP) and torch.equal(net(x), twin(x))
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)] == [32, 16, 10]


def test_the_cost_of_the_shortcut_is_the_paired_difference_with_its_t_interval():
    decoy = {0: 0.70, 1: 0.74, 2: 0.75, 3: 0.71}
    clean = {0: 0.94, 1: 0.95, 2: 0.93, 3: 0.95}
    runs = [{"method": f"mlp-256/{name}", "seed": s, "test_acc": v}
            for name, vals in (("decoy", decoy), ("clean", clean)) for s, v in vals.items()]
    res = ExperimentResults(settings={"candidates": ["mlp-256"]}, runs=runs)
    row = candidate_rows(res)[0]
    diffs = [clean[s] - decoy[s] for s in decoy]
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    assert row["cost"] == pytest.approx(statistics.fmean(diffs))
    assert row["ci_low"] == pytest.approx(statistics.fmean(diffs) - half)
    assert row["decoy"] == pytest.approx(statistics.fmean(decoy.values()))
    table = candidate_markdown(res)
    # the mean clears 20 points, the interval (17.2 to 26.3) does not
    assert table.splitlines()[-1].endswith("| 21.8 (17.2 to 26.3) | yes | no |")
    assert set(CANDIDATES) >= {"mlp-512x2", "mlp-256", "small-cnn"}


def test_a_testbed_run_is_saved_and_loaded_with_its_provenance(tmp_path):
    from atkd_lite.experiments.results import load_results
    from atkd_lite.experiments.testbed import run_testbed

    res = run_testbed(candidates=["mlp-256"], seeds=[0, 1], epochs=1, per_class=2,
                      output_dir=tmp_path, device="cpu", progress=False, command="test")
    back = load_results(tmp_path)
    assert [r["method"] for r in back.runs] == ["mlp-256/decoy"] * 2 + ["mlp-256/clean"] * 2
    assert back.provenance["command"] == "test" and (tmp_path / "results.md").exists()
    assert candidate_rows(back) == candidate_rows(res)
