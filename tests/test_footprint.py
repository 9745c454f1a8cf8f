"""Model footprints: multiply-adds and layer tables against hand counts."""

import pytest
import torch
from torch import nn

import atkd_lite as ak
from atkd_lite.cost import footprint, layer_summary, multiply_adds


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(4, 2, 3, groups=2))
        self.fc = nn.Linear(2 * 2 * 2, 5)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def test_multiply_adds_match_a_hand_count():
    # input 1×8×8: conv1 -> 4×8×8, each output 1·3·3 MACs = 4·64·9 = 2304
    # pool -> 4×4×4; conv2 (groups=2) -> 2×2×2, each output (4/2)·3·3 = 18 MACs: 8·18 = 144
    # fc: 5 outputs × 8 inputs = 40
    assert multiply_adds(Tiny(), (1, 1, 8, 8)) == 2304 + 144 + 40
    assert multiply_adds(Tiny(), (3, 1, 8, 8)) == 3 * (2304 + 144 + 40)  # scales with the batch


def test_student_multiply_adds_by_hand():
    # small student: 1->8 at 28², 8->16 at 14², 16->32 at 7², linear 32->10
    want = 28 * 28 * 8 * 1 * 9 + 14 * 14 * 16 * 8 * 9 + 7 * 7 * 32 * 16 * 9 + 32 * 10
    assert multiply_adds(ak.student_cnn("small")) == want


def test_layer_summary_shapes_and_parameters_add_up():
    model = ak.teacher_cnn()
    rows = layer_summary(model)
    assert [r["name"] for r in rows][:3] == ["features.s1c1", "features.s1c2", "features.pool1"]
    assert rows[0]["output_shape"] == (32, 28, 28)
    assert rows[-1]["output_shape"] == (10,)
    assert sum(r["parameters"] for r in rows) == ak.count_parameters(model)
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed
    assert model.training  # mode restored


def test_footprint_keys_and_consistency():
    model = ak.student_cnn("tiny")
    fp = footprint(model, repeats=3)
    assert set(fp) == {"parameters", "size_kb", "multiply_adds", "latency_ms"}
    assert fp["parameters"] == ak.count_parameters(model)
    assert fp["size_kb"] == ak.model_size_bytes(model) / 1000
    assert fp["latency_ms"] > 0


@pytest.mark.parametrize("args, match", [
    ((nn.Linear(2, 2), (1, 2)), "batch shape"),
    (("not a model",), "nn.Module"),
])
def test_bad_input(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        multiply_adds(*args)


def test_layer_summary_bad_depth():
    with pytest.raises(ValueError, match="no modules at depth 5"):
        layer_summary(ak.student_cnn(), depth=5)


def test_hooks_removed_after_an_error():
    model = ak.student_cnn()
    with pytest.raises(ValueError):
        multiply_adds(model, (1, 3, 28, 28))  # wrong channel count: the model refuses
    assert all(not m._forward_hooks for m in model.modules())
    assert torch.is_grad_enabled()
