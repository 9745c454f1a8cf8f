import pytest
import torch
from torch import nn

import atkd_lite as ak
from atkd_lite.cost import count_parameters, model_size_bytes
from atkd_lite.models import STUDENT_SIZES, build_model


def _conv_outputs_in_order(model, x):
    """Names of ConvBlocks in the order their outputs appear (hand-made hooks)."""
    order = []
    hooks = [m.register_forward_hook(lambda _m, _i, _o, n=n: order.append(n))
             for n, m in model.named_modules() if type(m).__name__ == "ConvBlock"]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return order


@pytest.mark.parametrize("make", [ak.teacher_cnn, lambda: ak.student_cnn("tiny"),
                                  lambda: ak.student_cnn("medium")])
def test_shapes_and_capture_points(make):
    model = make()
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    points = model.atkd_capture_points()
    assert points == _conv_outputs_in_order(model, x)
    modules = dict(model.named_modules())
    for name in points:
        relu = modules[name].relu
        assert isinstance(relu, nn.ReLU) and not relu.inplace


def test_other_resolutions_and_channels():
    model = ak.teacher_cnn(in_channels=3, num_classes=10)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert ak.student_cnn(num_classes=5)(torch.rand(2, 1, 56, 56)).shape == (2, 5)


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="in_channels=1"):
        ak.teacher_cnn()(torch.rand(2, 3, 28, 28))


def test_teacher_is_at_least_ten_times_the_student():
    teacher = count_parameters(ak.teacher_cnn())
    assert teacher >= 10 * count_parameters(ak.student_cnn())
    sizes = [count_parameters(ak.student_cnn(s)) for s in ("tiny", "small", "medium")]
    assert sizes == sorted(sizes) and set(STUDENT_SIZES) == {"tiny", "small", "medium"}


def test_parameter_count_by_hand():
    m = ak.models.CNN(widths=(2, 3), convs_per_stage=1, in_channels=1, num_classes=4)
    # conv 1->2 (3x3, no bias) + bn(2: weight, bias) + conv 2->3 + bn(3) + linear 3->4
    assert count_parameters(m) == 1 * 2 * 9 + 4 + 2 * 3 * 9 + 6 + 3 * 4 + 4


def test_size_bytes_grows_with_parameters():
    t, s = ak.teacher_cnn(), ak.student_cnn()
    assert model_size_bytes(t) > 4 * count_parameters(t)  # float32 + buffers + framing
    assert model_size_bytes(t) > 10 * model_size_bytes(s) / 2


def test_build_model_round_trip_and_errors():
    t = ak.teacher_cnn()
    rebuilt = build_model(t.config)
    assert rebuilt.config == t.config and count_parameters(rebuilt) == count_parameters(t)
    with pytest.raises(ValueError, match="arch"):
        build_model({"arch": "transformer"})
    with pytest.raises(ValueError, match="student size"):
        ak.student_cnn("huge")


def test_cpu_latency_is_positive_and_leaves_model_alone():
    model = ak.student_cnn().train()
    latency = ak.cpu_latency(model, repeats=3, warmup=1)
    assert 0 < latency < 1 and model.training
