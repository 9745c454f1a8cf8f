"""ATCam's fast path gives the same numbers as the plain, obvious computation.

ATCam reduces each captured feature map to its raw per-layer map inside the forward hook,
forms ``|A|`` a cache-sized chunk at a time with its own backward, and resizes layers of
one size together (see ``atkd_lite/atcam.py``). None of that may change a result: here
every map and every gradient is compared, **bit for bit** (``torch.equal``), with a
reference written below from ``Tensor.abs().mean()``, ``F.interpolate`` and
``torch.stack``, on the book's networks, a generic CNN, a ResNet, and models whose
captured outputs are modified in place later in the forward (where reducing inside the
hook would see the wrong values if ATCam did not notice).
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import atkd_lite as ak
import atkd_lite.atcam as atcam_module
import atkd_lite.atcam_fast as fast_module
from atkd_lite.atcam import ATCam, attention_from_features, layer_map

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                               reason="torch.compile on the CPU needs a C++ compiler")


# ----------------------------------------------------------------------------- reference
def ref_norm(m: torch.Tensor) -> torch.Tensor:
    """normalize_maps written out with the same operations (amin/amax, masked reciprocal)."""
    shape = (-1,) + (1,) * (m.dim() - 1)
    flat = m.flatten(1)
    lo, hi = flat.amin(dim=1).view(shape), flat.amax(dim=1).view(shape)
    span = hi - lo
    tol = torch.maximum(lo.abs(), hi.abs()).detach() * (64 * torch.finfo(m.dtype).eps)
    ok = span > tol.clamp_min(1e-12)
    return (m - lo) * (torch.where(ok, span, 1.0).reciprocal() * ok)


def ref_resize(m: torch.Tensor, size) -> torch.Tensor:
    """Separable bilinear resize as two matrix products, matrices from F.interpolate."""
    def weights(n_in, n_out):
        eye = torch.eye(n_in, dtype=m.dtype).unsqueeze(0)
        # contiguous (n_out, n_in), laid out as ATCam keeps them: BLAS may round a product
        # with a transposed operand differently (seen with MKL on an AVX-512 EPYC)
        return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].t().contiguous()

    return weights(m.shape[-2], size[0]) @ m @ weights(m.shape[-1], size[1]).t()


def ref_maps(model, names, x, combine="fma", size=None):
    """Features kept to the end of the forward; |A| in full; one resize per layer."""
    size = size or tuple(x.shape[-2:])
    feats = {}
    handles = [dict(model.named_modules())[n].register_forward_hook(
        lambda mod, i, o, n=n: feats.__setitem__(n, o)) for n in names]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    raw = []
    for n in names:
        m = feats[n].abs().mean(dim=1)
        raw.append(m if tuple(m.shape[-2:]) == size else ref_resize(m, size))
    stack = torch.stack(raw)
    per_layer = ref_norm(stack.flatten(0, 1)).view_as(stack)
    combined = per_layer.mean(0) if combine == "fma" else per_layer.amax(0)
    return logits, ref_norm(combined), per_layer


# ----------------------------------------------------------------------------- models
def generic_cnn() -> nn.Sequential:
    """A small Sequential CNN without declared capture points: ATCam takes its convs."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def vgg_like() -> nn.Sequential:
    """Conv2d followed by ReLU(inplace=True): the conv's output is overwritten in place."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))


class InplaceDropoutInTraining(nn.Module):
    """Its first conv's output is modified in place only in train mode."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x):
        a = self.c1(x)
        a = F.dropout(a, 0.5, training=self.training, inplace=True)
        return self.head(self.c2(a))


class TwiceUsed(nn.Module):
    """One conv runs twice per forward: its last output is the one used."""

    def __init__(self):
        super().__init__()
        self.c1, self.shared = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.shared(torch.relu(self.shared(self.c1(x)))))


MODELS = {
    "teacher": (lambda: ak.teacher_cnn(), (4, 1, 28, 28)),
    "student": (lambda: ak.student_cnn("small"), (4, 1, 28, 28)),
    "generic": (generic_cnn, (4, 1, 28, 28)),
    # a ResNet-10 (ResNet-18 with one block per stage): the same layer types, faster
    "resnet": (lambda: torchvision.models.resnet.ResNet(
        torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10), (2, 3, 24, 24)),
    "vgg_like": (vgg_like, (6, 1, 16, 16)),
    "dropout": (InplaceDropoutInTraining, (6, 1, 16, 16)),
    "twice": (TwiceUsed, (6, 1, 16, 16)),
}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """One torch thread and chunks of ~one image: the small test batches are reduced in
    several chunks (with more threads ATCam forms |A| in one piece, tested below too)."""
    monkeypatch.setattr(fast_module, "_CHUNK_BYTES", 16_384)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name):
    torch.manual_seed(0)
    make, shape = MODELS[name]
    return make(), torch.randn(*shape)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("combine", ["fma", "mip"])
def test_maps_equal_reference_bit_for_bit_without_autograd(name, combine):
    model, x = build(name)
    model.eval()
    cam = ATCam(model, combine=combine)
    with torch.no_grad():
        for call in range(2):  # the first call learns the order; the second hooks early
            logits, maps, per_layer = cam(x, return_layers=True)
            ref_logits, ref, ref_layers = ref_maps(model, cam.layer_names, x, combine)
            assert torch.equal(logits, ref_logits), call
            assert torch.equal(maps, ref), (call, (maps - ref).abs().max())
            assert torch.equal(torch.stack(list(per_layer.values())), ref_layers), call


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("combine", ["fma", "mip"])
def test_gradients_equal_reference_bit_for_bit(name, combine):
    model, x = build(name)
    model.train()
    cam = ATCam(model, combine=combine)
    weight = torch.linspace(-1, 1, x.shape[0] * x.shape[-2] * x.shape[-1]).view(
        x.shape[0], *x.shape[-2:])
    for call in range(2):
        grads = []
        for fn in (lambda: cam(x)[1], lambda: ref_maps(model, cam.layer_names, x, combine)[1]):
            torch.manual_seed(call)  # same dropout mask for both
            model.zero_grad()
            maps = fn()
            (maps * weight).sum().backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        got, want = grads
        assert len(got) == len(want) > 0
        for g, w in zip(got, want):
            assert torch.equal(g, w), (call, (g - w).abs().max())


def test_outputs_modified_in_place_are_reduced_after_the_forward():
    # Conv2d -> ReLU(inplace=True): the captured conv output ends up holding the ReLU's
    # result. ATCam must give what reducing the kept tensors after the forward gives,
    # which differs from the conv output's own map (so this test can fail).
    model, x = build("vgg_like")
    cam = ATCam(model.eval())
    with torch.no_grad():
        cam(x)
        maps = cam(x)[1]
        pre = {}
        handles = [model[i].register_forward_hook(
            lambda mod, i, o, i_=i: pre.__setitem__(i_, o.clone())) for i in (0, 2, 5)]
        model(x)
        for h in handles:
            h.remove()
        own = attention_from_features([pre[i] for i in (0, 2, 5)], tuple(x.shape[-2:]))
    assert torch.equal(maps, ref_maps(model, cam.layer_names, x)[1])
    assert not torch.allclose(maps, own)
    assert cam._late[False] == {"0", "2", "5"}


def test_a_student_with_in_place_activations_trains():
    # reducing inside the hook would save a tensor that the ReLU then overwrites, and
    # the backward pass would fail; ATCam notices and reduces those layers afterwards
    model, x = build("vgg_like")
    cam = ATCam(model.train())
    for _ in range(3):
        model.zero_grad()
        logits, maps = cam(x)
        (logits.sum() + maps.sum()).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_train_and_eval_mode_are_probed_separately():
    model, x = build("dropout")
    cam = ATCam(model, combine="fma")
    with torch.no_grad():
        model.eval()
        cam(x), cam(x)
        model.train()
        torch.manual_seed(0)
        maps = cam(x)[1]
        torch.manual_seed(0)
        ref = ref_maps(model, cam.layer_names, x)[1]
    assert cam._late == {False: set(), True: {"c1"}}
    assert torch.equal(maps, ref)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk_bytes", [1, 4096, 1 << 19, 1 << 30])
@pytest.mark.parametrize("shape", [(7, 3, 5, 9), (16, 32, 28, 28), (1, 1, 1, 1)])
def test_channel_mean_equals_abs_mean_for_any_chunking(monkeypatch, threads, chunk_bytes,
                                                       shape):
    monkeypatch.setattr(fast_module, "_CHUNK_BYTES", chunk_bytes)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    a = torch.randn(*shape)
    a[a.abs() < 0.1] = 0.0  # exact zeros: |x|'s gradient there is 0
    workspace = {}  # shared, as by the layers of one ATCam call
    for t in (a, a.to(memory_format=torch.channels_last), a.double(), a[:, :, 1:, ::2],
              a[:, :2]):
        t = t.clone().requires_grad_(True)
        r = t.detach().clone().requires_grad_(True)
        with torch.no_grad():
            assert torch.equal(fast_module.channel_mean(t, 1, workspace), r.abs().mean(1))
        got, want = layer_map(t, normalize=False), r.abs().mean(dim=1)
        assert torch.equal(got, want)
        g = torch.randn_like(want)
        got.backward(g)
        want.backward(g)
        assert torch.equal(t.grad, r.grad)


def test_channel_mean_second_derivative_matches_autograd():
    a = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    a = a + 0.1 * a.sign()  # away from 0, where |x| is not differentiable
    a.requires_grad_(True)
    torch.autograd.gradcheck(lambda t: layer_map(t, normalize=False), (a,))
    torch.autograd.gradgradcheck(lambda t: layer_map(t, normalize=False), (a,))


def test_half_precision_features_take_the_reference_path():
    a = torch.randn(3, 4, 6, 6).bfloat16()
    assert torch.equal(layer_map(a, normalize=False), a.float().abs().mean(dim=1))


def test_layers_of_mixed_sizes_keep_their_order():
    # sizes 7, 14, 7, 28: grouped by size for the resize, returned in capture order
    torch.manual_seed(0)
    feats = [torch.rand(2, 3, 7, 7), torch.rand(2, 4, 14, 14), torch.rand(2, 5, 7, 7),
             torch.rand(2, 2, 28, 28)]
    maps, per_layer = attention_from_features(feats, (28, 28), return_layers=True)
    for a, got in zip(feats, per_layer):
        m = a.abs().mean(dim=1)
        if m.shape[-1] != 28:
            m = F.interpolate(m[:, None], size=(28, 28), mode="bilinear",
                              align_corners=False)[:, 0]
        torch.testing.assert_close(got, ref_norm(m), atol=1e-6, rtol=1e-5)
    assert torch.equal(maps, ref_norm(per_layer.mean(0)))


def _awkward_maps() -> torch.Tensor:
    """Maps with every case the min-max normalisation's gradient must get right."""
    torch.manual_seed(0)
    m = torch.rand(9, 6, 7)
    m[0] = 3.0  # constant: zero map, zero gradient
    m[1] = m[1].clamp(0.2, 0.7)  # ties at both extremes
    m[2, :3] = 0.0  # ties at the minimum
    m[3] = 1e6 + m[3] * 1e-4  # range within rounding noise of the magnitude: constant
    m[4] = m[4].round()  # few distinct values
    m[5] = m[5] * 1e-37  # differences below float32's normal range (subnormal)
    m[5, 0, :2] = m[5].max()  # ... and ties among them
    m[6, 0, :3] = torch.tensor([-1e4, 1.0, 0.9999])  # m - min rounds equal at 1.0, 0.9999:
    return m  # only 1.0 is the maximum


def test_normalize_maps_gradient_equals_autograd_bit_for_bit():
    m = _awkward_maps()
    g = torch.randn_like(m)
    fast, ref = m.clone().requires_grad_(True), m.clone().requires_grad_(True)
    out_fast, out_ref = atcam_module.normalize_maps(fast), ref_norm(ref)
    assert torch.equal(out_fast, out_ref)
    out_fast.backward(g)
    out_ref.backward(g)
    assert torch.equal(fast.grad, ref.grad)
    assert torch.equal(fast.grad[0], torch.zeros(6, 7))


def test_the_traceable_tail_computes_the_eager_maps_in_capture_order():
    """``traceable_maps_from_raw`` (what compiled code runs) normalises each size group
    where it lies and stacks the results back in capture order: the eager tail's combined
    and per-layer maps, with sizes interleaved, with and without given resize weights."""
    torch.manual_seed(0)
    raw = [torch.rand(3, 28, 28), torch.rand(3, 14, 14), torch.rand(3, 28, 28) * 5,
           torch.rand(3, 7, 7), torch.rand(3, 14, 14) - 2]
    size = (28, 28)
    for combine in ("fma", "mip"):
        ref_maps, ref_layers = fast_module.maps_from_raw(raw, size, combine)
        for weights in (None, atcam_module.resize_weights(raw, size)):
            maps, layers = atcam_module.traceable_maps_from_raw(raw, size, combine, weights)
            assert layers.shape == ref_layers.shape == (5, 3, 28, 28)
            assert torch.allclose(layers, ref_layers, atol=1e-6)
            assert torch.allclose(maps, ref_maps, atol=1e-6)
            with torch.autocast("cpu", dtype=torch.bfloat16):  # the resize stays float32
                amp_maps, _ = atcam_module.traceable_maps_from_raw(raw, size, combine, weights)
            assert amp_maps.dtype == torch.float32 and torch.equal(amp_maps, maps)
    assert set(atcam_module.resize_weights(raw, size)) == {(14, 14), (7, 7)}


def test_the_compiled_codes_normalisation_and_mip_have_the_eager_gradients_bit_for_bit():
    """What ``ATCam(compile=...)`` traces (tie masks in float arithmetic, so that compiled
    code saves no bool masks) computes, run eagerly, the eager code's numbers: the
    normalisation's forward and gradient and MIP's (ties shared equally)."""
    m = _awkward_maps()
    assert torch.equal(fast_module._equal_to(m.amax((1, 2), keepdim=True), m),
                       (m == m.amax((1, 2), keepdim=True)).float())
    assert torch.equal(fast_module._equal_to(m, m.amin((1, 2), keepdim=True)),
                       (m == m.amin((1, 2), keepdim=True)).float())
    g = torch.randn_like(m)
    traced, ref = m.clone().requires_grad_(True), m.clone().requires_grad_(True)
    out_traced = fast_module._TracedMinMaxNorm.apply(traced, atcam_module.EPS)
    out_ref = ref_norm(ref)
    assert torch.equal(out_traced, out_ref)
    out_traced.backward(g)
    out_ref.backward(g)
    assert torch.equal(traced.grad, ref.grad)
    stack = torch.stack([m[4], m[4].flip(0), m[1], m[4]])  # ties between layers (0 and 3)
    g = torch.randn_like(stack[0])
    traced, ref = stack.clone().requires_grad_(True), stack.clone().requires_grad_(True)
    out_traced = fast_module._TracedLayerMax.apply(traced)
    assert torch.equal(out_traced, ref.amax(dim=0))
    out_traced.backward(g)
    ref.amax(dim=0).backward(g)
    assert torch.equal(traced.grad, ref.grad)
    assert (traced.grad[0] == traced.grad[3]).all() and (traced.grad[0] != 0).any()


def test_normalize_maps_second_derivative():
    torch.manual_seed(0)
    m = torch.rand(3, 4, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(atcam_module.normalize_maps, (m,))
    torch.autograd.gradgradcheck(atcam_module.normalize_maps, (m,))


def test_relu_outputs_are_summed_without_forming_their_absolute_value(monkeypatch):
    # the teacher's capture points end in nn.ReLU: |A| = A needs no pass, and the maps and
    # gradients above stay equal to the reference; here: that path is really taken
    seen = []
    real = fast_module._sum_abs_cpu
    monkeypatch.setattr(fast_module, "_sum_abs_cpu",
                        lambda a, ws=None, nonneg=False: seen.append(nonneg) or real(a, ws, nonneg))
    model, x = build("teacher")
    with torch.no_grad():
        ATCam(model.eval())(x)
    assert seen and all(seen)
    seen.clear()
    model, x = build("generic")  # signed conv outputs: |A| is formed
    with torch.no_grad():
        ATCam(model.eval())(x)
    assert seen and not any(seen)
    assert fast_module.relu_output(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    assert not fast_module.relu_output(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)))
    assert not fast_module.relu_output(nn.LeakyReLU())


class ShiftedAfterReLU(nn.Module):
    """A ReLU block whose output the forward then shifts in place: negative values."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        a = self.block(x)
        a.sub_(0.5)
        return self.head(a)


def test_a_relu_output_modified_after_its_hook_takes_the_absolute_value():
    torch.manual_seed(0)
    model, x = ShiftedAfterReLU().eval(), torch.randn(3, 1, 12, 12)
    cam = ATCam(model, layers=["block"])
    with torch.no_grad():
        for call in range(2):  # the probe call and the one that hooks early
            maps = cam(x)[1]
            assert torch.equal(maps, ref_maps(model, ["block"], x)[1]), call


def test_an_atcam_with_its_scratch_can_be_copied():
    # the scratch is a per-thread buffer kept between calls: it stays behind on copy/pickle
    import copy
    import pickle

    model, x = build("generic")
    cam = ATCam(model.eval())
    with torch.no_grad():
        maps = cam(x)[1]
        assert cam._workspace()  # a call left its scratch buffer for the next one
        for twin in (copy.deepcopy(cam), pickle.loads(pickle.dumps(cam))):
            assert not twin._workspace()
            assert torch.equal(twin(x)[1], maps)


@pytest.mark.parametrize("name", ["teacher", "generic", "vgg_like", "twice"])
def test_features_reduced_in_the_forward_equal_reducing_the_kept_maps(name):
    """``features(x, reduce=f)`` gives ``[f(A) for A in features(x)[1]]`` bit for bit,
    also where a later module overwrites a captured output in place (vgg_like)."""
    model, x = build(name)
    cam = ATCam(model.eval(), layers="all")

    def at_map(a):
        return a.pow(2).mean(dim=1)

    with torch.no_grad():
        logits, kept = cam.features(x)
        ref = [at_map(a) for a in kept]
        for _ in range(2):  # the first call probes, the second reduces inside the hooks
            got_logits, got = cam.features(x, reduce=at_map)
            assert torch.equal(got_logits, logits)
            assert len(got) == len(ref) and all(torch.equal(a, b) for a, b in zip(got, ref))
    with pytest.raises(TypeError, match="callable"):
        cam.features(x, reduce="mean")


def test_the_at_baseline_reads_its_teacher_maps_inside_the_forward():
    """The AT distiller's online teacher maps equal at_vector of the kept feature maps,
    and only the paired teacher layers are captured."""
    from atkd_lite.distillers import make_distiller
    from atkd_lite.losses.at import at_vector

    torch.manual_seed(0)
    teacher, student = ak.teacher_cnn().eval(), ak.student_cnn("small")
    x, y = torch.randn(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    d = make_distiller("at", student, teacher)
    d.setup(x[:2])
    names = d._teacher_names()
    assert d._teacher_pairs_cam.layer_names == names and len(names) < 6
    with torch.no_grad():
        for _ in range(2):  # the first call probes; the second reduces inside the hooks
            t_logits, q = d.teacher_signals(x, y, None)
        assert d._teacher_pairs_cam._late[False] == set()  # reduced early, no late layer
        _, feats = ATCam(teacher, layers="all").features(x)
    by_name = dict(zip(ATCam(teacher, layers="all").layer_names, feats))
    ref = [at_vector(by_name[n]).view(4, *by_name[n].shape[-2:]) for n in names]
    assert torch.equal(t_logits, teacher(x).float())
    assert all(torch.equal(a, b) for a, b in zip(q, ref))


def test_compile_rejects_an_unknown_mode():
    model, _ = build("student")
    with pytest.raises(ValueError, match="compile must be"):
        ATCam(model, compile="fastest")
    assert ATCam(model, compile=True).compile == "default"
    assert ATCam(model).compile is None and "compile" not in repr(ATCam(model))


@pytest.mark.slow
@needs_cxx
def test_compiled_maps_and_gradients_agree_with_the_eager_ones(monkeypatch):
    """``ATCam(compile=True)``: the same maps and parameter gradients as the eager code, to
    rounding (the compiled code fuses the same formulas in another order)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(__import__("tempfile").mkdtemp()))
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    # the student's capture points are ReLU outputs; the generic CNN's are signed conv
    # outputs, whose mean |A| is compiled too
    for combine, make in (("fma", lambda: ak.student_cnn("small")), ("mip", generic_cnn)):
        torch.manual_seed(1)
        model = make().train()
        results = []
        for compile_ in (False, True):
            model.zero_grad()
            logits, maps = ATCam(model, combine=combine, compile=compile_)(x)
            (maps * torch.linspace(0, 1, 28)).sum().backward()
            results.append((maps.detach(), [p.grad.clone() for p in model.parameters()
                                            if p.grad is not None]))
        (eager, g_eager), (compiled, g_compiled) = results
        assert torch.allclose(compiled, eager, atol=1e-6), (compiled - eager).abs().max()
        assert not torch.equal(eager, torch.zeros_like(eager))
        assert len(g_compiled) == len(g_eager) >= 6  # the convolutions' and norms' gradients
        for a, b in zip(g_compiled, g_eager):  # to float32 rounding of the largest entry
            assert (a - b).abs().max() <= 1e-5 * b.abs().max(), (a - b).abs().max()


@pytest.mark.slow
@needs_cxx
def test_compile_model_gives_the_eager_logits_maps_and_gradients_from_one_graph(monkeypatch):
    """``ATCam(compile_model=True)``: after one eager call per train/eval mode and input
    size, the network, capture and maps run as one compiled graph (no eager capture), with
    the eager ATCam's logits, maps, per-layer maps and parameter gradients to rounding: for
    a conv output overwritten by ``ReLU(inplace=True)`` (read modified, as the eager
    capture reads it), a conv that runs twice (its last output) with ``p=2``, and a
    batch-norm network in training (its running statistics updated as eagerly)."""
    import copy

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(__import__("tempfile").mkdtemp()))
    for name, combine, p, train in (("vgg_like", "fma", 1, False), ("twice", "mip", 2, False),
                                    ("generic", "mip", 1, True)):
        model, x = build(name)
        twin = copy.deepcopy(model)
        model.train(train), twin.train(train)
        cam = ATCam(model, combine=combine, p=p, compile_model=True)
        ref = ATCam(twin, combine=combine, p=p)
        eager_calls = []
        real = cam.raw_maps
        cam.raw_maps = (lambda x, calls=eager_calls, real=real:  # a spy on this ATCam
                        calls.append(1) or real(x))
        weight = torch.linspace(-1, 1, x[0, 0].numel()).view(x.shape[-2:])
        for call in range(3):
            results = []
            for c, net in ((cam, model), (ref, twin)):
                net.zero_grad()
                with torch.set_grad_enabled(train):
                    logits, maps, per_layer = c(x, return_layers=True)
                if train:
                    (maps * weight).sum().backward()
                grads = [None if q.grad is None else q.grad.clone() for q in net.parameters()]
                results.append((logits.detach(), maps.detach(),
                                torch.stack(list(per_layer.values())).detach(), grads))
            assert len(eager_calls) == 1, (name, call)  # only the first call is eager
            graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
            if call == 1:
                compiled_graphs = graphs
            elif call == 2:  # the hooks, registered afresh each call, cost no recompile
                assert graphs == compiled_graphs, (name, graphs, compiled_graphs)
            (logits, maps, layers, grads), (r_logits, r_maps, r_layers, r_grads) = results
            assert torch.allclose(logits, r_logits, atol=1e-5), (name, call)
            assert torch.allclose(maps, r_maps, atol=1e-5), (name, call, (maps - r_maps).abs().max())
            assert torch.allclose(layers, r_layers, atol=1e-5), (name, call)
            assert maps.amax() == 1 and layers.shape[0] == len(ref.layer_names) >= 2
            assert (sum(g is not None for g in r_grads) >= 6) == train, name
            for a, b in zip(grads, r_grads):
                if b is None:  # compiled autograd may give zeros where eager gives None
                    assert a is None or not a.any(), name
                else:
                    assert (a - b).abs().max() <= 1e-4 * b.abs().max(), (name, (a - b).abs().max())
        if name == "vgg_like":  # inference mode: no version counter tells which outputs
            fresh = ATCam(model, compile_model=True)  # are modified later: all read at the end
            with torch.inference_mode():
                for call in range(3):
                    maps, r_maps = fresh(x)[1], ref(x)[1]
                    assert torch.allclose(maps, r_maps, atol=1e-5), ("inference", call)
            assert fresh._late[False] is None and fresh._whole.compiled is not None
            # another precision (or device): checked eagerly again, then compiled for it
            model.double(), twin.double()
            with torch.no_grad():
                for call in range(2):
                    maps, r_maps = cam(x.double())[1], ref(x.double())[1]
                    assert maps.dtype == torch.float64
                    assert torch.allclose(maps, r_maps, atol=1e-9), ("float64", call)
            assert len(eager_calls) == 2
            del cam.raw_maps  # the spy (a local function) would not pickle
            for twin_cam in (copy.deepcopy(cam), __import__("pickle").loads(
                    __import__("pickle").dumps(cam))):  # compiled code stays behind
                assert twin_cam._whole.compiled is None and cam._whole.compiled is not None
                assert twin_cam._whole.cam is twin_cam
                assert twin_cam._whole.weights.keys() == cam._whole.weights.keys()
        if train:  # batch norm's running statistics moved the same way
            for a, b in zip(model.buffers(), twin.buffers()):
                assert torch.allclose(a.float(), b.float(), atol=1e-5), name
        # the model is left as it was: no hook stays behind
        assert not any(m._forward_hooks for m in model.modules()), name


def test_compile_model_settings_and_copies():
    import copy

    from atkd_lite.experiments.overhead import attention_overhead

    model, _ = build("generic")
    with pytest.raises(ValueError, match="compile_model must be True or False"):
        ATCam(model, compile_model="yes")
    cam = ATCam(model, compile_model=True)
    assert cam.compile == "default" and repr(cam).endswith("compile_model=True)")
    assert ATCam(model, compile="reduce-overhead", compile_model=True).compile == "reduce-overhead"
    twin = copy.deepcopy(cam)  # the lock and the compiled graph stay behind, made afresh
    assert twin._whole.compiled is None and twin._whole.lock is not cam._whole.lock
    with pytest.raises(ValueError, match="warmup >= 2"):
        attention_overhead(device="cpu", batch=2, reps=1, warmup=1, compile_model=True)
    with pytest.raises(ValueError, match="only 'plain', 'fma' and 'mip'"):
        attention_overhead(device="cpu", batch=2, reps=1, warmup=2, compile_model=True,
                           variants=("plain", "fma", "read"))


@pytest.mark.slow
@needs_cxx
def test_distilling_with_compiled_maps_follows_the_eager_run(monkeypatch):
    """``DistillConfig(compile_maps=True)``: FMA/MIP compile both networks' maps and the
    attention loss, and train as the eager code does, to rounding; a method without maps
    ignores the setting."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(__import__("tempfile").mkdtemp()))
    import atkd_lite.methods.atcam_maps as distillers_module
    used = []

    def spying(name, make):
        def spy(mode):
            used.append(name)
            return make(mode)
        return spy

    monkeypatch.setattr(distillers_module, "_compiled_attention",
                        spying("_compiled_attention", distillers_module._compiled_attention))
    train = ak.load_dataset("mnist5k", "train").per_class(4)
    torch.manual_seed(0)
    teacher = ak.teacher_cnn().eval()
    with pytest.raises(ValueError, match="compile_maps must be"):
        ak.DistillConfig(compile_maps="fast").validate()
    for method in ("mip", "kd"):
        losses = []
        for compile_maps in (False, True):
            torch.manual_seed(1)
            student = ak.student_cnn("tiny")
            result = ak.distill(teacher, student, train, method=method, epochs=2,
                                batch_size=20, compile_maps=compile_maps, progress=False,
                                device="cpu")
            assert result.params["compile_maps"] is compile_maps
            expect = {"_compiled_attention"}  # both maps and the loss: one graph
            assert set(used) == (expect if compile_maps and method == "mip" else set()), used
            used.clear()
            losses.append(torch.tensor(result.history["loss"]))
        eager, compiled = losses
        assert len(eager) == 2 and eager[0] > 0
        assert torch.allclose(compiled, eager, rtol=1e-4), (method, compiled, eager)


@pytest.mark.slow
@needs_cxx
def test_a_compiled_step_has_the_eager_loss_and_gradients_online_and_cached(monkeypatch):
    """``compile_maps``: the teacher's raw maps (online) or its cached map, the student's
    raw maps and the loss in one compiled graph give the eager step's loss terms and
    parameter gradients, to rounding."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(__import__("tempfile").mkdtemp()))
    import copy

    from atkd_lite.cache import TeacherCache
    from atkd_lite.distillers import make_distiller

    data = ak.load_dataset("mnist5k", "train").subset(range(16))
    x, y, idx = data.float_images(), data.labels, torch.arange(16)
    torch.manual_seed(0)
    teacher = ak.teacher_cnn().eval()
    cache = TeacherCache.build(teacher, data, progress=False)
    torch.manual_seed(1)
    student0 = ak.student_cnn("small").train()
    for method, cached in (("mip", False), ("fma", True)):
        results = []
        for compile_maps in (False, True):
            student = copy.deepcopy(student0)
            d = make_distiller(method, student, teacher, alpha=0.5, beta=1.0,
                               cache=cache if cached else None, compile_maps=compile_maps)
            d.setup(x[:2])
            _, t_att = d.teacher_signals(x, y, idx)
            assert isinstance(t_att, list) == (compile_maps and not cached)  # raw maps
            _, terms = d.forward_train(x, y, idx)
            terms["loss"].backward()
            results.append((terms, [q.grad for q in student.parameters()]))
        (eager, g_eager), (compiled, g_compiled) = results
        assert eager["loss_att"] > 1e-3  # the maps differ: the term is not trivially 0
        for name in eager:
            assert torch.allclose(compiled[name], eager[name], rtol=1e-5), (name, compiled, eager)
        assert len(g_compiled) == len(g_eager) >= 6
        for a, b in zip(g_compiled, g_eager):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max(), (method, (a - b).abs().max())


def test_compile_maps_is_refused_where_no_atcam_map_is_used():
    from atkd_lite.distillers import make_distiller
    from atkd_lite.experiments.overhead import attention_overhead

    teacher, student = ak.teacher_cnn().eval(), ak.student_cnn("small")
    for method in ("at", "kd", "sals", "student"):
        with pytest.raises(ValueError, match="compile_maps"):
            make_distiller(method, student, teacher, compile_maps=True)
    assert make_distiller("fma", student, teacher, compile_maps=True).student_cam.compile == "default"
    with pytest.raises(ValueError, match="warmup >= 1"):
        attention_overhead(device="cpu", batch=2, reps=1, warmup=0, compile=True)


def test_the_compiled_tail_works_with_a_torch_compile_without_recompile_limit(monkeypatch):
    """torch before 2.14 has no ``recompile_limit`` keyword: it must not be passed there."""
    seen = {}

    def old_compile(fn, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
                    options=None, disable=False):
        seen["mode"] = mode
        return fn  # eager stand-in

    monkeypatch.setattr(torch, "compile", old_compile)
    caches = (fast_module.compiled_tail, fast_module._compiled_abs_mean)
    for cache in caches:
        cache.cache_clear()
    try:
        for name in ("student", "generic"):  # ReLU outputs; signed conv outputs (|A| compiled)
            model, x = build(name)
            with torch.no_grad():
                maps = ATCam(model.eval(), compile="max-autotune-no-cudagraphs")(x)[1]
                ref = ATCam(model)(x)[1]
            assert seen == {"mode": "max-autotune-no-cudagraphs"}
            assert torch.allclose(maps, ref, atol=1e-6)
        assert fast_module._compiled_abs_mean.cache_info().currsize == 1
    finally:
        for cache in caches:
            cache.cache_clear()
