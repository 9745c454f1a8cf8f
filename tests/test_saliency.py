"""SALS against Captum's Saliency, plus gradient flow and side-effect checks."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from torch import nn
from torch.func import functional_call

from atkd_lite.saliency import saliency_map


def small_cnn(in_channels: int = 3, classes: int = 5) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
    ).eval()


def ref_norm(m: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(m)
    for b in range(m.shape[0]):
        lo, hi = m[b].min(), m[b].max()
        if hi - lo > 1e-12:
            out[b] = (m[b] - lo) / (hi - lo)
    return out


def captum_sals(model, x, target):
    attr = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True)
    return ref_norm(attr.amax(dim=1))


@pytest.mark.parametrize("kind", ["tensor", "list", "int", "none"])
def test_matches_captum_saliency(kind):
    model = small_cnn()
    x = torch.randn(4, 3, 12, 12)
    predicted = model(x).argmax(1)
    target = {"tensor": torch.tensor([0, 3, 1, 4]), "list": [2, 2, 0, 1], "int": 3,
              "none": None}[kind]
    captum_target = predicted if target is None else target
    maps = saliency_map(model, x, target=target)
    ref = captum_sals(model, x, captum_target)
    assert maps.shape == (4, 12, 12)
    torch.testing.assert_close(maps, ref, atol=1e-5, rtol=1e-5)
    assert maps.min() >= 0 and maps.max() <= 1


def test_matches_captum_on_atkd_lite_teacher():
    models = pytest.importorskip("atkd_lite.models")
    model = models.teacher_cnn().eval()
    x = torch.randn(3, 1, 28, 28)
    t = torch.tensor([1, 7, 9])
    torch.testing.assert_close(saliency_map(model, x, t), captum_sals(model, x, t),
                               atol=1e-5, rtol=1e-5)


def test_return_logits_and_no_grad_context():
    model = small_cnn()
    x = torch.randn(2, 3, 12, 12)
    logits, maps = saliency_map(model, x, return_logits=True)
    torch.testing.assert_close(logits, model(x))
    assert not logits.requires_grad and not maps.requires_grad
    with torch.no_grad():  # the teacher's situation
        torch.testing.assert_close(saliency_map(model, x), maps)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("create_graph", [False, True])
def test_leaves_mode_and_grads_alone(training, create_graph):
    model = small_cnn().train(training)
    x = torch.randn(2, 3, 12, 12)
    modes = [m.training for m in model.modules()]
    saliency_map(model, x, create_graph=create_graph)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None and not x.requires_grad


def test_create_graph_gives_gradients_to_parameters():
    model = small_cnn()
    x = torch.randn(2, 3, 12, 12)
    logits, maps = saliency_map(model, x, target=[0, 1], create_graph=True, return_logits=True)
    assert maps.requires_grad and logits.requires_grad
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(maps.pow(2).sum(), params, allow_unused=True, retain_graph=True)
    first_conv = grads[0]
    assert first_conv is not None and first_conv.abs().sum() > 0
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    # the logits still carry the graph for the cross-entropy term of the same step
    assert torch.autograd.grad(logits.sum(), params[0])[0].abs().sum() > 0


def test_double_backprop_matches_finite_differences():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(),
                          nn.Linear(2 * 5 * 5, 3)).double()
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    weight = model[0].weight.detach().clone().requires_grad_(True)
    probe = torch.randn(2, 5, 5, dtype=torch.float64)

    def loss_of_weight(w):
        def fwd(inp):
            return functional_call(model, {"0.weight": w}, (inp,))

        class Wrapped(nn.Module):
            def forward(self, inp):
                return fwd(inp)

        return (saliency_map(Wrapped(), x, target=[0, 2], create_graph=True) * probe).sum()

    assert torch.autograd.gradcheck(loss_of_weight, (weight,), eps=1e-6, atol=1e-5)


def test_zero_gradient_gives_zero_map():
    model = small_cnn()
    with torch.no_grad():
        model[0].weight.zero_()  # logits no longer depend on the input
    maps = saliency_map(model, torch.randn(2, 3, 12, 12))
    assert torch.equal(maps, torch.zeros(2, 12, 12))


def test_output_independent_of_input_gives_zero_map():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            return self.bias.expand(x.shape[0], 4)

    maps = saliency_map(Constant(), torch.randn(2, 1, 6, 6), create_graph=True)
    assert torch.equal(maps, torch.zeros(2, 6, 6))


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ({"x": torch.randn(3, 12, 12)}, ValueError, "B, C, H, W"),
        ({"x": torch.ones(1, 3, 12, 12, dtype=torch.long)}, TypeError, "floating-point"),
        ({"target": 5}, ValueError, r"\[0, 4\]"),
        ({"target": -1}, ValueError, r"\[0, 4\]"),
        ({"target": [0, 1, 2]}, ValueError, "one class index per sample"),
        ({"target": torch.tensor([0.0, 1.0])}, TypeError, "integer"),
        ({"target": True}, TypeError, "target"),
        ({"target": "cat"}, TypeError, "target"),
    ],
)
def test_bad_input(args, exc, match):
    kwargs = {"x": torch.randn(2, 3, 12, 12), **args}
    with pytest.raises(exc, match=match):
        saliency_map(small_cnn(), **kwargs)


def test_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        saliency_map(lambda x: x.sum((2, 3)), torch.randn(1, 3, 4, 4))


def test_model_not_returning_logits():
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        saliency_map(nn.Conv2d(3, 2, 3), torch.randn(1, 3, 6, 6))
