"""Tests for atkd_lite.experiments.faithfulness: maps checked against Captum/hand computations, scores
on images whose answer is known by construction, and the experiment's bookkeeping."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import atkd_lite as ak
from atkd_lite.atcam import normalize_maps
from atkd_lite.attributions import attribution_maps
from atkd_lite.data import ImageSet
from atkd_lite.experiments import ExperimentResults
from atkd_lite.experiments import faithfulness as faith


def _norm(m):
    m = m - m.flatten(1).amin(1)[:, None, None]
    top = m.flatten(1).amax(1)[:, None, None]
    return torch.where(top > 1e-12, m / top.clamp_min(1e-12), torch.zeros_like(m))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return ak.student_cnn("tiny").eval()


def test_atcam_kinds_match_atcam(cnn):
    x = torch.rand(3, 1, 28, 28)
    for kind in ("fma", "mip"):
        want = ak.ATCam(cnn, combine=kind)(x)[1]
        got = attribution_maps(cnn, x, kind)
        assert got.shape == (3, 28, 28) and not got.requires_grad
        torch.testing.assert_close(got, want.detach())


def test_saliency_kinds_agree_and_use_predicted_class(cnn):
    x = torch.rand(4, 1, 28, 28)
    ours = attribution_maps(cnn, x, "sals")
    captum = attribution_maps(cnn, x, "saliency")
    torch.testing.assert_close(ours, captum)
    # the default target is the predicted class: a hand gradient of the argmax logit
    xg = x.clone().requires_grad_(True)
    logits = cnn(xg)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    torch.testing.assert_close(ours, _norm(xg.grad.abs().amax(1)))


def test_gradcam_matches_hand_computation(cnn):
    x = torch.rand(2, 1, 28, 28)
    target = torch.tensor([3, 7])
    feats = {}
    layer = cnn.get_submodule(cnn.atkd_capture_points()[-1])
    handle = layer.register_forward_hook(lambda m, a, out: feats.setdefault("a", out))
    try:
        logits = cnn(x)
    finally:
        handle.remove()
    a = feats["a"]
    grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), a)[0]
    cam = F.relu((grads.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
    got = attribution_maps(cnn, x, "gradcam", target=target)
    torch.testing.assert_close(got, _norm(cam.detach()), atol=1e-5, rtol=1e-4)


def test_integrated_gradients_of_a_linear_model_is_input_times_weight():
    # for f(x) = w·x + b and a black baseline, IG is exactly x * w (Sundararajan et al.)
    torch.manual_seed(1)
    lin = nn.Linear(36, 3)
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.rand(2, 1, 6, 6)
    got = attribution_maps(model, x, "ig", target=torch.tensor([0, 2]), n_steps=8)
    w = lin.weight.detach()[[0, 2]].view(2, 6, 6)
    torch.testing.assert_close(got, _norm((x[:, 0] * w).abs()), atol=1e-5, rtol=1e-4)


def test_int_target_and_bad_input(cnn):
    x = torch.rand(2, 1, 28, 28)
    a = attribution_maps(cnn, x, "sals", target=4)
    b = attribution_maps(cnn, x, "sals", target=torch.tensor([4, 4]))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="unknown map kind"):
        attribution_maps(cnn, x, "lime")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        attribution_maps(cnn, x[0], "fma")
    assert (attribution_maps(cnn, x, "gradcam") >= 0).all()


def _one_pixel_set():
    """Images black except one bright pixel inside the box; boxes known."""
    n, size = 6, 10
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    boxes = torch.tensor([[1, 2, 4, 6], [5, 5, 9, 9], [0, 0, 3, 3],
                          [6, 1, 10, 4], [2, 6, 5, 10], [4, 4, 6, 6]])
    for i, (x0, _y0, _x1, y1) in enumerate(boxes.tolist()):
        images[i, 0, y1 - 1, x0] = 255  # bottom-left pixel of the box
    return ImageSet(images, torch.arange(n) % 2, "one-pixel", ["a", "b"], boxes), boxes, size


def test_score_maps_known_answers():
    data, boxes, size = _one_pixel_set()
    lin = nn.Linear(size * size, 2)
    with torch.no_grad():
        lin.weight.fill_(0.5)  # every pixel weighs the same
        lin.weight[1] = -0.5
        lin.bias.zero_()
    model = nn.Sequential(nn.Flatten(), lin)
    scores = faith.score_maps(model, data, kinds=("ig", "saliency", "intensity"), device="cpu")
    assert scores["n"] == 6
    assert scores["accuracy"] == pytest.approx(0.5)  # class 0 always wins
    # IG = x * w: only the bright pixel, which is inside its box
    ig = scores["maps"]["ig"]
    assert (ig["pointing"], ig["energy"]) == (1.0, 1.0)
    # deleting that pixel (the first 2 % of the pixels) drops p(class 0) from sigmoid(1)
    # to 1/2; inserting it raises p from 1/2 to sigmoid(1): the areas by the trapezoid rule
    p = torch.sigmoid(torch.tensor(1.0)).item()
    first = faith.FRACTIONS[1]
    span = faith.FRACTIONS[-1]
    want_del = ((p + 0.5) / 2 * first + 0.5 * (span - first)) / span
    want_ins = ((0.5 + p) / 2 * first + p * (span - first)) / span
    assert ig["deletion"] == pytest.approx(want_del, abs=1e-6)
    assert ig["insertion"] == pytest.approx(want_ins, abs=1e-6)
    # the gradient of a linear model is the (constant) weight: a flat map has every pixel
    # as its peak, so it points at chance level (the box's share of the image), and a
    # flat map normalises to zeros, so it has no energy anywhere
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).float() / size**2
    assert scores["maps"]["saliency"]["pointing"] == pytest.approx(areas.mean().item())
    assert scores["maps"]["saliency"]["energy"] == 0.0
    # the baselines score too: the intensity map is the bright pixel, inside the box
    assert scores["maps"]["intensity"]["pointing"] == 1.0
    assert model.training  # mode restored


def test_score_maps_errors(cnn):
    plain = ak.load_dataset("mnist5k", "val").subset(range(4))
    with pytest.raises(ValueError, match="no boxes"):
        faith.score_maps(cnn, plain)
    data, _, _ = _one_pixel_set()
    with pytest.raises(ValueError, match="unknown map kind"):
        faith.score_maps(cnn, data, kinds=("fma", "nope"))


def test_chance_scores_is_the_box_share():
    boxes = torch.tensor([[0, 0, 5, 2], [1, 1, 3, 3]])  # 10 and 4 pixels of 100
    c = faith.chance_scores(boxes, (10, 10))
    assert c["pointing"] == pytest.approx((0.10 + 0.04) / 2)
    assert c["energy"] == c["pointing"]


def test_scoring_subset_is_seeded_and_spread_over_classes():
    test = ak.load_dataset("mnist5k", "test")  # ordered by class
    sub = faith.scoring_subset(test, 100)
    assert len(sub) == 100 and len(set(sub.labels.tolist())) == 10
    assert torch.equal(sub.images, faith.scoring_subset(test, 100).images)
    assert faith.scoring_subset(test, None) is test
    assert faith.scoring_subset(test, 10**6) is test
    with pytest.raises(ValueError):
        faith.scoring_subset(test, 0)


def _results():
    def run(method, seed, e):
        return {"method": method, "seed": seed, "test_acc": 0.5 + e, "parameters": 1,
                "time_per_epoch_s": 0.1, "faithfulness": {"n": 10, "accuracy": 0.5, "maps": {
                    "fma": {"pointing": e, "energy": 2 * e}}}}
    return ExperimentResults(
        settings={"seeds": [0, 1], "score_n": 10, "test_name": "t", "chance": {"energy": 0.1}},
        runs=[run("student", 0, 0.2), run("student", 1, 0.4), run("fma", 0, 0.3)],
        teacher={"test_acc": 0.9, "parameters": 5, "faithfulness": {
            "n": 10, "accuracy": 0.9, "maps": {"fma": {"pointing": 0.8, "energy": 0.6}}}})


def test_summary_mean_and_std_over_seeds():
    rows = {r["model"]: r for r in faith.faithfulness_summary(_results())}
    assert list(rows) == ["teacher", "student", "fma"]
    s = rows["student"]
    assert s["n"] == 2 and s["pointing"] == pytest.approx(0.3)
    assert s["pointing_std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.2, 0.4
    assert s["energy"] == pytest.approx(0.6) and s["accuracy"] == pytest.approx(0.8)
    assert rows["teacher"]["pointing_std"] == 0.0 and rows["fma"]["n"] == 1
    md = faith.faithfulness_markdown(_results(), "energy")
    assert "| student | 80.0 ± 14.1 | 60.0 ± 28.3 |" in md
    assert "chance level 10.0%" in md
    with pytest.raises(ValueError, match="metric"):
        faith.faithfulness_markdown(_results(), "iou")


def test_load_committed_results_by_name():
    res = faith.load_faithfulness("cluttered-faithfulness")
    assert res.settings["dataset"] == "cluttered"
    kinds = set(res.teacher["faithfulness"]["maps"])
    assert {"fma", "mip", "sals"} <= kinds <= set(faith.MAP_KINDS)
    for run in res.runs:
        for s in run["faithfulness"]["maps"].values():
            assert 0.0 <= s["pointing"] <= 1.0 and 0.0 <= s["energy"] <= 1.0
    with pytest.raises(FileNotFoundError):
        faith.load_faithfulness("no-such-results")


def test_load_refuses_results_without_scores(tmp_path):
    ExperimentResults(settings={}, runs=[{"method": "student", "seed": 0, "test_acc": 0.5,
                                          "parameters": 1, "time_per_epoch_s": 0.1}]
                      ).save(tmp_path)
    with pytest.raises(ValueError, match="no map scores"):
        faith.load_faithfulness(tmp_path)


def test_run_faithfulness_tiny(tmp_path):
    teacher = ak.student_cnn("small").eval()  # an untrained stand-in keeps this fast
    res = faith.run_faithfulness(methods=("student", "fma"), seeds=(0,), per_class=2,
                                 epochs=1, teacher=teacher, kinds=("fma", "gradcam"),
                                 score_n=8, output_dir=tmp_path, device="cpu",
                                 progress=False)
    assert [r["method"] for r in res.runs] == ["student", "fma"]
    assert res.settings["score_n"] == 8 and res.settings["train_size"] == 20
    assert set(res.runs[0]["faithfulness"]["maps"]) == {"fma", "gradcam"}
    back = faith.load_faithfulness(tmp_path)
    assert back.runs[1]["faithfulness"] == res.runs[1]["faithfulness"]
    assert (tmp_path / "faithfulness.md").exists()
    with pytest.raises(ValueError, match="unknown method"):
        faith.run_faithfulness(methods=("nope",), teacher=teacher)


def test_maps_are_normalised(cnn):
    x = torch.rand(3, 1, 28, 28)
    for kind in faith.MAP_KINDS:
        m = attribution_maps(cnn, x, kind)
        assert m.shape == (3, 28, 28)
        assert m.min() >= 0 and m.max() <= 1 + 1e-6
        torch.testing.assert_close(normalize_maps(m), m, atol=1e-5, rtol=0)
