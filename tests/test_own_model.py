"""Any pair of CNNs: the output adapter, per-network capture points, torchvision networks,
Wide ResNets, and the errors that say what to do."""

import math
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

import atkd_lite as ak
from atkd_lite.atcam import ATCam
from atkd_lite.cache import CacheMismatchError, TeacherCache
from atkd_lite.distillers import METHODS, layer_selection, make_distiller
from atkd_lite.models import resnet18_cifar, twice_differentiable, wide_resnet
from atkd_lite.outputs import LogitsOnly, model_logits
from atkd_lite.saliency import saliency_map

# ----------------------------------------------------------------------- the output adapter
from atkd_lite.signals import ExampleMask

# the methods taught by a teacher (RRR's masks come with decoy data: tests/test_shortcut.py)
TEACHER_METHODS = [m for m, (c, _) in METHODS.items() if not isinstance(c.signal, ExampleMask)]


class ModelOutput(OrderedDict):
    """What Hugging Face models return: a dict whose entries are also attributes."""


@pytest.mark.parametrize("wrap", [
    lambda z: z,
    lambda z: (z, [torch.ones(2, 3, 4, 4)]),
    lambda z: [z, "features"],
    lambda z: {"logits": z, "aux": None},
    lambda z: {"out": z, "aux": torch.ones(1)},
    lambda z: ModelOutput(loss=None, logits=z),
], ids=["tensor", "tuple", "list", "dict-logits", "dict-out", "model-output"])
def test_model_logits_finds_the_logits(wrap):
    z = torch.randn(2, 5)
    assert model_logits(wrap(z)) is z


@pytest.mark.parametrize("output, found", [
    ("text", "returned str"),
    ((), "an empty tuple"),
    (("a", torch.zeros(1)), "tuple whose logits entry is a str"),
    ({"scores": torch.zeros(1)}, r"keys \['scores'\]"),
    (None, "returned NoneType"),
])
def test_model_logits_names_what_it_found(output, found):
    with pytest.raises(TypeError, match=found) as err:
        model_logits(output, "the teacher")
    assert "the teacher" in str(err.value)


class PairNet(nn.Module):
    """A network returning ``(logits, features)``, like most KD codebases' networks."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        feats = self.net.features(x)
        return self.net.head(feats), [feats]

    def atkd_capture_points(self):
        return [f"net.{n}" for n in self.net.atkd_capture_points()]


class DictNet(PairNet):
    def forward(self, x):
        logits, feats = super().forward(x)
        return {"features": feats, "logits": logits}


def test_tuple_and_dict_models_give_the_same_maps_and_saliency():
    torch.manual_seed(0)
    net = ak.student_cnn("small").eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        ref_logits, ref_maps = ATCam(net)(x)
    ref_sals = saliency_map(net, x, target=[0, 1, 2])
    for wrapped in (PairNet(net).eval(), DictNet(net).eval()):
        with torch.no_grad():
            logits, maps = ATCam(wrapped)(x)
        assert torch.equal(logits, ref_logits) and torch.equal(maps, ref_maps)
        assert torch.equal(saliency_map(wrapped, x, target=[0, 1, 2]), ref_sals)
        # Captum needs a tensor: LogitsOnly gives it one, and the package uses it
        assert torch.equal(LogitsOnly(wrapped)(x), net(x))
        maps_ig = ak.attribution_maps(wrapped, x, "saliency", target=[0, 1, 2])
        assert torch.allclose(maps_ig, ref_sals, atol=1e-5)


@pytest.fixture(scope="module")
def digits():
    train = ak.load_dataset("mnist5k", "fit").per_class(2)   # 20 images
    test = ak.load_dataset("mnist5k", "val").per_class(1)    # 10 images
    torch.manual_seed(0)
    return train, test, ak.teacher_cnn().eval()


@pytest.mark.parametrize("method", TEACHER_METHODS)
def test_a_tuple_returning_pair_trains_exactly_like_the_plain_pair(digits, method):
    """The adapter changes nothing: (logits, features) networks give the same run."""
    train, test, teacher = digits
    runs = []
    for wrap in (lambda m: m, PairNet):
        torch.manual_seed(1)
        student = ak.student_cnn("tiny")
        res = ak.distill(wrap(teacher), wrap(student), train, test, method=method, epochs=1,
                         batch_size=10, progress=False, device="cpu")
        runs.append((res.history.records[0], student.state_dict()))
    (plain, w_plain), (pair, w_pair) = runs
    for key in plain:
        if key != "time_s":
            assert plain[key] == pair[key], key
    for k in w_plain:
        assert torch.equal(w_plain[k], w_pair[k]), k
    logits, labels = ak.predict(PairNet(teacher), test, device="cpu")
    assert torch.equal(logits, ak.predict(teacher, test, device="cpu")[0])


# ------------------------------------------------------------ torchvision teacher and student

@pytest.fixture(scope="module")
def colour():
    train = ak.load_dataset("digits-rgb", "fit").subset(range(8)).normalized()
    test = ak.load_dataset("digits-rgb", "val").subset(range(4)).normalized(train.normalize)
    torch.manual_seed(0)
    return train, test, resnet18_cifar().eval()


def _mobilenet():
    torch.manual_seed(0)
    return twice_differentiable(torchvision.models.mobilenet_v3_small(num_classes=10))


@pytest.mark.parametrize("method", TEACHER_METHODS)
def test_torchvision_resnet18_teaches_mobilenet_v3_with_every_method(colour, method):
    train, test, teacher = colour
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = _mobilenet()
    start = {k: v.clone() for k, v in student.state_dict().items()}
    res = ak.distill(teacher, student, train, test, method=method, epochs=1, batch_size=8,
                     progress=False, device="cpu")
    rec = res.history.last
    cls, use_kd = METHODS[method]
    expected = {"loss", "loss_ce"} | ({"loss_kd"} if use_kd else set()) | (
        {"loss_att"} if cls.signal is not None else set())
    assert {k for k in rec if k.startswith("loss")} == expected
    assert all(math.isfinite(rec[k]) for k in expected)
    if cls.signal is not None:
        assert rec["loss_att"] > 0  # two different networks: their attention differs
    assert 0 <= rec["test_acc"] <= 1
    changed = [k for k, v in student.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, start[k])]
    assert changed, "the student was not trained"
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_sals_student_without_second_derivative_is_a_clear_error(colour):
    train, test, teacher = colour
    torch.manual_seed(0)
    student = torchvision.models.mobilenet_v3_small(num_classes=10)  # nn.Hardsigmoid
    with pytest.raises(ValueError, match=r"double backprop.*twice_differentiable"):
        ak.distill(teacher, student, train, method="sals", epochs=1, progress=False,
                   device="cpu")
    # the swap keeps the function: same outputs before and after
    x = train.float_images()[:2]
    student.eval()
    with torch.no_grad():
        before = student(x)
        assert torch.allclose(twice_differentiable(student)(x), before, atol=1e-6)


# ------------------------------------------------------------------ choosing capture points

def test_layer_selection_reads_every_form():
    assert layer_selection(None, 1, 3) == {"layers": None, "first": 1, "last": 3}
    assert layer_selection(["a", "b"]) == {"layers": ["a", "b"], "first": 2, "last": 0}
    assert layer_selection("layer4") == {"layers": ["layer4"], "first": 1, "last": 0}
    assert layer_selection((0, 1)) == {"layers": None, "first": 0, "last": 1}
    assert layer_selection({"last": 1}, 2, 2) == {"layers": None, "first": 2, "last": 1}
    assert layer_selection("all")["layers"] == "all"
    for bad in (3, ["a", 1], {"middle": 1}, []):
        with pytest.raises(TypeError, match="list of module names"
                           if not isinstance(bad, dict) else "first"):
            layer_selection(bad)


def test_fma_compares_selections_of_different_lengths(colour):
    train, _, teacher = colour
    student = _mobilenet()
    d = make_distiller("fma", student, teacher, teacher_layers=["layer1", "layer2", "layer4"],
                       student_layers={"first": 2, "last": 0})
    x = train.float_images()[:4]
    d.setup(x)
    assert d.teacher_cam.layer_names == ["layer1", "layer2", "layer4"]
    assert d.student_cam.layer_names == ["features.0.0", "features.1.block.0.0"]
    _, terms = d.forward_train(x, train.labels[:4], None)
    # the attention term is the loss between the two networks' own maps, resized to 32x32
    with torch.no_grad():
        _, t_map = ATCam(teacher, layers=["layer1", "layer2", "layer4"], first=3, last=0)(x)
    s_map = ATCam(student, first=2, last=0)(x)[1]
    assert torch.allclose(terms["loss_att"], ak.losses.attention_loss(s_map, t_map), atol=1e-6)


def test_at_needs_pairs_and_says_how_to_fix_it(colour):
    train, test, teacher = colour
    with pytest.raises(ValueError, match=r"in pairs.*3 layer.*2 \[.*same number.*FMA and MIP"):
        ak.distill(teacher, _mobilenet(), train, method="at", epochs=1, progress=False,
                   device="cpu", teacher_layers=["layer1", "layer4"],
                   student_layers=["features.1", "features.3", "features.8"])
    d = make_distiller("at", _mobilenet(), teacher, teacher_layers=["layer1", "layer4"],
                       student_layers=["features.1", "features.8"])
    d.setup(train.float_images()[:2])
    assert d.pairs == [(0, 0), (1, 1)]
    res = ak.distill(teacher, _mobilenet(), train, method="at", epochs=1, progress=False,
                     device="cpu", batch_size=8, teacher_layers=["layer1", "layer4"],
                     student_layers=["features.1", "features.8"])
    assert res.params["teacher_layers"] == ["layer1", "layer4"]


def test_unknown_layer_names_fail_before_training_for_any_method(colour):
    train, _, teacher = colour
    for method in ("student", "sals"):
        with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['layer9'\].*layer4"):
            ak.distill(teacher, _mobilenet(), train, method=method, epochs=1,
                       progress=False, device="cpu", teacher_layers=["layer9"])
    with pytest.raises(ValueError, match="teacher_layers must be"):
        ak.distill(teacher, _mobilenet(), train, method="fma", epochs=1, progress=False,
                   device="cpu", teacher_layers=7)


def test_cache_with_named_teacher_layers_matches_online_and_refuses_others(colour):
    train, _, teacher = colour
    names = ["layer1", "layer3"]
    cache = TeacherCache.build(teacher, train, maps=["fma"], at=True, layers=names,
                               device="cpu", progress=False)
    assert cache.meta["layers"] == names and set(names) <= set(cache.meta["at_layers"])
    with torch.no_grad():
        _, online = ATCam(teacher, layers=names, first=2, last=0)(train.float_images())
    assert (cache.maps("fma", torch.arange(len(train))) - online).abs().max() <= 0.5 / 255 + 1e-6
    run = dict(epochs=1, batch_size=8, progress=False, device="cpu")
    ak.distill(teacher, _mobilenet(), train, method="fma", cache=cache, teacher_layers=names,
               **run)
    ak.distill(teacher, _mobilenet(), train, method="at", cache=cache, teacher_layers=names,
               student_layers=["features.1", "features.8"], **run)
    with pytest.raises(CacheMismatchError, match=r"teacher layers \['layer1', 'layer3'\]"):
        ak.distill(teacher, _mobilenet(), train, method="fma", cache=cache,
                   teacher_layers=["layer2", "layer3"], **run)
    with pytest.raises(CacheMismatchError, match=r"AT vectors .*\['layer2'\]"):
        ak.distill(teacher, _mobilenet(), train, method="at", cache=cache,
                   teacher_layers=["layer2", "layer3"],
                   student_layers=["features.1", "features.8"], **run)


# ---------------------------------------------------------------------------- bad input

def test_grey_images_into_a_colour_network_name_the_channels(digits):
    grey, _, _ = digits
    with pytest.raises(ValueError, match=r"3-channel images but the data has 1 channel.*"
                                         r"digits-rgb"):
        ak.distill(resnet18_cifar().eval(), _mobilenet(), grey, method="student", epochs=1,
                   progress=False, device="cpu")


def test_a_model_returning_something_else_is_named(digits):
    train, _, teacher = digits

    class Strange(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ak.student_cnn("tiny")

        def forward(self, x):
            return {"scores": self.net(x)}

    with pytest.raises(TypeError, match=r"the student returned a dict with the keys "
                                        r"\['scores'\]"):
        ak.distill(teacher, Strange(), train, method="fma", epochs=1, progress=False,
                   device="cpu")


# --------------------------------------------------------------------------- Wide ResNets

def _wrn_parameters(depth: int, k: int, classes: int = 10) -> int:
    """Wide ResNet's parameters counted from its definition (Zagoruyko & Komodakis 2016)."""
    n = (depth - 4) // 6
    total = 3 * 16 * 9  # stem
    c_in = 16
    for c_out in (16 * k, 32 * k, 64 * k):
        for b in range(n):
            total += 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out
            if b == 0 and c_in != c_out:
                total += c_in * c_out  # 1x1 shortcut
            c_in = c_out
    return total + 2 * c_in + c_in * classes + classes


@pytest.mark.parametrize("k, published", [(1, 0.2), (2, 0.7)])
def test_wide_resnet_has_the_published_size(k, published):
    net = wide_resnet(16, k)
    n = ak.count_parameters(net)
    assert n == _wrn_parameters(16, k)
    assert round(n / 1e6, 1) == published  # "0.2M" and "0.7M" in the AT paper's Table 1
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    rebuilt = ak.build_model(net.config)
    assert isinstance(rebuilt, type(net)) and ak.count_parameters(rebuilt) == n


def test_wide_resnets_pair_their_group_outputs_for_at():
    teacher, student = wide_resnet(16, 2).eval(), wide_resnet(16, 1)
    d = make_distiller("at", student, teacher)
    d.setup(torch.rand(2, 3, 32, 32))
    assert d.pairs == [(0, 0), (1, 1), (2, 2)]
    assert d.teacher_cam.layer_names == ["group1", "group2", "group3"]
    with pytest.raises(ValueError, match="depth must be 6n"):
        wide_resnet(15, 1)
