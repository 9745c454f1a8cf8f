"""attribution_maps (against Captum and ATCam), the ATCam cost benchmark and the chapter-4
figures."""

import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam

import atkd_lite as ak
from atkd_lite.attributions import MAP_METHODS, attribution_maps, model_randomisation
from atkd_lite.book import viz
from atkd_lite.experiments.overhead import FLOOR, VARIANTS, attention_overhead, read_once


@pytest.fixture(scope="module")
def net_and_x():
    torch.manual_seed(0)
    net = ak.student_cnn("tiny").eval()
    x = torch.rand(4, 1, 28, 28)
    return net, x


def minmax(m):
    flat = m.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return (m - lo) / (hi - lo)


@pytest.mark.parametrize("method", MAP_METHODS)
def test_every_method_gives_normalised_maps(net_and_x, method):
    net, x = net_and_x
    maps = attribution_maps(net, x, method)
    assert maps.shape == (4, 28, 28) and maps.dtype == torch.float32
    assert not maps.requires_grad
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_sals_agrees_with_captum_saliency(net_and_x):
    net, x = net_and_x
    assert torch.allclose(attribution_maps(net, x, "sals", target=3),
                          attribution_maps(net, x, "saliency", target=3), atol=1e-5)


def test_ig_is_captums_abs_attribution(net_and_x):
    net, x = net_and_x
    ref = IntegratedGradients(net).attribute(x, baselines=0 * x, target=2, n_steps=8)
    got = attribution_maps(net, x, "ig", target=2, n_steps=8)
    assert torch.allclose(got, minmax(ref.abs()[:, 0]), atol=1e-4)


def test_gradcam_is_upsampled_layer_gradcam(net_and_x):
    net, x = net_and_x
    layer = net.get_submodule(net.atkd_capture_points()[-1])
    cam = LayerGradCam(net, layer).attribute(x, target=1, relu_attributions=True)
    ref = torch.nn.functional.interpolate(cam, size=(28, 28), mode="bilinear")[:, 0]
    keep = ref.flatten(1).amax(1) > ref.flatten(1).amin(1)  # skip all-zero CAMs
    got = attribution_maps(net, x, "gradcam", target=1)
    assert torch.allclose(got[keep], minmax(ref[keep]), atol=1e-5)


def test_fma_is_atcam_and_predicted_class_is_default(net_and_x):
    net, x = net_and_x
    with torch.no_grad():
        logits, ref = ak.ATCam(net, first=1, last=1, combine="fma")(x)
    assert torch.allclose(attribution_maps(net, x, "fma", first=1, last=1), ref)
    pred = logits.argmax(1)
    assert torch.allclose(attribution_maps(net, x, "sals"),
                          attribution_maps(net, x, "sals", target=pred))


def test_random_maps_are_seeded_and_mode_is_restored(net_and_x):
    net, x = net_and_x
    net.train()
    try:
        a = attribution_maps(net, x, "random", seed=1)
        assert net.training
    finally:
        net.eval()
    assert torch.equal(a, attribution_maps(net, x, "random", seed=1))
    assert not torch.equal(a, attribution_maps(net, x, "random", seed=2))


@pytest.mark.parametrize("bad, err", [(dict(method="lime"), ValueError),
                                      (dict(x=torch.rand(28, 28)), ValueError),
                                      (dict(x=[[0.0]]), TypeError)])
def test_bad_input_is_a_clear_error(net_and_x, bad, err):
    net, x = net_and_x
    kw = {"x": x, "method": "fma", **bad}
    with pytest.raises(err, match="choose one of|B, C, H, W"):
        attribution_maps(net, kw["x"], kw["method"])


# ----------------------------------------------------------------------- benchmark
def test_attention_overhead_reports_every_variant():
    medians, ratios = attention_overhead(device="cpu", batch=2, reps=2, warmup=0,
                                         model=ak.student_cnn("tiny"))
    assert set(medians) == set(ratios) == set(VARIANTS)
    assert ratios["plain"] == 1.0 and all(t > 0 for t in medians.values())
    with pytest.raises(ValueError, match="reps"):
        attention_overhead(device="cpu", reps=0)


def test_sals_is_timed_in_repetitions_of_its_own(monkeypatch):
    """SALS's memory churn must not share repetitions with the variants it is compared to."""
    import atkd_lite.cost as cost

    sets = []
    real = cost.interleaved_times

    def recording(fns, *args, **kwargs):
        sets.append(sorted(fns))
        return real(fns, *args, **kwargs)

    monkeypatch.setattr(cost, "interleaved_times", recording)
    medians, ratios = attention_overhead(device="cpu", batch=2, reps=2, warmup=0,
                                         model=ak.student_cnn("tiny"))
    assert sets == [["fma", "mip", "plain"], ["plain", "sals"]]
    assert set(ratios) == set(VARIANTS) and ratios["plain"] == 1.0
    sets.clear()
    attention_overhead(device="cpu", batch=2, reps=1, warmup=0, model=ak.student_cnn("tiny"),
                       variants=["plain", "sals"])
    assert sets == [["plain", "sals"]]  # no set of the plain forward alone


def test_the_floor_is_timed_on_request_and_reads_each_captured_map_once():
    net = ak.student_cnn("tiny")
    medians, ratios = attention_overhead(device="cpu", batch=2, reps=2, warmup=1, model=net,
                                         variants=["plain", FLOOR])
    assert set(medians) == set(ratios) == {"plain", FLOOR} and FLOOR not in VARIANTS
    x = torch.rand(3, 1, 28, 28)
    cam = ak.ATCam(net.eval())
    with torch.no_grad():
        _, sums = cam.features(x, reduce=read_once)
        _, feats = cam.features(x)
    assert len(sums) == len(cam.layer_names) > 0
    for s, a in zip(sums, feats):
        torch.testing.assert_close(s, torch.einsum("bchw->bhw", a))
    with pytest.raises(ValueError, match="read"):
        attention_overhead(device="cpu", variants=["plain", "floor"])


# ----------------------------------------------------------------------- figures
def test_deletion_curves_auc_is_the_mean_accuracy():
    fig = viz.deletion_curves({"flat": [0.8, 0.8, 0.8], "linear": [1.0, 0.5, 0.0]},
                                 [0.0, 0.25, 0.5])
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["flat (AUC 0.80)", "linear (AUC 0.50)"]
    with pytest.raises(ValueError, match="fractions"):
        viz.deletion_curves({"x": [1.0]}, [0.0, 0.5])


def test_attribution_grid_has_a_panel_per_map():
    images = torch.rand(3, 1, 28, 28)
    maps = {"a": torch.rand(3, 28, 28), "b": torch.zeros(3, 1, 28, 28)}
    fig = viz.attribution_grid(images, maps, titles=["x", "y", "z"])
    assert len(fig.axes) == 7  # six panels and the colour bar
    assert fig.axes[0].get_ylabel() == "a" and fig.axes[0].get_title() == "x"
    with pytest.raises(ValueError, match="maps shaped"):
        viz.attribution_grid(images, {"a": torch.rand(2, 28, 28)})


# ----------------------------------------------------------------------- baselines
def test_baselines_by_hand():
    x = torch.zeros(2, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0                 # one bright pixel
    x[1, 0, :, 5:] = 1.0                # a vertical edge between columns 4 and 5
    inten = attribution_maps(ak.student_cnn("tiny"), x, "intensity")
    # the 3x3 binomial filter spreads the pixel to its neighbours: 1/2 at the sides,
    # 1/4 at the corners (after normalisation), and keeps one peak
    want = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    assert torch.allclose(inten[0, 3:6, 3:6], want) and inten[0, 0, 0] == 0.0
    edges = attribution_maps(ak.student_cnn("tiny"), x, "edges")[1]
    assert edges[:, 4:6].min() == 1.0 and edges[:, :3].max() == 0.0 and edges[:, 7:].max() == 0.0
    centre = attribution_maps(ak.student_cnn("tiny"), x, "centre")
    assert centre[0, 4, 4] == 1.0 and torch.equal(centre[0], centre[1])
    assert torch.equal(centre[0], centre[0].flip(0)) and torch.equal(centre[0], centre[0].t())


def test_model_randomisation_separates_model_maps_from_input_maps():
    torch.manual_seed(0)
    net = ak.student_cnn("tiny").eval()
    x = torch.rand(3, 1, 28, 28)
    rows = model_randomisation(net, x, kinds=("sals", "intensity"))
    n_layers = sum(1 for m in net.modules() if any(True for _ in m.parameters(recurse=False)))
    assert [r["step"] for r in rows] == list(range(n_layers + 1))
    assert rows[1]["layer"] == "head.3"  # the classifier goes first (top down)
    # a map of the input alone cannot change; a gradient map must
    assert all(r["intensity"] == pytest.approx(1.0) for r in rows)
    assert rows[-1]["sals"] < 0.5
    # the model itself is left as it was
    again = model_randomisation(net, x, kinds=("sals",), steps=1)
    assert again[1]["sals"] == pytest.approx(rows[1]["sals"])
