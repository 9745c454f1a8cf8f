"""Tests for the MLP testbed's methods and reading: the teacher's map as RRR's mask
(checked against a hand computation of both networks' gradients), the controls' masks,
the share of the shortcut's cost won back (against a computation with SciPy), and the
experiment's refusals on an MLP."""

import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

import atkd_lite as ak
from atkd_lite.cache import TeacherCache
from atkd_lite.cli import MLP_NAMES
from atkd_lite.data import decoy_mnist
from atkd_lite.distillers import make_distiller
from atkd_lite.experiments import shortcut as sc
from atkd_lite.experiments.results import ExperimentResults
from atkd_lite.metrics import box_mask
from atkd_lite.models import MLP_STUDENTS, build_student


def _linear_student():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def _input_grad_by_hand(student, x):
    """d/dx Σ_k log p_k for a linear softmax student, in float64: Σ_k W_k − K Σ_j p_j W_j."""
    W = student[1].weight.detach().double()
    b = student[1].bias.detach().double()
    p = torch.softmax(x.flatten(1).double() @ W.T + b, dim=1)
    return W.sum(0)[None] - W.shape[0] * p @ W  # (B, 784)


def _saliency_by_hand(net, x, y):
    """max_c |∂z_y/∂x|, min-max normalised per image (the SALS map, DESIGN's definition)."""
    x = x.clone().requires_grad_(True)
    z = net(x)
    (g,) = torch.autograd.grad(z.gather(1, y[:, None]).sum(), x)
    m = g.abs().amax(1).flatten(1)
    lo, hi = m.min(1, keepdim=True).values, m.max(1, keepdim=True).values
    return ((m - lo) / (hi - lo)).view(-1, *x.shape[-2:])


def test_tmask_penalty_matches_a_hand_computation():
    student, teacher = _linear_student(), ak.teacher_cnn().eval()
    x, y = decoy_mnist("val").float_images()[:3], decoy_mnist("val").labels[:3]
    d = make_distiller("tmask", student, teacher, beta=0.5)
    _, terms = d.forward_train(x, y, None)
    weight = 1 - _saliency_by_hand(teacher, x, y).double().flatten(1)
    want = (_input_grad_by_hand(student, x).pow(2) * weight).sum(1).mean()
    assert math.isclose(terms["loss_att"].item(), want.item(), rel_tol=1e-4)
    ce = F.cross_entropy(student(x), y)
    assert math.isclose(terms["loss"].item(), ce.item() + 0.5 * want.item(), rel_tol=1e-4)
    terms["loss"].backward()  # double backprop reaches the student's weights
    assert student[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["tmask", "tmask-fma+kd"])
def test_the_cache_gives_the_same_term_as_the_teacher_run_online(method):
    data = decoy_mnist("val").per_class(1)
    teacher = ak.teacher_cnn().eval()
    cache = TeacherCache.build(teacher, data, maps=["sals", "fma"], at=False, device="cpu",
                               progress=False)
    idx = torch.tensor([4, 0, 9])
    x, y = data.float_images()[idx], data.labels[idx]
    online = make_distiller(method, _linear_student(), teacher).forward_train(x, y, idx)[1]
    cached = make_distiller(method, _linear_student(), teacher,
                            cache=cache).forward_train(x, y, idx)[1]
    for k in online:
        assert torch.allclose(online[k], cached[k], rtol=1e-3, atol=1e-5), k  # batch rounding


def test_the_teacher_map_sets_where_the_penalty_acts():
    """A map of ones frees every pixel; a map of zeros is RRR with every pixel as the mask."""
    student = _linear_student()
    d = make_distiller("tmask", student, ak.teacher_cnn().eval())
    x = torch.rand(2, 1, 28, 28)
    _, grad = d.student_forward(x, None)
    assert d.attention_term(grad, torch.ones(2, 28, 28)).item() == 0.0
    everywhere = grad.detach().double().pow(2).flatten(1).sum(1).mean().item()
    assert math.isclose(d.attention_term(grad, torch.zeros(2, 28, 28)).item(), everywhere,
                        rel_tol=1e-5)
    # a coarser map (an FMA map at a capture point's size) is resized to the input's
    assert d.attention_term(grad, torch.ones(2, 7, 7)).item() == 0.0


def test_the_controls_move_the_mask_and_keep_the_images():
    data = decoy_mnist("train").per_class(3)
    wrong = sc._with_mask_boxes(data, "opposite")
    everywhere = sc._with_mask_boxes(data, "all")
    assert torch.equal(wrong.images, data.images) and torch.equal(wrong.labels, data.labels)
    true_m = box_mask(data.swatch_boxes, data.image_size)
    wrong_m = box_mask(wrong.swatch_boxes, data.image_size)
    assert not (true_m & wrong_m).any()  # another corner
    assert torch.equal(true_m.sum((1, 2)), wrong_m.sum((1, 2)))  # of the same size
    assert torch.equal(torch.flip(true_m, (1, 2)), wrong_m)  # mirrored on both axes
    assert box_mask(everywhere.swatch_boxes, data.image_size).all()
    centre = box_mask(sc._with_mask_boxes(data, "centre").swatch_boxes, data.image_size)
    assert torch.equal(centre.sum((1, 2)), true_m.sum((1, 2)))  # the swatch's size
    every_swatch = box_mask(decoy_mnist("train").swatch_boxes, data.image_size).any(0)
    assert not (centre.any(0) & every_swatch).any()  # where no swatch ever is
    assert centre[0, 12:16, 12:16].all()  # the middle of the 28 x 28 image


def test_controls_are_chosen_by_name_and_need_their_methods():
    with pytest.raises(ValueError, match="unknown control"):
        sc.run_shortcut(methods=("student",), controls=["rrr-elsewhere"], seeds=(0,))
    with pytest.raises(ValueError, match=r"lacks, \['tmask'\]"):
        sc.run_shortcut(methods=("student",), references=("rrr",),
                        controls=["rrr-centre", "rrr-all"], seeds=(0,))
    cells = sc.control_cells(decoy_mnist("train").per_class(1), None, {"rrr": 0.1}, "mlp-256",
                             1.0, ["rrr-centre"])
    assert [c.label for c in cells] == ["rho=1/rrr-centre"]
    assert cells[0].settings == {"beta": 0.1} and cells[0].extra["control"]


def _results(acc: dict) -> ExperimentResults:
    runs = [{"rho": None if m == "clean" else 1.0, "base_method": m, "seed": s, "test_acc": a}
            for m, by in acc.items() for s, a in enumerate(by)]
    return ExperimentResults(settings={"rhos": [1.0], "methods": ["student", "tmask"],
                                       "references": ["rrr", "clean"], "seeds": [0, 1, 2, 3]},
                             runs=runs)


def test_won_back_is_the_per_seed_share_with_its_t_interval():
    acc = {"student": [0.70, 0.72, 0.71, 0.69], "clean": [0.94, 0.95, 0.93, 0.95],
           "rrr": [0.93, 0.93, 0.92, 0.94], "tmask": [0.68, 0.75, 0.70, 0.72]}
    rows = {r["method"]: r for r in sc.won_back(_results(acc), 1.0)}
    for m in ("rrr", "tmask"):
        shares = [(a - p) / (c - p) for a, p, c in zip(acc[m], acc["student"], acc["clean"])]
        lo, hi = stats.t.interval(0.95, len(shares) - 1, loc=statistics.fmean(shares),
                                  scale=stats.sem(shares))
        r = rows[m]
        assert math.isclose(r["diff"], statistics.fmean(shares))
        assert math.isclose(r["ci_low"], lo) and math.isclose(r["ci_high"], hi)
        assert math.isclose(r["gain"], statistics.fmean(acc[m]) - statistics.fmean(acc["student"]))
    # one Holm family of two: the larger raw p is unchanged, the smaller doubled
    p = {m: stats.ttest_rel(acc[m], acc["student"]).pvalue for m in ("rrr", "tmask")}
    assert math.isclose(rows["rrr"]["p_holm"], min(1.0, 2 * min(p.values())), rel_tol=1e-6)
    assert rows["rrr"]["verdict"] == "better"
    assert "| rrr |" in sc.won_back_markdown(rows.values())


def test_won_back_refuses_a_grid_without_a_cost():
    acc = {"student": [0.70, 0.72], "clean": [0.94, 0.71], "tmask": [0.8, 0.8]}
    with pytest.raises(ValueError, match="no cost of the shortcut"):
        sc.won_back(_results(acc), 1.0)
    with pytest.raises(ValueError, match="no 'clean' runs"):
        sc.won_back(_results({"student": [0.7, 0.7], "tmask": [0.8, 0.8]}), 1.0)


def test_an_mlp_student_runs_only_input_gradient_methods():
    for methods, message in [(("student", "fma"), "no feature maps"),
                             (("student", "at+kd"), "no feature maps")]:
        with pytest.raises(ValueError, match=message):
            sc.run_shortcut(methods=methods, student_size="mlp-512x2", seeds=(0,))
    with pytest.raises(ValueError, match="controls"):
        sc.run_shortcut(methods=("student", "sals"), student_size="mlp-512x2", seeds=(0,),
                        controls=True)
    with pytest.raises(ValueError, match="unknown student"):
        sc.run_shortcut(methods=("student",), student_size="mlp-9", seeds=(0,))
    assert sc.map_kinds_for(ak.student_mlp()) == ("sals",)
    assert sc.map_kinds_for(ak.student_cnn()) == sc.MAP_KINDS


def test_mlp_students_by_name():
    assert MLP_NAMES == list(MLP_STUDENTS)  # the CLI's choices, typed out for a quick --help
    net = build_student("mlp-256", in_channels=3, num_classes=4, image_size=(8, 8))
    assert net(torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    assert net[1].in_features == 3 * 8 * 8
    with pytest.raises(ValueError, match="mlp-512x2"):
        build_student("huge")


def _row(method, share, low, high, verdict, p=0.01):
    return {"method": method, "baseline": "student", "diff": share, "ci_low": low,
            "ci_high": high, "verdict": verdict, "p_holm": p}


@pytest.mark.parametrize("tmask, head", [
    (_row("tmask", 0.8, 0.7, 0.9, "better"), "**Yes, for most of the cost.**"),
    (_row("tmask", 0.6, 0.4, 0.8, "better"), "**In part.**"),
    (_row("tmask", 0.1, -0.1, 0.3, "no detectable difference at this sample size", 0.4),
     "**No.**"),
    (_row("tmask", -0.2, -0.3, -0.1, "worse"), "**No.**"),
])
def test_the_answer_follows_its_rules_and_quotes_the_rows(tmask, head):
    rrr = _row("rrr", 0.95, 0.9, 1.0, "better")
    ctrl = {"method": "tmask", "baseline": "rrr-all", "diff": 0.012, "verdict": "better",
            "p_holm": 0.003}
    text = sc.teacher_mask_answer([tmask, rrr], [ctrl])
    assert text.startswith(head)
    assert f"{100 * tmask['diff']:.0f} % of the cost" in text and "95 % of the cost" in text
    assert "does better than the same penalty on every pixel" in text and "+1.2 points" in text
    assert "acts as a prior" not in text  # no control said the map's content is generic
    same = {"method": "tmask", "baseline": "tmask-shuffled", "diff": -0.001,
            "verdict": "equivalent", "margin": 0.01, "p_holm": 0.4}
    shuffled = _row("tmask-shuffled", 0.7, 0.6, 0.8, "better")
    text = sc.teacher_mask_answer([tmask, rrr, shuffled], [ctrl, same])
    assert "the teacher maps of other images, 70 %" in text or \
        "the teacher maps of other images won back 70 %" in text
    assert "is equivalent, within ±1 point, to the teacher maps" in text
    assert text.endswith("not as knowledge of where it is in each image.")
    # not shown equivalent (only not detectably different): the answer cannot tell
    unsure = {**same, "verdict": "inconclusive at this sample size"}
    text = sc.teacher_mask_answer([tmask, rrr, shuffled], [ctrl, unsure])
    assert "acts as a prior" not in text and text.endswith("these runs cannot tell.")
    with pytest.raises(ValueError, match="rrr"):
        sc.teacher_mask_answer([tmask])


@pytest.mark.parametrize("verdict, says", [
    ("equivalent", "acted as a prior of where digits lie"),
    ("better", "the map itself matters"),
    ("inconclusive at this sample size", "The controls cannot say how"),
    ("worse", "The controls cannot say how"),
])
def test_the_prior_clause_follows_the_equivalence_rule(verdict, says):
    rows = [_row("rrr-all", 0.83, 0.81, 0.84, "better")]
    ctrl = {"method": "tmask", "baseline": "tmask-shuffled", "diff": -0.001,
            "verdict": verdict, "margin": 0.01}
    text = sc.prior_clause(rows, [ctrl])
    assert says in text
    assert ("83 %" in text) == (verdict != "better")
    with pytest.raises(ValueError, match="rrr-all"):
        sc.prior_clause([], [ctrl])


def test_chosen_weights_show_every_grid_and_the_edges():
    def grid(rows):
        return ExperimentResults(settings={"tuning": {"1": rows}})
    practitioner = grid([
        {"method": "tmask", "beta": b, "chosen": b == 0.01, "edge": True, "selected_on": "val"}
        for b in (0.01, 0.1, 1.0)])
    oracle = grid([
        {"method": "tmask", "beta": b, "chosen": b == 0.1, "edge": False,
         "selected_on": "val_random"} for b in (0.01, 0.1, 1.0)]
        + [{"method": "rrr", "beta": 10.0, "chosen": True, "edge": False,
            "selected_on": "val_random"}])
    table = sc.chosen_weights_markdown({"practitioner": practitioner, "oracle": oracle})
    lines = table.splitlines()
    assert lines[2] == ("| tmask | 0.01 (0.01 to 1) (edge) | 0.1 (0.01 to 1) on random "
                        "shades |")
    assert lines[3] == "| rrr | — | 10 (10 to 10) on random shades |"


def test_the_controls_are_one_family_wherever_they_are_shown():
    from atkd_lite.experiments.stats import holm

    res = sc.load_shortcut("decoy-mlp")
    rows = sc.control_comparisons(res)
    assert [(r["method"], r["baseline"]) for r in rows] == list(sc.CONTROL_PAIRS)
    values = sc.shortcut_values(res, 1.0)
    raw = [stats.ttest_rel(list(values[a].values()), list(values[b].values())).pvalue
           for a, b in sc.CONTROL_PAIRS]
    for r, p in zip(rows, holm(raw)):
        assert math.isclose(r["p_holm"], p, rel_tol=1e-6)
        assert r["margin"] == 0.01  # "no better than its control" is an equivalence claim
