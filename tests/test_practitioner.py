"""Nothing silent on your own model, loader and machine: 1×1 capture points, a
DataLoader's settings, worker processes under spawn, a negligible attention term, and
logits that are not the first output."""

import multiprocessing
import warnings

import pytest
import torch
import torchvision
from torch import nn

import atkd_lite as ak
from atkd_lite import data as data_module
from atkd_lite import engine
from atkd_lite.outputs import LogitsOnly


def _run(teacher, student, train, test=None, **kw):
    kw = {"epochs": 1, "batch_size": 8, "progress": False, "device": "cpu", **kw}
    return ak.distill(teacher, student, train, test, **kw)


def _resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_capture_points_with_1x1_maps_are_named_and_all_of_them_refused():
    train = ak.load_dataset("digits-rgb", "fit").subset(range(8))
    teacher = _resnet18()  # at 28×28 its last convolutions are 1×1
    with pytest.warns(UserWarning, match=r"teacher's capture point\(s\) \['layer4"):
        _run(teacher, ak.student_cnn("tiny", in_channels=3), train, method="fma")
    with pytest.raises(ValueError, match="every selected capture point of the teacher"):
        _run(teacher, ak.student_cnn("tiny", in_channels=3), train, method="fma",
             teacher_layers=["layer4.1.conv1", "layer4.1.conv2"])
    with warnings.catch_warnings():  # layers with a spatial extent: nothing to say
        warnings.simplefilter("error")
        _run(teacher, ak.student_cnn("tiny", in_channels=3), train, method="fma",
             teacher_layers=["layer1", "layer2"])


def test_a_dataloader_whose_sampler_chooses_images_is_refused(digits):
    train, test, teacher = digits
    loader = torch.utils.data.DataLoader(
        train, batch_size=8, sampler=torch.utils.data.SubsetRandomSampler(range(10)))
    with pytest.raises(ValueError, match="SubsetRandomSampler.*Subset"):
        _run(teacher, ak.student_cnn("tiny"), loader, test)


def test_a_dataloaders_workers_are_kept_and_its_batch_size_is_said(digits, monkeypatch):
    train, test, teacher = digits
    seen = {}
    original = engine.make_batches

    def spy(*args, **kw):
        seen.update(kw)
        return original(*args, **kw)

    monkeypatch.setattr(engine, "make_batches", spy)
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, num_workers=0)
    with pytest.warns(UserWarning, match="batch_size=8 from its settings, not the "
                                         "DataLoader's 32"):
        _run(teacher, ak.student_cnn("tiny"), loader, test)
    assert seen["num_workers"] == 0
    loader = torch.utils.data.DataLoader(train, batch_size=8, collate_fn=lambda b: b)
    with pytest.warns(UserWarning, match="collate_fn of its own"):
        _run(teacher, ak.student_cnn("tiny"), loader, test)


@pytest.mark.parametrize("method, workers", [("spawn", 0), ("forkserver", 0), ("fork", None)])
def test_no_worker_processes_where_they_would_be_spawned(monkeypatch, method, workers):
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: method)
    got = data_module.default_workers()
    assert got == workers if workers is not None else got >= 1


def test_a_negligible_attention_term_is_reported(digits):
    train, test, teacher = digits
    with pytest.warns(UserWarning, match="attention term was .*% of the loss"):
        _run(teacher, ak.student_cnn("tiny"), train, test, method="fma", beta=1e-6)
    with warnings.catch_warnings():  # the book's pair at its tuned weight: no warning
        warnings.simplefilter("error")
        torch.manual_seed(0)
        res = _run(teacher, ak.student_cnn("tiny"), train, test, method="fma")
    last = res.history.last
    assert res.params["beta"] * last["loss_att"] / last["loss"] >= engine.NEGLIGIBLE_SHARE


class FeaturesFirst(nn.Module):
    """A network that returns (features, logits)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        feats = self.net.features(x)
        return feats, self.net.head(feats)


def test_logits_that_are_not_the_first_output_are_explained_and_selectable(digits):
    train, test, teacher = digits
    with pytest.raises(ValueError, match=r"element 0 .*LogitsOnly\(model, select=1\)"):
        _run(FeaturesFirst(teacher), ak.student_cnn("tiny"), train, test, method="kd")
    torch.manual_seed(1)
    picked = _run(LogitsOnly(FeaturesFirst(teacher), select=1), ak.student_cnn("tiny"), train,
                  test, method="kd")
    torch.manual_seed(1)
    plain = _run(teacher, ak.student_cnn("tiny"), train, test, method="kd")
    assert picked.history.last["loss_kd"] == plain.history.last["loss_kd"]
    with pytest.raises(TypeError, match="select=5"):
        LogitsOnly(FeaturesFirst(teacher), select=5)(torch.zeros(1, 1, 28, 28))
