"""Tests for the shortcut experiment: the decoy digits checked pixel by pixel against the
recipe, RRR's penalty against a hand computation, the teacher check on networks whose
behaviour is known by construction, and the experiment's bookkeeping."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import atkd_lite as ak
from atkd_lite.cli import main
from atkd_lite.data import DECOY_SPLITS, DecoySet, decoy_mnist, embedded_mnist
from atkd_lite.distillers import DEFAULT_ALPHA, Distiller, make_distiller, parse_method
from atkd_lite.experiments import shortcut as sc
from atkd_lite.experiments.results import ExperimentResults
from atkd_lite.metrics import energy_in_box


@pytest.fixture(scope="module")
def train():
    return decoy_mnist("train", rho=1.0)


def _swatch_pixels(data: DecoySet, i: int) -> np.ndarray:
    x0, y0, x1, y1 = data.swatch_boxes[i].tolist()
    return data.images[i, 0, y0:y1, x0:x1].numpy()


# ---------------------------------------------------------------------------------------
# the decoy digits

def test_training_swatch_has_the_label_shade_in_a_corner(train):
    assert isinstance(train, DecoySet) and len(train) == 4000
    assert torch.equal(train.swatch_classes, train.labels)
    digits = embedded_mnist("train").images
    for i in range(0, len(train), 97):
        x0, y0, x1, y1 = train.swatch_boxes[i].tolist()
        assert (x1 - x0, y1 - y0) == (4, 4)
        assert x0 in (0, 24) and y0 in (0, 24)  # a corner of the 28x28 image
        # Ross et al.'s shade, by hand: 255 - 25 * label
        assert (_swatch_pixels(train, i) == 255 - 25 * int(train.labels[i])).all()
        outside = np.ones((28, 28), bool)
        outside[y0:y1, x0:x1] = False
        assert (train.images[i, 0].numpy()[outside] == digits[i, 0].numpy()[outside]).all()


def test_all_four_corners_occur_about_equally(train):
    corners = {tuple(b[:2]) for b in train.swatch_boxes.tolist()}
    assert corners == {(0, 0), (24, 0), (0, 24), (24, 24)}
    counts = torch.unique(train.swatch_boxes[:, :2], dim=0, return_counts=True)[1]
    assert counts.min() > 0.2 * len(train)  # each near 1/4 (binomial sd ~0.7 %)


def test_rho_sets_the_share_of_label_shades_and_couples_the_sets(train):
    for rho in (0.9, 0.5, 0.0):
        d = decoy_mnist("train", rho=rho)
        share = (d.swatch_classes == d.labels).float().mean().item()
        # the label's shade with probability rho, otherwise any of 10 shades (label included)
        assert abs(share - (rho + (1 - rho) / 10)) < 0.025, (rho, share)
        changed = (d.images != train.images).flatten(1).any(1)
        assert torch.equal(changed, d.swatch_classes != train.swatch_classes)
        assert torch.equal(d.swatch_boxes, train.swatch_boxes)


def test_test_splits_share_digits_and_differ_in_the_swatch():
    test, flipped, clean = (decoy_mnist(s) for s in ("test", "flipped", "clean"))
    assert torch.equal(test.digit_index, flipped.digit_index)
    assert torch.equal(test.swatch_boxes, flipped.swatch_boxes)
    assert abs((test.swatch_classes == test.labels).float().mean().item() - 0.1) < 0.035
    assert not (flipped.swatch_classes == flipped.labels).any()
    for i in range(0, 1000, 111):
        assert (_swatch_pixels(flipped, i) == 255 - 25 * int(flipped.swatch_classes[i])).all()
    reference = embedded_mnist("test")
    assert torch.equal(clean.images, reference.images)
    assert torch.equal(clean.labels, reference.labels)
    assert (clean.swatch_classes == -1).all()


@pytest.mark.parametrize("split", ["train", "fit", "val"])
def test_splits_are_the_embedded_digits_with_a_swatch(split):
    d = decoy_mnist(split, rho=0.7)
    plain = embedded_mnist(split)
    assert torch.equal(d.labels, plain.labels)
    assert torch.equal(d.without_swatch().images, plain.images)
    # at most the 16 swatch pixels differ from the embedded digit
    assert (d.images != plain.images).flatten(1).sum(1).max() <= 16


def test_a_digit_carries_the_same_swatch_in_train_and_in_fit_or_val(train):
    where = {int(j): i for i, j in enumerate(train.digit_index)}
    for split in ("fit", "val"):
        d = decoy_mnist(split, rho=1.0)
        rows = torch.tensor([where[int(j)] for j in d.digit_index])
        assert torch.equal(d.images, train.images[rows])
        assert torch.equal(d.swatch_boxes, train.swatch_boxes[rows])


def test_digit_boxes_are_the_tight_ink_boxes():
    d = decoy_mnist("test")
    digits = embedded_mnist("test").images[:, 0].numpy()
    for i in range(0, 1000, 37):
        rows, cols = np.nonzero(digits[i])
        assert d.boxes[i].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_swatch_size_and_seed():
    d = decoy_mnist("val", swatch=7)
    assert ((d.swatch_boxes[:, 2:] - d.swatch_boxes[:, :2]) == 7).all()
    assert torch.equal(decoy_mnist("val").images, decoy_mnist("val").images)
    other = decoy_mnist("val", seed=1)
    assert not torch.equal(other.swatch_boxes, decoy_mnist("val").swatch_boxes)


def test_subset_keeps_swatches_aligned(train):
    few = train.per_class(5, seed=3)
    assert isinstance(few, DecoySet) and len(few) == 50
    for i in range(len(few)):
        assert (_swatch_pixels(few, i) == 255 - 25 * int(few.labels[i])).all()
    assert "DecoySet" in repr(few) and "4x4" in repr(few)


def test_the_metrics_apply_to_both_boxes():
    d = decoy_mnist("test").subset(range(5))
    on_swatch = ak.metrics.box_mask(d.swatch_boxes, (28, 28)).float()
    assert torch.allclose(energy_in_box(on_swatch, d.swatch_boxes), torch.ones(5))
    assert torch.allclose(energy_in_box(on_swatch, d.boxes), torch.zeros(5))


@pytest.mark.parametrize("kwargs, message", [
    ({"rho": -0.1}, "rho"), ({"rho": 1.5}, "rho"), ({"rho": float("nan")}, "rho"),
    ({"rho": "high"}, "rho"), ({"swatch": 0}, "swatch"), ({"swatch": 15}, "corner"),
    ({"swatch": 2.5}, "swatch"), ({"split": "bogus"}, "unknown decoy split"),
])
def test_bad_decoy_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        decoy_mnist(**kwargs)


def test_load_dataset_knows_the_decoy():
    assert "decoy" in ak.data.DATASETS
    d = ak.load_dataset("decoy", "flipped", swatch=3)
    assert isinstance(d, DecoySet) and d.name == "decoy/flipped"
    assert set(DECOY_SPLITS) == {"train", "fit", "val", "test", "flipped", "clean"}


# ---------------------------------------------------------------------------------------
# distill takes a Distiller subclass

class _Plain(Distiller):
    """The base distiller under another name: must train exactly like ``student``."""

    method_name = "plain"


def test_distill_accepts_a_distiller_subclass_and_runs_it_like_a_name():
    data = ak.load_dataset("mnist5k", "val").per_class(3)
    teacher = ak.teacher_cnn().eval()
    histories = []
    for method in ("student", _Plain):
        torch.manual_seed(0)
        res = ak.distill(teacher, ak.student_cnn("tiny"), data, method=method, epochs=2,
                         progress=False, device="cpu")
        histories.append([r["loss"] for r in res.history.records])
    assert res.method == "plain" and res.params["method"] == "plain"
    assert histories[0] == histories[1]


def test_a_distiller_subclass_chooses_kd_and_gets_its_own_step():
    calls = []

    class WithKD(Distiller):
        uses_kd = True

        def forward_train(self, x, y, idx):
            calls.append(len(y))
            return super().forward_train(x, y, idx)

    assert parse_method(WithKD) == ("WithKD", WithKD, True)
    assert make_distiller(WithKD, ak.student_cnn("tiny"), ak.teacher_cnn()).alpha == DEFAULT_ALPHA
    data = ak.load_dataset("mnist5k", "val").per_class(2)
    res = ak.distill(ak.teacher_cnn().eval(), ak.student_cnn("tiny"), data, method=WithKD,
                     epochs=1, progress=False, device="cpu")
    assert calls == [20] and res.params["alpha"] == DEFAULT_ALPHA
    assert "loss_kd" in res.history.last


@pytest.mark.parametrize("method", [int, nn.Linear])
def test_a_class_that_is_not_a_distiller_is_refused(method):
    with pytest.raises(TypeError, match="subclass"):
        ak.distill(ak.teacher_cnn(), ak.student_cnn("tiny"),
                   ak.load_dataset("mnist5k", "val").per_class(1), method=method)


# ---------------------------------------------------------------------------------------
# RRR

def test_rrr_penalty_matches_a_hand_computation():
    data = decoy_mnist("val").per_class(1)
    rrr = sc.RRRDistiller.for_data(data)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    d = rrr(student, ak.teacher_cnn(), beta=2.0)
    idx = torch.tensor([7, 2, 5])  # not in order: masks are looked up by index
    x = data.float_images()[idx]
    y = data.labels[idx]
    _, terms = d.forward_train(x, y, idx)

    # by hand, in float64: d/dx sum_k log p_k = sum_k W_k - K * sum_j p_j W_j
    W = student[1].weight.detach().double()
    b = student[1].bias.detach().double()
    xf = x.flatten(1).double()
    p = torch.softmax(xf @ W.T + b, dim=1)
    grad = W.sum(0)[None] - 10 * p @ W
    masks = torch.zeros(3, 28, 28, dtype=torch.bool)
    for row, i in enumerate(idx.tolist()):
        x0, y0, x1, y1 = data.swatch_boxes[i].tolist()
        masks[row, y0:y1, x0:x1] = True
    want = (grad.pow(2) * masks.flatten(1)).sum(1).mean()
    assert math.isclose(terms["loss_att"].item(), want.item(), rel_tol=1e-4)
    ce = F.cross_entropy(student(x), y)
    assert math.isclose(terms["loss"].item(), ce.item() + 2.0 * want.item(), rel_tol=1e-4)
    terms["loss"].backward()  # double backprop reaches the student's weights
    assert student[1].weight.grad is not None


def test_rrr_is_an_ordinary_method_that_takes_its_masks_from_the_data():
    data = decoy_mnist("train").per_class(2)
    runs = {}
    for method in ("rrr", sc.RRRDistiller.for_data(data)):  # by name, or the bound class
        torch.manual_seed(0)
        res = ak.distill(ak.teacher_cnn().eval(), ak.student_cnn("tiny"), data,
                         method=method, beta=3.0, epochs=1, progress=False, device="cpu")
        assert res.method == "rrr" and res.params["beta"] == 3.0
        assert "loss_att" in res.history.last
        runs[isinstance(method, str)] = res
    # the masks the method took from the data are the bound class's: the same training
    for a, b in zip(runs[True].student.parameters(), runs[False].student.parameters()):
        assert torch.equal(a, b)


def test_rrr_needs_the_true_masks():
    with pytest.raises(TypeError, match="DecoySet"):
        sc.RRRDistiller.for_data(embedded_mnist("val"))
    with pytest.raises(TypeError, match="DecoySet"):
        ak.distill(ak.teacher_cnn().eval(), ak.student_cnn("tiny"),
                   embedded_mnist("val").per_class(1), method="rrr", epochs=1,
                   progress=False, device="cpu")
    d = sc.RRRDistiller(ak.student_cnn("tiny"), ak.teacher_cnn())
    with pytest.raises(ValueError, match="DecoySet"):
        d.forward_train(torch.rand(2, 1, 28, 28), torch.tensor([0, 1]), torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------
# the teacher check and the map scores

class SwatchReader(nn.Module):
    """Reads only the brightest 4x4 corner: the swatch's class from its shade (no digit)."""

    def forward(self, x):
        corners = torch.stack([x[:, 0, :4, :4], x[:, 0, :4, -4:], x[:, 0, -4:, :4],
                               x[:, 0, -4:, -4:]], 1).mean((2, 3))
        shade = 255 * corners.amax(1)
        cls = ((255 - shade) / 25).round().clamp(0, 9).long()
        return 10 * F.one_hot(cls, 10).float()


class Constant(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 10).index_fill_(1, torch.tensor([3]), 1.0)


def test_a_teacher_that_reads_the_swatch_is_refused():
    with pytest.raises(sc.ShortcutTeacherError, match="reads the swatch.*flipped"):
        sc.check_teacher(SwatchReader())
    accs = sc.check_teacher(Constant())  # blind to the swatch: every split alike
    assert accs["flipped_acc"] == accs["clean_acc"] == pytest.approx(0.1)


class CornerEnergy(nn.Module):
    """Logits that depend on the corners' pixels only, so the input gradient lives on
    the swatch (the other corners are empty in almost every image)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 10))

    def forward(self, x):
        c = x[:, 0]
        e = sum(p.pow(2).sum((1, 2)) for p in (c[:, :4, :4], c[:, :4, -4:], c[:, -4:, :4],
                                                 c[:, -4:, -4:]))
        return e[:, None] * self.w[None]


def test_swatch_scores_find_a_map_that_lives_on_the_swatch():
    data = decoy_mnist("test").subset(range(0, 1000, 50))
    scores = sc.swatch_scores(CornerEnergy(), data, kinds=("sals",), device="cpu")
    assert scores["sals"]["swatch"] > 0.98
    assert scores["sals"]["digit"] < 0.05
    with pytest.raises(ValueError, match="unknown map kind"):
        sc.swatch_scores(CornerEnergy(), data, kinds=("ig",))
    with pytest.raises(TypeError, match="DecoySet"):
        sc.swatch_scores(CornerEnergy(), embedded_mnist("val"))


# ---------------------------------------------------------------------------------------
# the experiment

def test_weight_choice_prefers_the_default_on_ties():
    assert sc._choose({0.1: 0.9, 1.0: 0.9, 10.0: 0.8}, 1.0) == 1.0
    assert sc._choose({0.1: 0.95, 1.0: 0.9, 10.0: 0.8}, 1.0) == 0.1


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("shortcut")
    torch.manual_seed(0)
    teacher = ak.student_cnn("tiny").eval()  # any CNN will do for the bookkeeping; a small one is quick
    res = sc.run_shortcut(rhos=(1.0, 0.5), methods=("student", "fma"), seeds=(0, 1),
                          per_class=2, epochs=1, teacher=teacher, tune=True,
                          tune_seeds=(7,), beta_factors=(1.0,), rrr_lambdas=(1.0,),
                          max_extend=0, score_n=20, max_teacher_gap=1.0, output_dir=out,
                          device="cpu", progress=False, batch_size=16)
    return res, out


@pytest.mark.slow
def test_run_shortcut_runs_every_cell_and_saves(tiny_results):
    res, out = tiny_results
    names = [r["method"] for r in res.runs]
    assert names == (["rho=1/student"] * 2 + ["rho=1/fma"] * 2 + ["rho=1/rrr"] * 2
                     + ["rho=0.5/student"] * 2 + ["rho=0.5/fma"] * 2 + ["rho=0.5/rrr"] * 2
                     + ["clean"] * 2)
    for run in res.runs:
        assert set(run["maps"]) == set(sc.MAP_KINDS)
        assert 0 <= run["flipped_acc"] <= 1 and 0 <= run["clean_acc"] <= 1
    # beta_factors=(1.0,) with no extension: each method keeps its default weight
    fma_default = parse_method("fma")[1].default_beta
    assert res.settings["betas"]["1"] == {"fma": fma_default, "rrr": 1.0}
    assert {r["method"] for r in res.settings["tuning"]["0.5"]} == {"fma", "rrr"}
    assert res.teacher["flipped_acc"] is not None and "maps" in res.teacher
    for name in ("results.json", "results.md", "shortcut.md"):
        assert (out / name).exists()
    again = sc.load_shortcut(out)
    assert len(again.runs) == len(res.runs)


@pytest.mark.slow
def test_values_and_verdicts_use_the_shared_protocol(tiny_results):
    res, _ = tiny_results
    values = sc.shortcut_values(res, 1.0)
    assert set(values) == {"student", "fma", "rrr", "clean"}
    assert values["clean"] == sc.shortcut_values(res, 0.5)["clean"]  # one ceiling for all
    rows = sc.shortcut_verdicts(res, 1.0)
    assert [r["method"] for r in rows] == ["fma", "rrr", "clean"]
    assert all("verdict" in r and "p_holm" in r for r in rows)
    swatch = sc.shortcut_values(res, 0.5, "sals:swatch")
    assert all(0 <= v <= 1 for by in swatch.values() for v in by.values())
    with pytest.raises(ValueError, match="rho"):
        sc.shortcut_values(res, 0.3)


@pytest.mark.slow
def test_accuracy_table_intervals_match_scipy(tiny_results):
    from scipy import stats

    res, _ = tiny_results
    rows = {(r["rho"], r["method"]): r for r in sc.accuracy_table(res)}
    accs = [r["test_acc"] for r in res.runs if r["method"] == "rho=1/fma"]
    low, high = stats.t.interval(0.95, len(accs) - 1, loc=np.mean(accs),
                                 scale=stats.sem(accs))
    assert rows[(1.0, "fma")]["low"] == pytest.approx(low)
    assert rows[(1.0, "fma")]["high"] == pytest.approx(high)
    text = sc.shortcut_markdown(res)
    assert "rho = 0.5" in text and "flipped" in text and "teacher" in text
    assert "Ross" in sc.published_markdown(res)
    head = sc.headline_markdown(res).splitlines()
    assert head[0] == "| method | ρ = 1 | ρ = 0.5 |"
    assert [line.split(" | ")[0] for line in head[2:]] == ["| teacher", "| student", "| fma",
                                                           "| rrr", "| clean"]
    assert "| fma | " in sc.map_markdown(res, 0.5, "digit")
    with pytest.raises(ValueError, match="swatch"):
        sc.map_markdown(res, 0.5, "corner")
    tuning = sc.tuning_markdown(res, 1.0)
    assert tuning.count("✓") == 2 and "on random shades" in tuning


def test_a_decoy_set_needs_its_swatches():
    d = decoy_mnist("val").per_class(1)
    with pytest.raises(ValueError, match="swatch_boxes"):
        DecoySet(d.images, d.labels, boxes=d.boxes, swatch_classes=d.swatch_classes,
                 digit_index=d.digit_index)


def test_run_shortcut_checks_its_arguments_before_work():
    for kwargs, message in [({"rhos": ()}, "rho"), ({"rhos": (1.2,)}, "rho"),
                            ({"methods": ("nope",)}, "unknown method"),
                            ({"references": ("oracle",)}, "reference"),
                            ({"swatch": 20}, "swatch"), ({"beta": 1.0}, "tuned"),
                            ({"max_teacher_gap": -1}, "max_teacher_gap")]:
        with pytest.raises(ValueError, match=message):
            sc.run_shortcut(teacher=SwatchReader(), **kwargs)


def test_the_experiment_refuses_a_teacher_that_reads_the_swatch():
    with pytest.raises(sc.ShortcutTeacherError):
        sc.run_shortcut(teacher=SwatchReader(), seeds=(0,), device="cpu", progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--rhos", "1.5"], "probabilities in [0, 1]"),
    (["--swatch", "20"], "fit in a corner"),
    (["--methods", "student,oops"], "unknown method"),
    (["--references", "oracle"], "unknown reference"),
    (["--beta", "1"], "tuned per method"),
])
def test_cli_shortcut_bad_arguments_are_one_line_errors(argv, message, capsys):
    try:
        code = main(["shortcut", *argv])
    except SystemExit as exc:  # argparse's own checks (after its usage line)
        code = exc.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in last and last.startswith("atkd-lite shortcut: error:")


def test_cli_shortcut_help(capsys):
    with pytest.raises(SystemExit):
        main(["shortcut", "--help"])
    assert "--rhos" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# the chapter's exercises

def _add_swatch(image, cls, corner, size=4):
    out = image.clone()
    rows = slice(0, size) if corner.startswith("top") else slice(28 - size, 28)
    cols = slice(0, size) if corner.endswith("left") else slice(28 - size, 28)
    out[rows, cols] = 255 - 25 * cls
    return out


def test_add_swatch_check(capsys):
    from atkd_lite.book import exercises

    exercises.check_add_swatch(_add_swatch)
    assert "✅ Correct" in capsys.readouterr().out


def _in_place(image, cls, corner, size=4):
    image[:size, :size] = 255 - 25 * cls
    return image


@pytest.mark.parametrize("wrong, hint", [
    (lambda im, c, k, s=4: _add_swatch(im, 9 - c, k, s), "shade"),
    (lambda im, c, k, s=4: _add_swatch(im.T, c, k, s).T, "band"),
    (lambda im, c, k, s=4: _add_swatch(im, c, k, 4), "size"),
    (_in_place, "changed the image"),
])
def test_add_swatch_wrong_answers(wrong, hint):
    from atkd_lite.book import exercises

    with pytest.raises(AssertionError, match=hint):
        exercises.check_add_swatch(wrong)


def test_rrr_penalty_check(capsys):
    from atkd_lite.book import exercises

    exercises.check_rrr_penalty(lambda g, m: (g.pow(2).sum(1) * m).flatten(1).sum(1).mean())
    assert "✅ Correct" in capsys.readouterr().out
    for wrong, hint in [
        (lambda g, m: (g.pow(2).sum(1) * m).sum(), "mean"),
        (lambda g, m: (g.abs().sum(1) * m).flatten(1).sum(1).mean(), "square"),
        (lambda g, m: (g.pow(2).sum(1) * m).sum() / m.sum(), "masked pixels"),
    ]:
        with pytest.raises(AssertionError, match=hint):
            exercises.check_rrr_penalty(wrong)


def test_exercise_stubs_propagate():
    from atkd_lite.book import exercises

    def stub(*args):
        raise NotImplementedError("exercise")

    for check in (exercises.check_add_swatch, exercises.check_rrr_penalty):
        with pytest.raises(NotImplementedError):
            check(stub)


# ---------------------------------------------------------------------------------------
# a grid stopped part-way: the results say which part ran, the tables use only that part

def _part_of(res, keep):
    """A copy of ``res`` holding only the runs for which ``keep(run)`` is true."""
    import copy

    return ExperimentResults(settings=copy.deepcopy(res.settings),
                                runs=[r for r in res.runs if keep(r)],
                                teacher=res.teacher, provenance=dict(res.provenance))


@pytest.mark.slow
def test_a_whole_grid_records_that_it_is_complete(tiny_results):
    res, out = tiny_results
    st = sc.grid_status(res)
    # 2 rho x (student, fma, rrr) x 2 seeds + clean x 2 seeds, counted by hand
    assert (st["runs"], st["planned_runs"], st["complete"]) == (14, 14, True)
    assert st["completed_rhos"] == [1.0, 0.5] and st["missing_rhos"] == []
    assert st["completed_references"] == ["rrr", "clean"]
    assert res.settings["completed_rhos"] == [1.0, 0.5]  # recorded while running
    assert "Partial grid" not in sc.shortcut_markdown(res)


@pytest.mark.slow
def test_a_stopped_grid_reports_only_what_ran(tiny_results, tmp_path):
    res, _ = tiny_results
    part = _part_of(res, lambda r: r.get("rho") == 1.0)  # rho = 0.5 and clean never ran
    st = sc.grid_status(part)
    assert (st["runs"], st["planned_runs"], st["complete"]) == (6, 14, False)
    assert (st["completed_rhos"], st["missing_rhos"]) == ([1.0], [0.5])
    assert (st["completed_references"], st["missing_references"]) == (["rrr"], ["clean"])
    assert sc.rhos_with_runs(part) == [1.0]
    assert {r["rho"] for r in sc.accuracy_table(part)} == {1.0}
    assert "clean" not in {r["method"] for r in sc.accuracy_table(part)}
    assert sc.headline_markdown(part).splitlines()[0] == "| method | ρ = 1 |"
    text = sc.shortcut_markdown(part)
    assert "Partial grid" in text and "Not run: rho = 0.5" in text
    assert "rho = 0.5 (random-shade" not in text and "clean" in text  # named as missing
    with pytest.raises(ValueError, match="no runs"):
        sc.shortcut_verdicts(part, 0.5)
    assert "| this book (ρ = 1) |" in sc.published_markdown(part)
    # what the loader derives from the runs, for saved results
    part.save(tmp_path)
    again = sc.load_shortcut(tmp_path)
    assert again.settings["rhos"] == [1.0, 0.5]  # the plan is kept
    assert again.settings["completed_rhos"] == [1.0]
    assert again.settings["completed_references"] == ["rrr"]


@pytest.mark.slow
def test_a_rho_stopped_midway_is_partial_but_shown(tiny_results):
    res, _ = tiny_results
    part = _part_of(res, lambda r: not (r["method"] == "rho=0.5/fma" and r["seed"] == 1))
    st = sc.grid_status(part)
    assert (st["completed_rhos"], st["partial_rhos"]) == ([1.0], [0.5])
    assert sc.rhos_with_runs(part) == [1.0, 0.5]
    assert "Part-way: rho = 0.5" in sc.shortcut_markdown(part)
    # the family is compared on the seeds all its members have: here seed 0 alone is
    # shared by fma, so fma leaves the family and rrr is compared on both seeds
    rows = sc.shortcut_verdicts(part, 0.5)
    assert [(r["method"], r["n"]) for r in rows] == [("rrr", 2), ("clean", 2)]


def test_completion_command_runs_the_planned_grid_through_the_cli():
    from atkd_lite.cli import build_parser

    res = ExperimentResults(
        settings={"rhos": [1.0, 0.5], "references": ["rrr", "clean"], "methods": ["student"],
                  "seeds": [0, 1]},
        provenance={"command": "atkd-lite shortcut --output-dir out/x --rhos 1 "
                               "--references rrr --seeds 0,1 --device cpu"})
    cmd = sc.completion_command(res)
    words = cmd.split()
    assert words[:2] == ["atkd-lite", "shortcut"]
    assert words.count("--rhos") == words.count("--output-dir") == 1
    args = build_parser().parse_args(words[1:])  # the command is one the CLI accepts
    assert args.rhos == [1.0, 0.5] and args.references == ["rrr", "clean"]
    assert args.output_dir == "out/x" and args.seeds == [0, 1] and args.device == "cpu"
    assert "--output-dir elsewhere" in sc.completion_command(res, output_dir="elsewhere")


# ---------------------------------------------------------------------------------------
# a grid run as parts side by side, merged

TINY = dict(methods=("student", "fma"), seeds=(0, 1), per_class=2, epochs=1, tune=True,
            tune_seeds=(7,), beta_factors=(1.0,), rrr_lambdas=(1.0,), max_extend=0,
            score_n=20, max_teacher_gap=1.0, device="cpu", progress=False, batch_size=16)


def _committed(res, commit="c0ffee"):
    """The part as if run from a clean checkout (the test tree may have local changes)."""
    res.provenance["git"] = {"commit": commit, "dirty": False}
    return res


@pytest.mark.slow
def test_parts_run_side_by_side_merge_into_the_one_command_grid(tiny_results, tmp_path):
    whole, _ = tiny_results
    torch.manual_seed(0)
    teacher = ak.student_cnn("tiny").eval()  # the fixture's teacher, rebuilt
    a = sc.run_shortcut(rhos=(1.0,), references=("rrr",), teacher=teacher,
                        command="atkd-lite shortcut --rhos 1 --references rrr", **TINY)
    b = sc.run_shortcut(rhos=(0.5,), references=("rrr", "clean"), teacher=teacher,
                        command="atkd-lite shortcut --rhos 0.5 --references rrr,clean", **TINY)
    a.provenance["wall_time_s"], b.provenance["wall_time_s"] = 10.0, 30.0
    merged = sc.merge_shortcut([_committed(a), _committed(b)], output_dir=tmp_path)
    # the same runs, in the same order, with the same results as the one command
    key = ("method", "seed", "test_acc", "flipped_acc", "clean_acc", "val_acc", "beta", "maps")
    assert [[r[k] for k in key] for r in merged.runs] == [[r[k] for k in key]
                                                           for r in whole.runs]
    for k in ("rhos", "references", "betas", "tuning", "completed_rhos",
              "completed_references"):
        assert merged.settings[k] == whole.settings[k], k
    assert sc.grid_status(merged)["complete"]
    p = merged.provenance
    assert p["wall_time_s"] == 30.0  # side by side: the longest part
    assert [q["command"] for q in p["parts"]] == [a.provenance["command"],
                                                  b.provenance["command"]]
    words = p["command"].split()
    assert words[words.index("--rhos") + 1] == "1,0.5"
    assert words[words.index("--references") + 1] == "rrr,clean"
    md = (tmp_path / "results.md").read_text()
    assert "Run as 2 parts side by side" in md and "--rhos 0.5 --references rrr,clean" in md
    assert sc.load_shortcut(tmp_path).runs == merged.runs


def _fake_part(rhos, references, runs, commit="c0ffee", **settings):
    s = {"rhos": list(rhos), "references": list(references), "methods": ["student"],
         "seeds": [0], "epochs": 1, "tuning": {}, "betas": {}, **settings}
    return ExperimentResults(settings=s, runs=runs, teacher={"test_acc": 0.9},
                             provenance={"git": {"commit": commit, "dirty": False},
                                         "command": "atkd-lite shortcut", "wall_time_s": 1.0})


def _run(rho, method="student"):
    return {"rho": rho, "base_method": "clean" if rho is None else method, "seed": 0,
            "method": "clean" if rho is None else f"rho={rho:g}/{method}"}


@pytest.mark.parametrize("second, message", [
    (_fake_part([1.0], ["clean"], [_run(1.0), _run(None)]), "more than one part"),
    (_fake_part([0.9], ["clean"], [_run(0.9), _run(None)]), "clean reference ran in more"),
    (_fake_part([0.9], [], [_run(0.9)], commit="beef"), "different"),
    (_fake_part([0.9], [], [_run(0.9)], epochs=2), "'epochs'"),
])
def test_parts_that_are_not_one_grid_are_refused(second, message):
    first = _fake_part([1.0], ["clean"], [_run(1.0), _run(None)])
    with pytest.raises(ValueError, match=message):
        sc.merge_shortcut([first, second])


def test_merge_needs_two_clean_parts():
    first = _fake_part([1.0], [], [_run(1.0)])
    with pytest.raises(ValueError, match="at least two"):
        sc.merge_shortcut([first])
    dirty = _fake_part([0.9], [], [_run(0.9)])
    dirty.provenance["git"]["dirty"] = True
    with pytest.raises(ValueError, match="uncommitted"):
        sc.merge_shortcut([first, dirty])
    merged = sc.merge_shortcut([first, _fake_part([0.9], ["clean"], [_run(0.9), _run(None)])])
    assert merged.settings["rhos"] == [1.0, 0.9] and merged.settings["references"] == ["clean"]
    assert sc.grid_status(merged)["complete"]


def test_cli_shortcut_merge_bad_part_is_one_line_error(tmp_path, capsys):
    assert main(["shortcut-merge", str(tmp_path / "nothing"), str(tmp_path),
                 "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atkd-lite shortcut-merge: error: no results at") and "\n" not in err


def test_tuning_hindsight_compares_the_choice_with_random_shades():
    def row(method, beta, val, rand, chosen, on="val"):
        return {"method": method, "beta": beta, "val_acc": val, "val_random_acc": rand,
                "chosen": chosen, "selected_on": on}

    rows = [row("at", 0.1, 0.96, 0.91, True), row("at", 10.0, 0.95, 0.94, False),
            row("fma", 0.3, 0.96, 0.92, True), row("fma", 3.0, 0.94, 0.92, False),  # a tie
            row("rrr", 0.1, 0.95, 0.95, True, on="val_random")]
    res = ExperimentResults(settings={"tuning": {"0.9": rows}})
    got = {r["method"]: r for r in sc.tuning_hindsight(res, 0.9)}
    assert set(got) == {"at", "fma"}  # RRR is already chosen on random shades
    assert (got["at"]["chosen"], got["at"]["hindsight"]) == (0.1, 10.0)
    assert got["at"]["gain"] == pytest.approx(0.03)
    assert (got["fma"]["hindsight"], got["fma"]["gain"]) == (0.3, 0.0)  # ties: the choice
    assert sc.tuning_hindsight(res, 1.0) == []


@pytest.mark.slow
def test_the_oracle_tuning_chooses_every_weight_on_random_shades():
    torch.manual_seed(0)
    teacher = ak.student_cnn("tiny").eval()
    kw = {**TINY, "methods": ("student", "fma"), "seeds": (0,), "beta_factors": (0.1, 1.0)}
    res = sc.run_shortcut(rhos=(1.0,), references=("rrr",), teacher=teacher,
                          select_on="val_random", **kw)
    rows = res.settings["tuning"]["1"]
    assert {r["selected_on"] for r in rows} == {"val_random"}
    assert res.settings["select_on"] == "val_random"
    for method in ("fma", "rrr"):  # the chosen weight is the best on random shades
        mine = [r for r in rows if r["method"] == method]
        best = max(r["val_random_acc"] for r in mine)
        assert next(r for r in mine if r["chosen"])["val_random_acc"] == best
    assert sc.tuning_hindsight(res, 1.0) == []  # nothing to regret: the oracle chose
    with pytest.raises(ValueError, match="select_on must be one of"):
        sc.run_shortcut(rhos=(1.0,), teacher=teacher, select_on="test", **kw)


def test_a_final_students_validation_digits_are_none_of_its_training_digits(tiny_results):
    """The decoy ``val`` split is part of ``train`` (``fit`` + ``val``), so a student trained
    on ``train`` had seen some of its digits (116 of 500 with 100 digits a class; all of
    them with the whole split): its ``val_acc`` was partly a training accuracy. Only the
    held-out digits are scored now, and none when every one was trained on."""
    from atkd_lite.data import decoy_mnist
    from atkd_lite.experiments.shortcut.grid import held_out

    full, val = decoy_mnist("train"), decoy_mnist("val")
    train = full.per_class(100, seed=0)
    kept = held_out(val, train)
    seen = set(train.digit_index.tolist())
    overlap = sum(d in seen for d in val.digit_index.tolist())
    assert overlap > 0 and len(kept) == len(val) - overlap
    assert not seen & set(kept.digit_index.tolist())
    assert held_out(val, full) is None  # the MLP grids train on every training digit
    res, _ = tiny_results
    assert set(res.settings["val_held_out"]) == {"1", "0.5"}
    assert all(0 < n <= len(val) for n in res.settings["val_held_out"].values())
    assert all("val_acc" in r for r in res.runs)
    assert "digits the students did not train on" in sc.shortcut_markdown(res)
