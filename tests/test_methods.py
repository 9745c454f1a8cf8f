"""Methods and signals: a new attention map is one signal class and one method file; a
method with its own learnable parameters trains them; signal kinds are decoded in one
place only."""

import ast
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import atkd_lite as ak
from atkd_lite import signals
from atkd_lite.cache import TeacherCache
from atkd_lite.cli import main
from atkd_lite.device import autocast_context, eval_mode
from atkd_lite.methods import METHODS, Distiller, register, registry, signals_for
from atkd_lite.methods.base import layer_selection
from atkd_lite.outputs import model_logits

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "atkd_lite"


@pytest.fixture
def restore_registries():
    """Leave the registries as they were (registering is global state)."""
    methods, maps = dict(METHODS), dict(signals.MAPS)
    registered = list(registry._REGISTERED)
    yield
    METHODS.clear()
    METHODS.update(methods)
    signals.MAPS.clear()
    signals.MAPS.update(maps)
    registry._REGISTERED[:] = registered


@pytest.fixture
def cmax(restore_registries):
    """The example method file (tests/example_method_cmax.py), imported afresh."""
    sys.path.insert(0, str(TESTS))
    try:
        sys.modules.pop("example_method_cmax", None)
        yield importlib.import_module("example_method_cmax")
    finally:
        sys.path.remove(str(TESTS))
        sys.modules.pop("example_method_cmax", None)


def _by_hand(features, size):
    """The channel-max map written out with torch.nn.functional, independently."""
    per_layer = []
    for a in features:
        m = a.abs().amax(dim=1, keepdim=True)
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)[:, 0]
        lo = m.flatten(1).amin(1)[:, None, None]
        hi = m.flatten(1).amax(1)[:, None, None]
        per_layer.append((m - lo) / (hi - lo))
    mean = torch.stack(per_layer).mean(0)
    lo, hi = mean.flatten(1).amin(1)[:, None, None], mean.flatten(1).amax(1)[:, None, None]
    return (mean - lo) / (hi - lo)


def test_a_new_map_is_one_signal_class_and_one_method_file(cmax, digits, tmp_path):
    train, test, teacher = digits
    assert {"cmax", "cmax+kd"} <= set(METHODS) and "cmax" in signals.MAPS
    cmax = importlib.reload(cmax)  # the file run again (a notebook cell): replaced
    assert signals.MAPS["cmax"] is cmax.CMAX and METHODS["cmax"][0] is cmax.ChannelMaxDistiller
    with pytest.raises(ValueError, match="already registered"):  # another class, same key
        signals.register_map(type("Other", (cmax.ChannelMaxMap,), {})())
    assert signals_for(["cmax+kd", "fma"]) == {"maps": ["cmax", "fma"], "at": False}

    # the signal is the formula, checked against a hand computation
    x = train.float_images()[:4]
    with torch.no_grad():
        _, feats = ak.ATCam(teacher).features(x)
        want = _by_hand(feats, (28, 28))
        got = cmax.CMAX.compute(teacher, x)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(ak.attribution_maps(teacher, x, "cmax"), want, atol=1e-6)

    # online: the teacher runs; the student's map is the same formula, with gradients
    torch.manual_seed(1)
    online = ak.distill(teacher, ak.student_cnn("tiny"), train, test, method="cmax+kd",
                        epochs=1, batch_size=8, progress=False, device="cpu")
    assert online.method == "cmax+kd" and online.params["beta"] == 0.3
    assert set(online.history.last) >= {"loss_att", "loss_kd"}
    assert 0 < online.history.last["loss_att"] < 1

    # cached: a teacher cache computes and stores the new map by its key
    cache = TeacherCache.build(teacher, train, maps=["cmax"], at=False, progress=False,
                               device="cpu", map_dtype="float32")
    with torch.no_grad():
        ref = cmax.CMAX.compute(teacher, train.float_images())
    assert torch.allclose(cache.maps("cmax", torch.arange(len(train))), ref, atol=1e-6)
    torch.manual_seed(1)
    cached = ak.distill(teacher, ak.student_cnn("tiny"), train, test, method="cmax+kd",
                        cache=cache, epochs=1, batch_size=8, progress=False, device="cpu")
    # the same maps and logits (float16 logits in the cache): the same run, to rounding
    assert cached.history.last["loss_att"] == pytest.approx(
        online.history.last["loss_att"], rel=1e-3)
    with pytest.raises(ValueError, match="cmax"):  # a cache without the map says so
        ak.distill(teacher, ak.student_cnn("tiny"), train, test, method="cmax",
                   cache=TeacherCache.build(teacher, train, maps=["fma"], at=False,
                                            progress=False, device="cpu"),
                   epochs=1, progress=False, device="cpu")

    # in a grid, from the command line: one teacher cache with the new map, every run
    ckpt = tmp_path / "teacher.pt"
    ak.save_checkpoint(ckpt, teacher, dataset="mnist5k")
    out = tmp_path / "grid"
    code = main(["sizes", "--methods", "student,cmax", "--sizes", "tiny", "--seeds", "0",
                 "--per-class", "1", "--epochs", "1", "--teacher", str(ckpt), "--device",
                 "cpu", "--output-dir", str(out)])
    assert code == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted(r["base_method"] for r in runs) == ["cmax", "student"]
    assert all(r["params"]["cached"] for r in runs)


class HintDistiller(Distiller):
    """FitNet-style hints: a learnable 1×1 regressor maps the student's first capture
    point onto the teacher's, compared by mean squared error."""

    method_name = "hint"
    signal = signals.Logits()  # only so that the attention term is on (never cached)
    default_beta = 1.0

    def setup(self, x_probe):
        self.s_cam = ak.ATCam(self.student, **layer_selection(None, 1, 0))
        self.t_cam = ak.ATCam(self.teacher, **layer_selection(None, 1, 0))
        with eval_mode(self.student, self.teacher), torch.no_grad():
            s = self.s_cam.features(x_probe)[1][0]
            t = self.t_cam.features(x_probe)[1][0]
        self.regressor = nn.Conv2d(s.shape[1], t.shape[1], 1).to(x_probe.device)

    def teacher_online(self, x, y):
        with torch.no_grad():
            logits, feats = self.t_cam.features(x)
        return logits, feats[0]

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            logits, feats = self.s_cam.features(x)
        return model_logits(logits), self.regressor(feats[0])

    def attention_term(self, s_att, t_att):
        return F.mse_loss(s_att, t_att)


def test_a_method_with_its_own_parameters_trains_them(restore_registries, digits):
    train, test, teacher = digits
    register(HintDistiller)
    seen = {}
    original = HintDistiller.setup

    def setup(self, x_probe):  # keep the regressor as it starts
        original(self, x_probe)
        seen["start"] = {k: v.clone() for k, v in self.regressor.state_dict().items()}
        seen["distiller"] = self

    HintDistiller.setup = setup
    try:
        res = ak.distill(teacher, ak.student_cnn("tiny"), train, test, method="hint",
                         epochs=2, batch_size=8, progress=False, device="cpu")
    finally:
        HintDistiller.setup = original
    d = seen["distiller"]
    own = list(d.regressor.parameters())
    trained = list(d.trainable_parameters())
    assert len(trained) == len(list(d.student.parameters())) + len(own)
    assert all(any(p is q for q in trained) for p in own)
    assert not any(p is q for p in teacher.parameters() for q in trained)
    for k, v in d.regressor.state_dict().items():
        assert not torch.equal(v, seen["start"][k]), f"the regressor's {k} did not train"
    assert res.history.last["loss_att"] > 0


# ---------------------------------------------------------------------------------------
# one place decodes signal kinds

SIGNAL_KINDS = {"fma", "mip", "sals", "at", "rrr"}


def _kind_comparisons(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """Comparisons (``==``, ``in``, …) and set intersections that name a signal kind."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) or (isinstance(node, ast.BinOp)
                                             and isinstance(node.op, ast.BitAnd)):
            named = {n.value for n in ast.walk(node)
                     if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            if named & SIGNAL_KINDS:
                found.append(f"{path.relative_to(root)}:{node.lineno}: "
                             f"{ast.unparse(node)}")
    return found


def test_no_signal_kind_is_compared_outside_the_signal_and_method_modules():
    outside = [p for p in PACKAGE.rglob("*.py")
               if p.name != "signals.py" and "methods" not in p.relative_to(PACKAGE).parts]
    found = [hit for p in outside for hit in _kind_comparisons(p)]
    assert not found, "decode signal kinds in atkd_lite/signals.py or a method file:\n" + \
        "\n".join(found)


def test_the_kind_detector_finds_a_planted_comparison(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('def f(kind, kinds):\n    if kind == "sals":\n        return 1\n'
                       '    return kinds & {"fma", "mip"}\n'
                       'for k in ("fma", "mip"):\n    pass\n')
    assert [h.split(": ", 1)[1] for h in _kind_comparisons(planted, tmp_path)] == [
        "kind == 'sals'", "kinds & {'fma', 'mip'}"]


def test_a_method_receives_the_run_settings_as_one_object():
    """``distill`` validates its settings once and hands the method the whole
    ``DistillConfig`` (KD's weight resolved), instead of forwarding them field by field;
    a method without maps keeps no layer selection of its own."""
    from atkd_lite.methods import DEFAULT_ALPHA, make_distiller
    from atkd_lite.settings import DistillConfig

    seen = {}

    class Spy(Distiller):
        def setup(self, x_probe):
            seen["config"] = self.config

    train = ak.load_dataset("mnist5k", "train").per_class(2)
    teacher = ak.teacher_cnn().eval()
    ak.distill(teacher, ak.student_cnn("tiny"), train, method=Spy, epochs=1, beta=0.5, T=4.0,
               first=1, progress=False, device="cpu")
    cfg = seen["config"]
    assert isinstance(cfg, DistillConfig)
    assert (cfg.epochs, cfg.beta, cfg.T, cfg.first, cfg.alpha) == (1, 0.5, 4.0, 1, 0.0)
    kd = make_distiller("kd", ak.student_cnn("tiny"), teacher, DistillConfig(first=1, T=2.0))
    assert (kd.alpha, kd.T, kd.config.first) == (DEFAULT_ALPHA, 2.0, 1)
    assert not any(hasattr(kd, name) for name in ("first", "last", "size", "teacher_layers"))
    # the keywords of earlier versions are fields of the config; an unknown one is named
    fma = make_distiller("fma", ak.student_cnn("tiny"), teacher, first=1, last=1)
    assert (fma.config.first, fma.config.last, fma.alpha) == (1, 1, 0.0)
    with pytest.raises(TypeError, match="beta_at.*the AT weight is beta"):
        make_distiller("at", ak.student_cnn("tiny"), teacher, beta_at=10.0)
    with pytest.raises(ValueError, match="compile_maps .* leave it False"):
        make_distiller("kd", ak.student_cnn("tiny"), teacher, compile_maps=True)

    # a method of one's own that passes its keywords on (as earlier versions' methods
    # did) still receives the config: it travels as a keyword
    class OwnInit(Distiller):
        def __init__(self, student, teacher, **kw):
            super().__init__(student, teacher, **kw)
            seen["own"] = self.config

    ak.distill(teacher, ak.student_cnn("tiny"), train, method=OwnInit, epochs=1, T=3.0,
               progress=False, device="cpu")
    assert seen["own"].T == 3.0


def _hand_input_map(x, scales, size):
    """The input map by hand with torch.nn.functional: pool, bilinear resize, min-max."""
    def norm(m):
        lo = m.amin(dim=(-2, -1), keepdim=True)
        hi = m.amax(dim=(-2, -1), keepdim=True)
        return (m - lo) / (hi - lo)

    ink = x.mean(1, keepdim=True)
    per_layer = [norm(F.interpolate(F.adaptive_avg_pool2d(ink, s), size=size,
                                    mode="bilinear", align_corners=False)[:, 0])
                 for s in scales]
    return norm(torch.stack(per_layer).mean(0))


def test_the_input_map_is_the_input_blurred_to_the_teachers_scales():
    """``fma-input`` (a control): its target is the input averaged down to each kept
    layer's resolution of the teacher, resized, normalised and averaged like FMA's —
    checked by hand, the same online and from a cache, and trained at FMA's weight."""
    from atkd_lite.methods import make_distiller
    from atkd_lite.methods.input_map import InputMap

    torch.manual_seed(0)
    teacher = ak.teacher_cnn().eval()
    x = torch.rand(4, 1, 28, 28)
    cam = ak.ATCam(teacher)
    scales = [tuple(f.shape[-2:]) for f in cam.features(x)[1]]
    assert len(set(scales)) > 1  # several resolutions: a real blur, not one image
    by_hand = _hand_input_map(x, scales, (28, 28))
    assert torch.allclose(InputMap().compute(teacher, x), by_hand, atol=1e-5)
    # a sharp input is smoothed: the map of one bright pixel spreads over its neighbours
    dot = torch.zeros(1, 1, 28, 28)
    dot[..., 14, 14] = 1.0
    assert (InputMap().compute(teacher, dot) > 0.1).sum() > 1

    train = ak.load_dataset("mnist5k", "train").per_class(2)
    d = make_distiller("fma-input", ak.student_cnn("tiny"), teacher)
    d.setup(train.subset(range(2)).float_images())
    xs = train.subset(range(8)).float_images()
    online = d.teacher_online(xs, train.labels[:8])[1]
    assert torch.allclose(online, _hand_input_map(xs, d.scales, (28, 28)), atol=1e-5)
    cache = TeacherCache.build(teacher, train, maps=["input"], at=False, progress=False,
                               device="cpu", map_dtype="float32")
    assert torch.equal(cache.read(InputMap(), torch.arange(8)), online)
    assert d.beta == METHODS["fma"][0].default_beta and "fma-input+kd" not in METHODS
    res = ak.distill(teacher, ak.student_cnn("tiny"), train, method="fma-input", epochs=1,
                     cache=cache, progress=False, device="cpu")
    assert res.history.last["loss_att"] > 0


def test_the_low_data_controls_are_chosen_by_name(tmp_path):
    """``controls=[names]`` runs just those controls (``student-shift`` online with the
    teacher's shift, ``fma-input`` from the grid's cache); an unknown name is refused
    before any work, from Python and from the command line."""
    from atkd_lite.experiments.lowdata import TEACHER_SHIFT, run_experiment

    with pytest.raises(ValueError, match="unknown control.*'nope'"):
        run_experiment(methods=("student",), seeds=[0], controls=["nope"], teacher=object())
    assert main(["reproduce", "--controls", "nope", "--output-dir", str(tmp_path / "x"),
                 "--device", "cpu"]) == 2
    torch.manual_seed(0)
    res = run_experiment(methods=("student",), seeds=[0], per_class=3, epochs=1,
                         teacher=ak.teacher_cnn().eval(), device="cpu", progress=False,
                         controls=["fma-input", "student-shift"])
    assert res.settings["controls"] == ["student-shift", "fma-input"]  # CONTROLS' order
    runs = {r["method"]: r for r in res.runs}
    assert runs["student-shift"]["params"]["augment"] == TEACHER_SHIFT
    assert not runs["student-shift"]["params"]["cached"]
    assert runs["fma-input"]["params"]["cached"] and runs["fma-input"]["params"]["beta"] > 0
