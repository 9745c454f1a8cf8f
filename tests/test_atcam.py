"""ATCam (FMA, MIP) against a plain re-implementation of DESIGN.md's formulas.

The reference below uses its own hooks and a per-sample Python loop for the
normalisation, so it shares no code with atkd_lite.atcam.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from atkd_lite.atcam import (
    ATCam,
    attention_from_features,
    combine_maps,
    layer_map,
    normalize_maps,
    resize_maps,
    select_layers,
)

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


# ----------------------------------------------------------------------------- helpers
def small_cnn(in_channels: int = 1, classes: int = 5, padding: int = 1) -> nn.Sequential:
    """Five convs at three resolutions; conv names are '0', '2', '5', '7', '10'."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=padding), nn.ReLU(),  # 0, 1
        nn.Conv2d(4, 6, 3, padding=padding), nn.ReLU(),  # 2, 3
        nn.MaxPool2d(2),  # 4
        nn.Conv2d(6, 8, 3, padding=padding), nn.ReLU(),  # 5, 6
        nn.Conv2d(8, 8, 3, padding=padding), nn.ReLU(),  # 7, 8
        nn.MaxPool2d(2),  # 9
        nn.Conv2d(8, 8, 3, padding=padding), nn.ReLU(),  # 10, 11
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes),
    ).eval()


class ReversedOrder(nn.Module):
    """Convs registered in the opposite order to the one in which they run."""

    def __init__(self):
        super().__init__()
        self.late = nn.Conv2d(4, 4, 3, padding=1)
        self.middle = nn.Conv2d(4, 4, 3, padding=1)
        self.early = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.late(F.relu(self.middle(F.relu(self.early(x))))))


class WithCapturePoints(nn.Module):
    """A model that names its own capture points (the ReLUs, not the convs)."""

    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.c3, self.r3 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def atkd_capture_points(self):
        return ["r1", "r2", "r3"]

    def forward(self, x):
        return self.head(self.r3(self.c3(self.r2(self.c2(self.r1(self.c1(x)))))))


def ref_norm(m: torch.Tensor) -> torch.Tensor:
    """min-max per sample; constant (range within 1e-12 or 64 ULPs of the magnitude) -> 0."""
    out = torch.zeros_like(m)
    for b in range(m.shape[0]):
        lo, hi = m[b].min(), m[b].max()
        tol = max(1e-12, 64 * torch.finfo(m.dtype).eps * max(abs(lo), abs(hi)))
        if hi - lo > tol:
            out[b] = (m[b] - lo) / (hi - lo)
    return out


def ref_capture(model, names, x):
    feats = {}
    handles = [
        dict(model.named_modules())[n].register_forward_hook(
            lambda mod, i, o, n=n: feats.__setitem__(n, o)
        )
        for n in names
    ]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, [feats[n] for n in names]


def ref_atcam(model, names, x, combine, p=1, size=None):
    size = size or tuple(x.shape[-2:])
    logits, feats = ref_capture(model, names, x)
    per_layer = []
    for a in feats:
        m = (a.abs() ** p).mean(dim=1, keepdim=True)
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)[:, 0]
        per_layer.append(ref_norm(m))
    stack = torch.stack(per_layer)
    combined = stack.mean(0) if combine == "fma" else stack.max(0).values
    return logits, ref_norm(combined), per_layer


def hook_snapshot(model):
    snap = {
        (name, d): tuple(getattr(mod, d).keys())
        for name, mod in model.named_modules()
        for d in HOOK_DICTS
    }
    g = torch.nn.modules.module
    snap["global"] = tuple(
        len(getattr(g, d))
        for d in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")
    )
    return snap


# ----------------------------------------------------------------------------- the maths
@pytest.mark.parametrize(
    "n, first, last, expected",
    [
        (5, 2, 2, [0, 1, 3, 4]),
        (4, 2, 2, [0, 1, 2, 3]),
        (3, 2, 2, [0, 1, 2]),
        (5, 0, 1, [4]),
        (5, 3, 0, [0, 1, 2]),
        (5, 4, 3, [0, 1, 2, 3, 4]),
        (1, 2, 2, [0]),
    ],
)
def test_select_layers(n, first, last, expected):
    names = [f"l{i}" for i in range(n)]
    assert select_layers(names, first, last) == [f"l{i}" for i in expected]


def test_normalize_maps_by_hand():
    m = torch.tensor([[[2.0, 4.0], [6.0, 10.0]], [[3.0, 3.0], [3.0, 3.0]]])
    out = normalize_maps(m)
    assert torch.equal(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # constant -> zeros, not NaN


def test_normalize_maps_treats_rounding_noise_as_constant():
    # a bit-exact constant map resized bilinearly picks up 1-2 ULPs of rounding noise
    m = F.interpolate(torch.full((1, 1, 7, 7), 1.7), size=(28, 28), mode="bilinear",
                      align_corners=False)[:, 0]
    assert torch.equal(normalize_maps(m), torch.zeros_like(m))
    # a small but real contrast survives
    m = torch.full((1, 4, 4), 100.0)
    m[0, 0, 0] += 0.01
    assert normalize_maps(m)[0, 0, 0] == 1 and normalize_maps(m).sum() == 1


def test_normalize_maps_constant_gives_finite_zero_gradient():
    m = torch.full((2, 3, 3), 7.0, requires_grad=True)
    normalize_maps(m).sum().backward()
    assert torch.equal(m.grad, torch.zeros_like(m))


def test_layer_map_resize_then_normalise():
    a = torch.rand(2, 3, 5, 7) - 0.5
    ref = F.interpolate(a.abs().pow(2).mean(1, keepdim=True), size=(9, 11), mode="bilinear",
                        align_corners=False)[:, 0]
    torch.testing.assert_close(layer_map(a, p=2, size=(9, 11)), ref_norm(ref))
    torch.testing.assert_close(layer_map(a, normalize=False), a.abs().mean(1))


@pytest.mark.parametrize(
    "src, dst", [((7, 7), (28, 28)), ((5, 9), (16, 12)), ((28, 28), (7, 7)), ((1, 1), (4, 4)),
                 ((4, 4), (4, 4))]
)
def test_resize_maps_equals_bilinear_interpolate(src, dst):
    m = torch.rand(3, *src, dtype=torch.float64)
    ref = F.interpolate(m[:, None], size=dst, mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(resize_maps(m, dst), ref)


def test_resize_maps_cache_is_safe_after_inference_mode():
    # the interpolation matrices are cached; one built under inference_mode must still
    # be usable by a later call that records autograd
    with torch.inference_mode():
        resize_maps(torch.rand(1, 3, 3), (13, 13))
    m = torch.rand(1, 3, 3, requires_grad=True)
    resize_maps(m, (13, 13)).sum().backward()
    assert m.grad is not None


def test_combine_maps_by_hand():
    a = torch.tensor([[[0.0, 1.0, 0.5, 0.2]]])
    b = torch.tensor([[[0.0, 0.0, 1.0, 0.2]]])
    # mean = [0, .5, .75, .2] -> /0.75 ; max = [0, 1, 1, .2]
    torch.testing.assert_close(combine_maps([a, b], "fma"),
                               torch.tensor([[[0.0, 2 / 3, 1.0, 0.2 / 0.75]]]))
    torch.testing.assert_close(combine_maps([a, b], "mip"), torch.tensor([[[0.0, 1.0, 1.0, 0.2]]]))


@pytest.mark.parametrize("combine", ["fma", "mip"])
@pytest.mark.parametrize("p", [1, 2])
def test_atcam_matches_reference_explicit_layers(combine, p):
    model = small_cnn()
    x = torch.randn(3, 1, 16, 16)
    names = ["0", "2", "5", "7", "10"]
    cam = ATCam(model, layers=names, first=2, last=2, combine=combine, p=p)
    logits, maps, per_layer = cam(x, return_layers=True)
    kept = ["0", "2", "7", "10"]
    ref_logits, ref_maps, ref_layers = ref_atcam(model, kept, x, combine, p=p)
    assert cam.layer_names == kept and list(per_layer) == kept
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(maps, ref_maps, atol=1e-6, rtol=1e-5)
    for name, ref in zip(kept, ref_layers):
        torch.testing.assert_close(per_layer[name], ref, atol=1e-6, rtol=1e-5)
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1


@pytest.mark.parametrize("combine", ["fma", "mip"])
def test_atcam_auto_conv_mode_matches_reference(combine):
    model = small_cnn()
    x = torch.randn(2, 1, 16, 16)
    cam = ATCam(model, combine=combine, first=1, last=2)
    _, maps = cam(x)
    assert cam.layer_names == ["0", "7", "10"]
    torch.testing.assert_close(maps, ref_atcam(model, ["0", "7", "10"], x, combine)[1],
                               atol=1e-6, rtol=1e-5)


def test_fma_and_mip_differ_only_in_combining():
    model = small_cnn()
    x = torch.randn(2, 1, 16, 16)
    _, fma, layers_f = ATCam(model, combine="fma")(x, return_layers=True)
    _, mip, layers_m = ATCam(model, combine="mip")(x, return_layers=True)
    assert not torch.allclose(fma, mip)
    for name in layers_f:
        torch.testing.assert_close(layers_f[name], layers_m[name])


def test_size_option_and_attention_from_features():
    model = small_cnn()
    x = torch.randn(2, 1, 16, 16)
    cam = ATCam(model, combine="mip", size=(10, 12))
    logits, feats = cam.features(x)
    _, maps = cam(x)
    assert maps.shape == (2, 10, 12)
    torch.testing.assert_close(maps, ref_atcam(model, cam.layer_names, x, "mip", size=(10, 12))[1],
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(attention_from_features(feats, (10, 12), combine="mip"), maps)


def test_features_are_the_raw_module_outputs():
    model = small_cnn()
    x = torch.randn(2, 1, 16, 16)
    logits, feats = ATCam(model).features(x)
    _, ref = ref_capture(model, ["0", "2", "7", "10"], x)
    assert len(feats) == 4
    for a, b in zip(feats, ref):
        torch.testing.assert_close(a, b)
    assert [tuple(a.shape) for a in feats] == [(2, 4, 16, 16), (2, 6, 16, 16), (2, 8, 8, 8),
                                                (2, 8, 4, 4)]


def test_attribute_is_captum_shaped_and_visualizable():
    import matplotlib

    matplotlib.use("Agg")
    from captum.attr import visualization as viz

    model = small_cnn(in_channels=3)
    x = torch.rand(2, 3, 16, 16)
    cam = ATCam(model)
    attr = cam.attribute(x, target=1)
    assert attr.shape == (2, 1, 16, 16)
    torch.testing.assert_close(attr[:, 0], cam(x)[1])
    assert cam.has_convergence_delta() is False
    fig, _ = viz.visualize_image_attr(
        attr[0].permute(1, 2, 0).detach().numpy(), x[0].permute(1, 2, 0).numpy(),
        method="blended_heat_map", sign="positive", use_pyplot=False,
    )
    assert fig is not None


# ----------------------------------------------------------------------------- capture points
def test_auto_mode_follows_forward_order_not_registration_order():
    cam = ATCam(ReversedOrder(), first=1, last=1)
    cam(torch.randn(1, 1, 8, 8))
    assert cam.layer_names == ["early", "late"]


def test_auto_mode_uses_atkd_capture_points():
    model = WithCapturePoints()
    cam = ATCam(model, first=1, last=1)
    assert cam.layer_names == ["r1", "r3"]  # known before any call
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(cam(x)[1], ref_atcam(model, ["r1", "r3"], x, "fma")[1])


def test_resnet18_auto_mode():
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    cam = ATCam(model, combine="fma")
    with torch.no_grad():
        logits, maps = cam(x)
    expected = ["conv1", "layer1.0.conv1", "layer4.1.conv1", "layer4.1.conv2"]
    assert cam.layer_names == expected
    assert logits.shape == (1, 1000) and maps.shape == (1, 64, 64)
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() == 1
    with torch.no_grad():
        ref = ref_atcam(model, expected, x, "fma")[1]
    torch.testing.assert_close(maps, ref, atol=1e-6, rtol=1e-5)


def test_atkd_lite_teacher_and_student():
    models = pytest.importorskip("atkd_lite.models")
    teacher, student = models.teacher_cnn().eval(), models.student_cnn("small")
    x = torch.randn(4, 1, 28, 28)
    t_cam, s_cam = ATCam(teacher, combine="mip"), ATCam(student, combine="mip")
    assert t_cam.layer_names == select_layers(teacher.atkd_capture_points(), 2, 2)
    assert s_cam.layer_names == select_layers(student.atkd_capture_points(), 2, 2)
    with torch.no_grad():
        _, t_maps = t_cam(x)
    _, s_maps = s_cam(x)
    assert t_maps.shape == s_maps.shape == (4, 28, 28)  # different depths, one map size
    assert not t_maps.requires_grad and s_maps.requires_grad
    torch.testing.assert_close(s_maps, ref_atcam(student, s_cam.layer_names, x, "mip")[1],
                               atol=1e-6, rtol=1e-5)


def test_different_input_resolutions_share_one_map_size():
    model = small_cnn()
    cam = ATCam(model, size=(16, 16))
    assert cam(torch.randn(2, 1, 16, 16))[1].shape == (2, 16, 16)
    assert cam(torch.randn(2, 1, 32, 32))[1].shape == (2, 16, 16)


# ----------------------------------------------------------------------------- gradients
def test_student_maps_are_differentiable():
    model = small_cnn().train()
    cam = ATCam(model, combine="fma")
    _, maps = cam(torch.randn(2, 1, 16, 16))
    assert maps.requires_grad
    maps.pow(2).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert grads[0] is not None and grads[0].abs().sum() > 0  # first conv's weight
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("combine", ["fma", "mip"])
@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_teacher_maps_without_autograd(combine, context):
    model, x = small_cnn(), torch.randn(2, 1, 16, 16)
    with context():
        logits, maps = ATCam(model, combine=combine)(x)
    assert not maps.requires_grad and not logits.requires_grad
    torch.testing.assert_close(maps, ATCam(model, combine=combine)(x)[1].detach())


def test_maps_are_float32_under_autocast():
    model = small_cnn()
    cam, x = ATCam(model), torch.randn(2, 1, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        _, feats = cam.features(x)
        _, maps = cam(x)
    assert feats[0].dtype == torch.bfloat16  # the model really ran in low precision
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()


# ----------------------------------------------------------------------------- degenerate inputs
def test_constant_input_gives_zero_maps_not_nan():
    model = small_cnn(padding=0)  # no padding: a constant image gives constant features
    x = torch.ones(2, 1, 24, 24)
    for combine in ("fma", "mip"):
        _, maps = ATCam(model, combine=combine)(x)
        assert torch.equal(maps, torch.zeros(2, 24, 24))


def test_zero_features_give_zero_maps_and_finite_gradients():
    model = small_cnn()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    _, maps = ATCam(model, combine="mip")(x)
    assert torch.equal(maps, torch.zeros_like(maps))
    maps.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------- hook hygiene
class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        self.conv2(self.conv(x))
        raise RuntimeError("boom inside forward")


@pytest.mark.parametrize("mode", ["auto", "explicit", "capture_points"])
def test_no_hooks_left_after_success(mode):
    model = {"auto": small_cnn(), "explicit": small_cnn(),
             "capture_points": WithCapturePoints()}[mode]
    model.register_forward_hook(lambda *a: None)  # a user's own hook must survive
    before = hook_snapshot(model)
    cam = ATCam(model, layers=["0", "7"] if mode == "explicit" else None)
    x = torch.randn(2, 1, 16, 16)
    cam(x)
    cam.layer_maps(x)
    cam.features(x)
    cam.attribute(x)
    assert hook_snapshot(model) == before


@pytest.mark.parametrize("layers", [None, ["conv"]])
def test_no_hooks_left_after_exception_in_forward(layers):
    model = Exploding()
    before = hook_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        ATCam(model, layers=layers)(torch.randn(1, 1, 8, 8))
    assert hook_snapshot(model) == before


def test_no_hooks_left_when_a_capture_point_is_not_4d():
    model = small_cnn()
    before = hook_snapshot(model)
    with pytest.raises(ValueError, match="4-D"):
        ATCam(model, layers=["0", "13"])(torch.randn(1, 1, 16, 16))  # '13' is Flatten
    assert hook_snapshot(model) == before


def test_no_hooks_left_after_bad_input_to_the_model():
    model = small_cnn()
    before = hook_snapshot(model)
    with pytest.raises(RuntimeError):
        ATCam(model)(torch.randn(1, 3, 16, 16))  # wrong channel count fails in conv
    assert hook_snapshot(model) == before


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"combine": "sum"}, ValueError, "combine"),
        ({"first": 0, "last": 0}, ValueError, "first>=1 or last>=1"),
        ({"first": -1}, ValueError, "non-negative"),
        ({"last": -2}, ValueError, "non-negative"),
        ({"first": 1.5}, ValueError, "non-negative int"),
        ({"size": (0, 5)}, ValueError, "two positive ints"),
        ({"size": 16}, ValueError, "two positive ints"),
        ({"size": (8, 8, 8)}, ValueError, "two positive ints"),
        ({"size": ("8", 8)}, ValueError, "two positive ints"),
        ({"size": (8.0, 8)}, ValueError, "two positive ints"),
        ({"p": 0}, ValueError, "positive"),
        ({"layers": ["0", "nope"]}, ValueError, r"unknown layer name.*'nope'.*valid names"),
        ({"layers": []}, ValueError, "empty"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ATCam(small_cnn(), **kwargs)


def test_unknown_layer_message_lists_valid_names():
    with pytest.raises(ValueError) as info:
        ATCam(small_cnn(), layers=["conv9"])
    assert "'10'" in str(info.value) and "'0'" in str(info.value)


def test_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        ATCam(lambda x: x)


def test_model_without_conv_layers():
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        ATCam(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)))


@pytest.mark.parametrize(
    "x, exc", [(torch.randn(1, 16, 16), ValueError), (torch.randn(16, 16), ValueError),
               ([[1.0]], TypeError)]
)
def test_bad_input_tensor(x, exc):
    with pytest.raises(exc, match="B, C, H, W"):
        ATCam(small_cnn())(x)


def test_combine_maps_errors():
    with pytest.raises(ValueError, match="combine"):
        combine_maps([torch.zeros(1, 2, 2)], "avg")
    with pytest.raises(ValueError, match="same shape|share one shape"):
        combine_maps([torch.zeros(1, 2, 2), torch.zeros(1, 3, 3)], "fma")
    with pytest.raises(ValueError, match="4-D"):
        layer_map(torch.zeros(2, 3, 4))
