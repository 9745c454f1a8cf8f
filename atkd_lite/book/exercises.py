"""Check functions for the book's exercises: a clear pass or a helpful hint.

Each exercise in a chapter ends with a cell that calls one function from here with the
learner's answer. A correct answer prints a line starting with ``✅ Correct:``; a wrong one
raises :class:`AssertionError` whose message says what is wrong and how to fix it. An
unsolved exercise (the stub of a student copy raises :class:`NotImplementedError`)
propagates unchanged, so the learner sees which exercise is still open.

The checks compare against something independent of the answer (``torch.nn.functional``,
``torch.nn`` layers, invariants such as "a flat image gives no edge"), never against a
copy of the solution.

One small function per exercise, grouped by chapter.

Examples::

    >>> from atkd_lite.book import exercises
    >>> exercises.check_fc_parameters(lambda n_in, n_out: n_in * n_out + n_out)
    ✅ Correct: n_in × n_out weights plus n_out biases; a 1000×1000 RGB image
       into 1,000 units needs 3,000,001,000 parameters.
"""

from __future__ import annotations

import numbers
import textwrap

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "check_conv2d_by_hand",
    "check_fc_parameters",
    "check_horizontal_edge_kernel",
    # chapter 2
    "check_conv_block_parameters",
    # chapter 3 (and 5)
    "check_distill_loop",
    "check_kd_loss",
    "distill_loop_distance",
    "check_softmax_with_temperature",
    "check_temperature_predictions",
    # chapter 4
    "check_fma_combination",
    "check_mip_combination",
    # chapter 5
    "check_keep_layers",
    # chapter 6
    "check_pointing_game_by_hand",
    # chapter 7
    "check_cache_bytes",
    # chapter 8
    "check_add_swatch",
    "check_rrr_penalty",
    # chapter 9
    "check_capture_points",
    "check_channel_stats",
]


def _passed(message: str) -> None:
    # wrapped to fit a notebook's and the book's output width
    print(textwrap.fill(f"✅ Correct: {message}", width=72, subsequent_indent="   "))


def _hint(condition: bool, message: str) -> None:
    """Fail with a hint (an AssertionError that survives ``python -O``)."""
    if not condition:
        raise AssertionError(f"❌ Not yet: {message}")


def _tensor(value, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except Exception as err:
        raise AssertionError(
            f"❌ Not yet: {what} should be a torch tensor (or a nested list of numbers), "
            f"got {type(value).__name__} ({err})"
        ) from None


# ---------------------------------------------------------------------------------------
# Chapter 1 — CNN basics

def check_fc_parameters(fc_parameters) -> None:
    """Check ``fc_parameters(n_in, n_out)``: the parameters of a fully-connected layer.

    The reference is the parameter count of :class:`torch.nn.Linear` (built on the
    ``meta`` device, so even billions of weights cost no memory).
    """
    cases = [(784, 100), (3, 2), (1, 10), (1000 * 1000 * 3, 1000)]
    for n_in, n_out in cases:
        got = fc_parameters(n_in, n_out)
        _hint(isinstance(got, numbers.Integral) or (isinstance(got, float) and got.is_integer()),
              f"fc_parameters({n_in}, {n_out}) returned {got!r}; return a whole number "
              "(an int), e.g. with *, + and no division")
        want = sum(p.numel() for p in nn.Linear(n_in, n_out, device="meta").parameters())
        weights = n_in * n_out
        _hint(got != weights,
              f"fc_parameters({n_in}, {n_out}) = {got:,} counts only the weights; every "
              "output unit also has a bias")
        _hint(got != weights + n_in,
              f"fc_parameters({n_in}, {n_out}) = {got:,}: there is one bias per *output* "
              f"unit ({n_out}), not per input ({n_in})")
        _hint(got == want,
              f"fc_parameters({n_in}, {n_out}) = {got:,}, but such a layer has {want:,} "
              "parameters: one weight for every (input, unit) pair plus one bias per unit")
    _passed("n_in × n_out weights plus n_out biases; a 1000×1000 RGB image into 1,000 units "
            f"needs {want:,} parameters.")


def check_conv2d_by_hand(conv2d_by_hand) -> None:
    """Check ``conv2d_by_hand(image, kernel)`` against :func:`torch.nn.functional.conv2d`.

    The function takes a 2-D image (H, W) and a 2-D kernel (kh, kw) and must return the
    "valid" cross-correlation (no padding, stride 1), shaped (H - kh + 1, W - kw + 1),
    which is what ``F.conv2d`` computes.
    """
    gen = torch.Generator().manual_seed(0)
    cases = [
        (torch.rand(6, 7, generator=gen), torch.randn(3, 3, generator=gen)),
        (torch.rand(5, 8, generator=gen), torch.randn(2, 3, generator=gen)),  # not square
        (torch.rand(4, 4, generator=gen), torch.randn(1, 1, generator=gen)),
    ]
    for image, kernel in cases:
        got = _tensor(conv2d_by_hand(image.clone(), kernel.clone()), "the output")
        want = F.conv2d(image[None, None].double(), kernel[None, None].double())[0, 0]
        h, w = image.shape
        kh, kw = kernel.shape
        _hint(tuple(got.shape) == tuple(want.shape),
              f"for a {h}×{w} image and a {kh}×{kw} kernel the output should be "
              f"(H - kh + 1, W - kw + 1) = {tuple(want.shape)}, got {tuple(got.shape)}; "
              "slide the kernel only where it fits completely (no padding)")
        if torch.allclose(got, want, atol=1e-4):
            continue
        flipped = F.conv2d(image[None, None].double(),
                           kernel.flip(0, 1)[None, None].double())[0, 0]
        _hint(not torch.allclose(got, flipped, atol=1e-4),
              "your output is the textbook convolution with a *flipped* kernel; deep "
              "learning's conv2d is cross-correlation: multiply image[i+u, j+v] by "
              "kernel[u, v] without flipping")
        worst = (got - want).abs().argmax()
        i, j = divmod(int(worst), want.shape[1])
        _hint(False,
              f"for a {h}×{w} image and a {kh}×{kw} kernel, output[{i}, {j}] is "
              f"{got[i, j].item():.4f} but should be {want[i, j].item():.4f} = "
              f"sum(image[{i}:{i}+{kh}, {j}:{j}+{kw}] * kernel)")
    _passed("your sliding window computes exactly what F.conv2d computes "
            "(checked on 3 images, including a non-square kernel).")


def check_horizontal_edge_kernel(kernel) -> None:
    """Check a 2-D kernel that detects horizontal edges (and ignores vertical ones).

    Tested on synthetic images: a flat image must give no response, an image with a
    vertical edge (left bright, right dark) no response either, and an image with a
    horizontal edge (top bright, bottom dark) a clear one along the edge.
    """
    k = _tensor(kernel, "the kernel")
    _hint(k.dim() == 2 and min(k.shape) >= 2,
          f"the kernel should be a 2-D tensor such as 3×3, got shape {tuple(k.shape)}")
    _hint(bool(k.abs().sum() > 0), "the kernel is all zeros, so it detects nothing")
    n = 12
    flat = torch.full((n, n), 0.7, dtype=torch.float64)
    vertical = torch.zeros(n, n, dtype=torch.float64)
    vertical[:, : n // 2] = 1.0  # bright left half
    horizontal = vertical.T.contiguous()  # bright top half

    def response(img):
        return F.conv2d(img[None, None], k[None, None])[0, 0]

    scale = k.abs().sum().item()
    _hint(response(flat).abs().max().item() <= 1e-6 * scale,
          f"on a flat image your kernel responds with {response(flat)[0, 0].item():.3g}; "
          f"its weights sum to {k.sum().item():.3g} but must sum to 0, so that regions "
          "without an edge give 0")
    _hint(response(vertical).abs().max().item() <= 1e-6 * scale,
          "your kernel responds to a *vertical* edge (left bright, right dark); a horizontal "
          "edge detector compares the rows above the centre with the rows below it, so "
          "the weights should change from row to row but not along a row")
    r = response(horizontal)
    peak = r.abs().max().item()
    _hint(peak >= 0.25 * scale,
          f"your kernel barely responds to a horizontal edge (peak {peak:.3g}); give the "
          "rows above the centre one sign and the rows below the other")
    sign = "positive" if r.sum() > 0 else "negative"
    _passed(f"no response to flat regions or vertical edges, a {sign} response along a "
            "horizontal edge (bright above, dark below).")


# ---------------------------------------------------------------------------------------
# Chapter 2 — Teacher and student

def check_conv_block_parameters(conv_block_parameters) -> None:
    """Check ``conv_block_parameters(c_in, c_out, k=3)``: parameters of one conv block.

    A block of the book's CNNs is ``Conv2d(c_in, c_out, k×k, bias=False) →
    BatchNorm2d(c_out) → ReLU``. The reference is the parameter count of those
    :mod:`torch.nn` layers.
    """
    cases = [(1, 8, 3), (8, 16, 3), (32, 64, 3), (3, 5, 5), (16, 32, 1)]
    for c_in, c_out, k in cases:
        got = conv_block_parameters(c_in, c_out, k)
        _hint(isinstance(got, numbers.Integral) or (isinstance(got, float) and got.is_integer()),
              f"conv_block_parameters({c_in}, {c_out}, {k}) returned {got!r}; return a "
              "whole number (an int)")
        block = nn.Sequential(nn.Conv2d(c_in, c_out, k, bias=False, device="meta"),
                              nn.BatchNorm2d(c_out, device="meta"))
        want = sum(p.numel() for p in block.parameters())
        weights = c_in * c_out * k * k
        where = f"conv_block_parameters({c_in}, {c_out}, {k}) = {got:,}"
        _hint(got != weights,
              f"{where} counts only the convolution weights; batch normalisation adds a "
              "learned scale and shift per output channel")
        _hint(got != weights + c_out,
              f"{where}: the convolution has no bias here (bias=False, batch norm's shift "
              "does its job), but batch norm has a scale *and* a shift per channel")
        _hint(got != weights + 3 * c_out,
              f"{where} includes a convolution bias; the book's blocks use bias=False "
              "because batch norm's shift makes it redundant")
        _hint(got != weights + 4 * c_out,
              f"{where} counts batch norm's running mean and variance; those are buffers "
              "(statistics), not learned parameters")
        _hint(got == want,
              f"{where}, but such a block has {want:,} parameters: c_in × c_out × k × k "
              "convolution weights plus a scale and a shift per output channel")
    _passed("c_in·c_out·k² convolution weights plus 2·c_out batch-norm parameters "
            f"(checked on {len(cases)} blocks).")


# ---------------------------------------------------------------------------------------
# Chapter 3 — Knowledge distillation

def check_softmax_with_temperature(softmax_with_temperature) -> None:
    """Check ``softmax_with_temperature(logits, T)`` against ``F.softmax(logits / T, dim=1)``.

    ``logits`` is a batch ``(B, K)``; the answer must work for any T > 0 and for large
    logits (where a naive ``exp`` overflows).
    """
    gen = torch.Generator().manual_seed(3)
    cases = [
        (torch.randn(3, 4, generator=gen) * 3, 1.0),
        (torch.randn(3, 4, generator=gen) * 3, 4.0),
        (torch.randn(5, 10, generator=gen) * 5, 0.5),
        (torch.tensor([[1000.0, 0.0, -1000.0], [50.0, 60.0, 70.0]]), 2.0),
    ]
    for z, T in cases:
        got = _tensor(softmax_with_temperature(z.clone(), T), "the output")
        want = F.softmax(z.double() / T, dim=1)
        _hint(tuple(got.shape) == tuple(z.shape),
              f"for logits shaped {tuple(z.shape)} the output should have the same shape, "
              f"got {tuple(got.shape)}")
        _hint(bool(torch.isfinite(got).all()),
              f"with logits as large as {z.abs().max().item():g} your output has NaN or inf: "
              "exp overflows; subtract each row's maximum before exp (it cancels out)")
        if torch.allclose(got, want, atol=1e-5):
            continue
        _hint(not torch.allclose(got, F.softmax(z.double() / T, dim=0), atol=1e-5),
              "your probabilities sum to 1 down each column (over the batch); normalise "
              "each row (over the K classes, dim=1)")
        _hint(not torch.allclose(got, F.softmax(z.double() * T, dim=1), atol=1e-5),
              "you multiplied the logits by T; divide them by T (a high temperature "
              "makes the distribution *softer*)")
        _hint(not torch.allclose(got, F.softmax(z.double(), dim=1), atol=1e-5),
              f"your output ignores T (T={T}); compute softmax(logits / T)")
        _hint(False,
              f"for T={T} your output differs from softmax(logits / T) by up to "
              f"{(got - want).abs().max().item():.3g}; each row should be "
              "exp(z_i / T) / sum_j exp(z_j / T)")
    _passed("rows of exp(z/T) / Σ exp(z/T), numerically stable for logits of ±1000 "
            f"(checked on {len(cases)} batches and temperatures 0.5 to 4).")


def check_kd_loss(kd_loss) -> None:
    """Check ``kd_loss(student_logits, teacher_logits, T)`` against the package's
    :func:`atkd_lite.losses.kd_loss`: ``T² · KL(p_T || p_S)``, batch mean.
    """
    from atkd_lite.losses import kd_loss as reference

    gen = torch.Generator().manual_seed(4)
    cases = [(torch.randn(6, 10, generator=gen) * 2, torch.randn(6, 10, generator=gen) * 4, T)
             for T in (1.0, 4.0, 8.0)]
    for z_s, z_t, T in cases:
        got = kd_loss(z_s.clone(), z_t.clone(), T)
        _hint(isinstance(got, torch.Tensor) and got.numel() == 1,
              "return a scalar tensor (one number for the batch): average over the batch "
              "after summing the KL terms over the classes")
        got = float(got)
        want = float(reference(z_s, z_t, T))
        if abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            continue
        p_s, p_t = F.softmax(z_s / T, 1), F.softmax(z_t / T, 1)
        kl_rows = (p_t * (p_t.log() - p_s.log())).sum(1)
        reverse = float((p_s * (p_s.log() - p_t.log())).sum(1).mean()) * T * T
        _hint(abs(got - want / (T * T)) > 1e-4 * max(1.0, want),
              f"at T={T} your loss is the reference divided by T² = {T * T:g}; multiply "
              "the KL divergence by T² so the gradients keep their size at any T")
        _hint(abs(got - float(kl_rows.sum()) * T * T) > 1e-4 * max(1.0, want),
              "your loss is summed over the batch; take the mean over the batch (the KL "
              "of each example summed over the classes, then averaged)")
        _hint(abs(got - reverse) > 1e-4 * max(1.0, want),
              "your KL divergence runs the wrong way round: it is KL(p_teacher || p_student) "
              "= Σ p_T · (log p_T − log p_S), weighted by the teacher's probabilities")
        _hint(abs(got - float(kl_rows.mean()) * T * T / z_s.shape[1]) > 1e-4 * max(1.0, want),
              "your loss is averaged over the classes as well; sum the KL terms over the "
              "classes and average only over the batch")
        _hint(False,
              f"at T={T} your loss is {got:.5f} but should be {want:.5f} = T² · mean over "
              "the batch of Σ_k p_T,k (log p_T,k − log p_S,k), with p = softmax(z / T)")
    _passed("T² · KL(softmax(z_T/T) || softmax(z_S/T)), averaged over the batch: the same "
            "as atkd_lite.losses.kd_loss at T = 1, 4 and 8.")


#: the questions of the chapter's "predict the effect of T" exercise and their choices
TEMPERATURE_QUESTIONS = {
    "large_T": ("uniform", "one-hot", "unchanged"),
    "small_T": ("uniform", "one-hot", "unchanged"),
    "top_class_changes": (True, False),
}


def check_temperature_predictions(predictions) -> None:
    """Check predictions about ``softmax(z / T)``: a dict with the keys of
    ``TEMPERATURE_QUESTIONS`` (each question's choices).

    - ``"large_T"``: what the distribution approaches as T grows without bound;
    - ``"small_T"``: what it approaches as T shrinks towards 0 (no ties in z);
    - ``"top_class_changes"``: whether changing T can change which class is the most
      probable.

    The answers are worked out numerically here (softmax at T = 10⁴ and T = 10⁻³ on
    random logits, and the argmax at many temperatures), not stored.
    """
    _hint(isinstance(predictions, dict), "give your predictions as a dict, e.g. "
          "{'large_T': 'uniform', 'small_T': 'one-hot', 'top_class_changes': True}")
    for key, choices in TEMPERATURE_QUESTIONS.items():
        _hint(key in predictions, f"answer the question {key!r} (choices: {choices})")
        _hint(predictions[key] in choices,
              f"{key!r} must be one of {choices}, got {predictions[key]!r}")
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(200, 10, generator=gen, dtype=torch.float64) * 4

    def limit(T):
        p = F.softmax(z / T, dim=1)
        distance = {"uniform": (p - 1 / z.shape[1]).abs().max().item(),
                    "one-hot": (p - F.one_hot(z.argmax(1), z.shape[1])).abs().max().item(),
                    "unchanged": (p - F.softmax(z, dim=1)).abs().max().item()}
        return min(distance, key=distance.get)

    truth = {"large_T": limit(1e4), "small_T": limit(1e-3)}
    argmaxes = [(z / T).argmax(1) for T in (0.01, 0.1, 0.5, 1, 2, 4, 8, 16, 100)]
    truth["top_class_changes"] = any(bool((a != argmaxes[0]).any()) for a in argmaxes)
    why = {
        "large_T": "divide the logits by a huge T: all of them get close to 0, so all "
                   "exp(z/T) get close to 1",
        "small_T": "divide by a tiny T: the largest logit runs away from all others, so "
                   "its exp dominates the sum",
        "top_class_changes": "dividing every logit by the same positive T keeps their order, "
                             "and softmax is increasing",
    }
    for key in TEMPERATURE_QUESTIONS:
        _hint(predictions[key] == truth[key], f"{key!r}: not {predictions[key]!r}. Hint: {why[key]}.")
    _passed("as T grows the soft targets approach the uniform distribution, as T shrinks a "
            "one-hot vector, and the most probable class never changes: T only decides "
            "how much of the ranking below the top class the student gets to see.")


#: a loop's weights may be this far (relative to how far training moved them) from the
#: package's: about three times what reordering one batch's images moved them after eight
#: Adam steps (at most 0.011 for correct loops, in the package's order or a DataLoader's,
#: over 30 orders and two initialisations), and below the mildest real mistake measured
#: (the KL reversed: 0.08 with a weak teacher, 0.24 with the book's; T² dropped and the
#: teacher in train mode: 0.5 to 1.0); ``tests/test_write_it_yourself.py`` checks both
LOOP_TOLERANCE = 0.03


def distill_loop_distance(loop, teacher, train, method: str = "kd", batch_size: int = 64,
                          device="cpu", epochs: int = 8, seed: int = 0) -> float:
    """How far a hand-written distillation loop trains from ``ak.distill(..., method)``.

    ``loop(teacher, student, train, epochs, seed)`` must train ``student`` and return it.
    Both the loop and the package run on **one batch** of ``batch_size`` training images
    (so every epoch is one step on the same images, and the loss, a mean over them, does
    not depend on their order), from the same initial small student, for ``epochs``
    steps. The result is the distance between the two trained weight vectors, relative to
    the distance the package's training moved the weights: ~0 for a correct loop in any
    image order (the package's ``make_batches``, a ``DataLoader`` with ``shuffle=True``),
    of order 0.1 to 1 for a loop that computes another loss or leaves the teacher in
    train mode. The teacher given is not modified (the loop gets a copy).

    Args:
        loop: the learner's function.
        teacher: the trained teacher.
        train: the training :class:`~atkd_lite.ImageSet` (``batch_size`` of its images
            are used).
        method: the package's method the loop writes (``"kd"``, ``"fma"``, ...).
        batch_size: the batch size the loop uses (``P.batch_size``).
        device: where both run.
        epochs: how many steps (8 or more: the one-cycle schedule's shortest run).
        seed: the seed passed to the loop and to ``ak.distill``.

    Returns:
        float: ``|w_loop - w_package| / |w_package - w_initial|``.
    """
    import copy

    import atkd_lite as ak

    _hint(callable(loop), f"give your training function itself, got {type(loop).__name__}")
    n = min(int(batch_size), len(train))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:n]
    batch = train.subset(pick.tolist())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        initial = ak.student_cnn("small", in_channels=batch.images.shape[1],
                                 num_classes=train.num_classes)
    frozen = copy.deepcopy(teacher).eval()
    reference = ak.distill(copy.deepcopy(frozen), copy.deepcopy(initial), batch,
                           method=method, epochs=epochs, batch_size=n, seed=seed,
                           device=device, amp=False, channels_last=False,
                           progress=False).student
    mine = loop(copy.deepcopy(frozen), copy.deepcopy(initial).to(device), batch, epochs,
                seed)
    _hint(isinstance(mine, nn.Module), "return the trained student (a torch module), "
          f"got {type(mine).__name__}")

    def flat(model):
        return torch.cat([p.detach().double().cpu().flatten() for p in model.parameters()])

    start, ref, got = flat(initial), flat(reference), flat(mine)
    _hint(got.shape == ref.shape, "return the student you were given, trained")
    _hint(not torch.equal(got, start), "the student's weights did not change: call the "
          "optimiser's step() after backward()")
    return float((got - ref).norm() / (ref - start).norm())


def check_distill_loop(loop, teacher, train, method: str = "kd", batch_size: int = 64,
                       device="cpu", epochs: int = 8, seed: int = 0) -> None:
    """Check a hand-written distillation loop (chapters 3 and 5): any correct loop passes.

    Runs :func:`distill_loop_distance` and accepts a distance up to
    ``LOOP_TOLERANCE`` (0.03): the image order does not matter, a loop that computes
    another loss (its terms, their weights, ``T²``, the direction of the KL), leaves the
    teacher in train mode, forgets the student's ``train()`` or the scheduler, is
    refused. Arguments as :func:`distill_loop_distance`.
    """
    distance = distill_loop_distance(loop, teacher, train, method, batch_size, device,
                                     epochs, seed)
    print(f"relative weight distance from ak.distill(method={method!r}) after {epochs} "
          f"steps on one batch: {distance:.4f}")
    _hint(distance <= LOOP_TOLERANCE,
          f"your loop trains other weights than ak.distill(method={method!r}) (distance "
          f"{distance:.2f}, allowed {LOOP_TOLERANCE}). Check the loss (its terms, their "
          "weights, T² and the direction of the KL), the teacher in eval() mode and "
          "without gradients, the student in train() mode, and that the scheduler "
          "steps after the optimiser")
    _passed(f"your loop trains what ak.distill(method={method!r}) trains: after "
            f"{epochs} steps on one batch its weights are within {distance:.1%} of the "
            "package's (reordering the images moves them about as much).")


# ---------------------------------------------------------------------------------------
# Chapter 4 — Attention maps (ATCam)

def _combination_cases() -> list[list[torch.Tensor]]:
    """Per-layer maps (each (B, H, W), normalised per image) to combine, with edge cases."""
    from atkd_lite.atcam import normalize_maps

    gen = torch.Generator().manual_seed(4)
    random_maps = [normalize_maps(torch.rand(3, 5, 6, generator=gen)) for _ in range(4)]
    # image 0: two complementary 0/1 masks, so their mean is exactly constant (0.5);
    # image 1: every layer all zeros (a constant feature map normalises to zeros)
    mask = (torch.rand(1, 4, 4, generator=gen) > 0.5).float()
    edge = [torch.cat([mask, torch.zeros(1, 4, 4)]), torch.cat([1 - mask, torch.zeros(1, 4, 4)])]
    return [random_maps, random_maps[:2], edge]


def _check_combination(combine, mode: str, name: str, other: str) -> None:
    from atkd_lite.atcam import COMBINE, combine_maps

    for layer_maps in _combination_cases():
        got = _tensor(combine([m.clone() for m in layer_maps]), "the combined map")
        want = combine_maps(layer_maps, mode).double()
        stack = torch.stack(layer_maps).double()
        _hint(tuple(got.shape) == tuple(want.shape),
              f"for {len(layer_maps)} per-layer maps of shape {tuple(layer_maps[0].shape)} the "
              f"result should be one map per image, shaped {tuple(want.shape)}; got "
              f"{tuple(got.shape)}. Stack the layers (torch.stack) and reduce over the "
              "layer axis (dim=0)")
        _hint(not torch.isnan(got).any(),
              "your map contains NaN: when the combined map of an image is constant "
              "(max = min) the normalisation divides by zero; return zeros for such an "
              "image instead")
        if torch.allclose(got, want, atol=1e-5):
            continue
        raw = COMBINE[mode](stack)
        _hint(not torch.allclose(got, raw, atol=1e-5),
              f"you return the {name} of the layers but do not normalise it again: the "
              "combined map must be min-max normalised to [0, 1] per image")
        lo, hi = raw.amin(), raw.amax()
        _hint(not torch.allclose(got, (raw - lo) / (hi - lo), atol=1e-5),
              "you normalise with the min and max of the whole batch; normalise each "
              "image on its own (min and max over H and W only)")
        swapped = next(k for k in COMBINE if k != mode)  # the other built-in combination
        _hint(not torch.allclose(got, combine_maps(layer_maps, swapped).double(), atol=1e-5),
              f"that is the {other} of the layers; {mode.upper()} takes the {name}")
        worst = (got - want).abs().flatten().argmax()
        _hint(False, f"your map differs from the expected one by up to "
                     f"{(got - want).abs().max():.3g} (at flat index {int(worst)}); compute "
                     f"the elementwise {name} over the layers, then (m - min) / (max - min) "
                     "per image, and 0 for a constant map")
    _passed(f"{mode.upper()} = norm({name} over layers), per image, zeros for a constant "
            "map: the same as atkd_lite.atcam.combine_maps (checked on random maps and "
            "on two edge cases).")


def check_fma_combination(fma_combine) -> None:
    """Check ``fma_combine(layer_maps)``: FMA, the normalised mean of per-layer maps.

    ``layer_maps`` is a list of per-layer maps, each (B, H, W) and already normalised
    per image; the answer must equal :func:`atkd_lite.atcam.combine_maps` with
    ``mode="fma"``: the elementwise mean over layers, min-max normalised per image, and
    all zeros (not NaN) where that mean is constant.
    """
    _check_combination(fma_combine, "fma", "mean", "maximum")


def check_mip_combination(mip_combine) -> None:
    """Check ``mip_combine(layer_maps)``: MIP, the normalised maximum of per-layer maps.

    As :func:`check_fma_combination`, with the elementwise maximum over layers
    (:func:`atkd_lite.atcam.combine_maps` with ``mode="mip"``).
    """
    _check_combination(mip_combine, "mip", "maximum", "mean")


# ---------------------------------------------------------------------------------------
# Chapter 5 — Attention-guided distillation

def check_keep_layers(keep_layers) -> None:
    """Check ``keep_layers(names, first, last)``: ATCam's layer selection rule.

    Keep the first ``first`` and the last ``last`` names, in their original order, a
    name in both ends once; ``first + last >= len(names)`` keeps all; ``first = last =
    0`` raises :class:`ValueError`. The reference is the rule written with indices
    (``i < first or i >= N - last``), not a slice.
    """
    cases = [
        (["c1", "c2", "c3", "c4", "c5", "c6"], 2, 2),
        (["c1", "c2", "c3", "c4", "c5", "c6"], 1, 0),
        (["c1", "c2", "c3", "c4", "c5", "c6"], 0, 1),
        (["c1", "c2", "c3", "c4", "c5", "c6"], 4, 4),
        (["s1", "s2", "s3"], 2, 2),
        (["s1", "s2", "s3"], 1, 1),
        (["only"], 1, 3),
    ]
    for names, first, last in cases:
        want = [n for i, n in enumerate(names) if i < first or i >= len(names) - last]
        got = keep_layers(list(names), first, last)
        _hint(isinstance(got, (list, tuple)),
              f"keep_layers(...) should return a list of names, got {type(got).__name__}")
        got = list(got)
        if got == want:
            continue
        call = f"keep_layers({names}, first={first}, last={last})"
        _hint(not (last == 0 and got == names),
              f"{call} returned every name: with last=0, names[-last:] is names[-0:], which "
              "is the whole list; handle last=0 separately (or use indices)")
        _hint(len(got) == len(set(got)),
              f"{call} returned {got}: a layer that is among both the first and the last "
              "must be kept once")
        _hint(sorted(got) != sorted(want),
              f"{call} returned the right layers in the wrong order ({got}); keep the "
              f"forward order {want}")
        _hint(False, f"{call} returned {got}, expected {want}")
    raised = False
    try:
        keep_layers(["c1", "c2"], 0, 0)
    except ValueError:
        raised = True
    _hint(raised, "keep_layers(names, 0, 0) would keep no layer at all: raise a ValueError "
                  "that says to keep at least one")
    _passed("first and last kept in forward order, overlaps once, last=0 handled, and "
            "first=last=0 refused (checked on 7 cases).")


# ---------------------------------------------------------------------------------------
# Chapter 6 — Do the maps look at the right place?

def check_pointing_game_by_hand(pointing_game_by_hand) -> None:
    """Check ``pointing_game_by_hand(amap, box) -> float`` for one (H, W) map and box.

    ``box`` is ``(x0, y0, x1, y1)``, end-exclusive; the answer is the share of the pixels
    holding the map's largest value that lie inside the box: 1 or 0 for a single peak,
    the expected hit under random tie-breaking for a tie. Compared with hand-placed peaks:
    inside, just outside each edge (end-exclusive!), ties, a constant map.
    """
    h, w = 12, 10
    box = (2, 3, 6, 8)  # columns 2..5, rows 3..7
    cases = []
    for (r, c), inside in [((3, 2), 1.0), ((7, 5), 1.0), ((5, 4), 1.0),
                           ((8, 4), 0.0), ((5, 6), 0.0), ((2, 3), 0.0), ((5, 1), 0.0)]:
        m = torch.rand(h, w, generator=torch.Generator().manual_seed(r * w + c)) * 0.5
        m[r, c] = 1.0
        cases.append((m, inside, f"a peak at row {r}, column {c}"))
    for outside in ((0, 0), (10, 9)):  # the outside peak before / after the inside one
        tie = torch.zeros(h, w)
        tie[4, 3] = tie[outside] = 1.0
        cases.append((tie, 0.5, f"two equal peaks, one outside the box at {outside}"))
    cases.append((torch.ones(h, w), 20 / 120, "a constant map (every pixel is a peak)"))
    for m, want, what in cases:
        got = pointing_game_by_hand(m.clone(), box)
        ok = isinstance(got, (bool, int, float, torch.Tensor)) and abs(float(got) - want) < 1e-6
        _hint(ok, f"for {what} and box (x0, y0, x1, y1) = {box} the answer is {want:.3g}, "
                  f"got {got!r}. x runs along columns and y along rows, x1 and y1 are "
                  "end-exclusive, and a tie scores the share of the tied peaks inside.")
    _passed("peaks inside, on every edge and just outside the end-exclusive box, ties and "
            f"a constant map: all {len(cases)} cases right.")


# ---------------------------------------------------------------------------------------
# Chapter 7 — Efficiency

def check_cache_bytes(cache_bytes) -> None:
    """Check ``cache_bytes(n_images, height, width, n_classes, n_map_kinds) -> int``.

    Compared with the bytes a real :class:`~atkd_lite.cache.TeacherCache` holds (logits
    in float16, maps in uint8, no AT vectors) for a few small data sets.
    """
    from atkd_lite.cache import TeacherCache
    from atkd_lite.data import load_dataset
    from atkd_lite.models import student_cnn

    net = student_cnn("tiny").eval()
    for n_per_class, kinds in ((1, ["fma"]), (2, ["fma", "mip"])):
        data = load_dataset("mnist5k", "val").per_class(n_per_class)
        real = TeacherCache.build(net, data, maps=kinds, at=False, device="cpu",
                                  progress=False).nbytes()
        h, w = data.image_size
        got = cache_bytes(len(data), h, w, data.num_classes, len(kinds))
        _hint(isinstance(got, numbers.Real) and got == real,
              f"for {len(data)} images of {h}×{w}, 10 classes and {len(kinds)} map kind(s) "
              f"the cache holds {real:,} bytes, you said {got!r}. Logits take 2 bytes each "
              f"(float16), map pixels 1 byte each (uint8).")
    _passed("logits at 2 bytes per class and maps at 1 byte per pixel match what "
            "TeacherCache holds.")


# ---------------------------------------------------------------------------------------
# Chapter 8 — Shortcuts

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def check_add_swatch(add_swatch) -> None:
    """Check ``add_swatch(image, cls, corner, size=4)``: paint the decoy swatch.

    ``image`` is a uint8 tensor (H, W); the answer is a *new* tensor with a ``size``×``size``
    square in ``corner`` (``"top-left"``, ``"top-right"``, ``"bottom-left"`` or
    ``"bottom-right"``) set to ``255 − 25·cls``. Compared with the book's decoy digits
    (:func:`atkd_lite.data.decoy_mnist`) pixel for pixel, and on other sizes and classes
    with the pixels outside the square.
    """
    from atkd_lite.data import decoy_mnist, embedded_mnist

    decoy = decoy_mnist("train", rho=1.0).subset(range(0, 4000, 501))
    plain = embedded_mnist("train").images[0:4000:501, 0]
    for i in range(len(decoy)):
        x0, y0 = decoy.swatch_boxes[i, :2].tolist()
        corner = ("bottom" if y0 else "top") + "-" + ("right" if x0 else "left")
        cls = int(decoy.swatch_classes[i])
        original = plain[i].clone()
        got = add_swatch(original, cls, corner)
        _hint(isinstance(got, torch.Tensor) and got.shape == (28, 28),
              f"add_swatch should return a (28, 28) tensor, got {type(got).__name__} "
              f"{tuple(getattr(got, 'shape', ()))}")
        _hint(torch.equal(original, plain[i]),
              "add_swatch changed the image it was given; paint a copy (image.clone())")
        want = decoy.images[i, 0]
        if torch.equal(got.to(torch.uint8), want):
            continue
        changed = torch.nonzero(got.to(torch.int64) != plain[i].to(torch.int64))
        _hint(len(changed) > 0, f"nothing was painted for class {cls} in the {corner} corner")
        rows, cols = changed[:, 0], changed[:, 1]
        _hint(bool(((rows < 4) | (rows >= 24)).all() and ((cols < 4) | (cols >= 24)).all()),
              f"for the {corner} corner, pixels away from the corners changed; the square "
              "spans rows 0-3 (top) or 24-27 (bottom) and columns 0-3 (left) or 24-27 (right)")
        _hint(bool((rows < 4).all() == (y0 == 0)),
              f"the square is in the wrong row band for '{corner}': top means rows 0-3, "
              "bottom rows 24-27 (rows are the first index)")
        _hint(bool((cols < 4).all() == (x0 == 0)),
              f"the square is in the wrong column band for '{corner}': left means columns "
              "0-3, right columns 24-27 (columns are the second index)")
        shade = int(want[y0, x0])
        _hint(False, f"class {cls} has the shade 255 - 25·{cls} = {shade}; the square holds "
                     f"{got[y0, x0].item()}")
    for size, cls, corner in ((1, 0, "top-left"), (6, 9, "bottom-right"), (3, 4, "top-right")):
        image = torch.zeros(28, 28, dtype=torch.uint8)
        got = add_swatch(image, cls, corner, size)
        expect = torch.zeros(28, 28, dtype=torch.int64)
        rows = slice(0, size) if corner.startswith("top") else slice(28 - size, 28)
        cols = slice(0, size) if corner.endswith("left") else slice(28 - size, 28)
        expect[rows, cols] = 255 - 25 * cls
        _hint(torch.equal(got.to(torch.int64), expect),
              f"add_swatch(blank, cls={cls}, corner='{corner}', size={size}) should paint a "
              f"{size}×{size} square of {255 - 25 * cls}; use size for the square's side")
    _passed("your swatches match the book's decoy digits pixel for pixel, in all four "
            "corners and at other sizes, and the original image is left alone.")


def check_rrr_penalty(rrr_penalty) -> None:
    """Check ``rrr_penalty(grad, mask)``: Ross et al.'s right-reasons penalty.

    ``grad`` is the input gradient ``(B, C, H, W)``, ``mask`` a bool ``(B, H, W)`` that is
    True on the pixels the model must not use; the answer is the mean over images of the
    sum, over the masked pixels and the channels, of the squared gradient. Compared with
    a loop over every pixel, and with cases whose answer is known (empty and full masks).
    """
    gen = torch.Generator().manual_seed(8)
    grad = torch.randn(3, 2, 5, 4, generator=gen)
    mask = torch.rand(3, 5, 4, generator=gen) < 0.3
    want = 0.0
    for b in range(3):
        for c in range(2):
            for i in range(5):
                for j in range(4):
                    if mask[b, i, j]:
                        want += float(grad[b, c, i, j]) ** 2
    want /= 3
    got = rrr_penalty(grad.clone(), mask.clone())
    _hint(isinstance(got, (torch.Tensor, numbers.Real)) and torch.as_tensor(got).numel() == 1,
          f"rrr_penalty should return one number (a 0-d tensor), got {type(got).__name__}")
    got = float(got)
    _hint(abs(got - 3 * want) > 1e-5,
          "you summed over the images; the penalty is the *mean* over the images")
    total, n_masked = 3 * want, mask.sum().item()
    _hint(all(abs(got - total / k) > 1e-5 for k in (n_masked, 2 * n_masked)),
          "divide only by the number of images, not by the number of masked pixels")
    _hint(abs(got - want) < 1e-5,
          f"for a random gradient and mask the penalty is {want:.4f}, you got {got:.4f}: square "
          "the gradient, keep only the masked pixels, sum over pixels and channels, then "
          "average over the images")
    none = float(rrr_penalty(grad, torch.zeros(3, 5, 4, dtype=torch.bool)))
    _hint(none == 0.0, "with an empty mask nothing is penalised: the answer must be 0")
    full = float(rrr_penalty(-grad, torch.ones(3, 5, 4, dtype=torch.bool)))
    norms = torch.linalg.vector_norm(grad.flatten(1), dim=1).pow(2).mean().item()
    _hint(abs(full - norms) < 1e-4, "with a full mask the penalty is the mean squared norm "
                                    "of each image's gradient (negative gradients count too)")
    _passed("squared gradient on the masked pixels, summed over pixels and channels, averaged "
            "over the images — as a loop over every pixel computes it.")


# Chapter 9 — Your own model

def check_channel_stats(channel_stats) -> None:
    """Check ``channel_stats(images) -> (mean, std)``: per-channel statistics of uint8 images.

    ``images`` is a uint8 tensor (N, C, H, W); the answer is C means and C standard
    deviations of all its pixels on the [0, 1] scale. Compared with
    ``torch.std_mean(..., correction=0)`` over images, rows and columns, for random
    batches and a constant channel; the usual slips get their own hint.
    """
    gen = torch.Generator().manual_seed(9)
    batches = [torch.randint(0, 256, (6, 3, 5, 7), generator=gen, dtype=torch.uint8),
               torch.randint(0, 256, (3, 1, 4, 4), generator=gen, dtype=torch.uint8)]
    const = torch.randint(0, 256, (4, 2, 3, 3), generator=gen, dtype=torch.uint8)
    const[:, 1] = 77
    batches.append(const)
    for images in batches:
        x = images.double() / 255
        std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0)
        got = channel_stats(images.clone())
        _hint(isinstance(got, (tuple, list)) and len(got) == 2,
              "return a pair (mean, std), each with one number per channel")
        g_mean = _tensor(got[0], "mean").flatten()
        g_std = _tensor(got[1], "std").flatten()
        c = images.shape[1]
        _hint(g_mean.numel() == c and g_std.numel() == c,
              f"for {c}-channel images give {c} means and {c} standard deviations; "
              f"got {g_mean.numel()} and {g_std.numel()} (average over images, rows and "
              "columns: dim=(0, 2, 3))")
        _hint(not torch.allclose(g_mean, mean * 255, atol=1e-3),
              "the values are on the 0-255 scale: divide by 255 first (the model sees "
              "images in [0, 1])")
        _hint(torch.allclose(g_mean, mean, atol=1e-6),
              f"the means should be {[round(v, 4) for v in mean.tolist()]}, got "
              f"{[round(v, 4) for v in g_mean.tolist()]} (average over dim=(0, 2, 3))")
        per_image = x.std(dim=(2, 3), correction=0).mean(dim=0)
        _hint(not (torch.allclose(g_std, per_image, atol=1e-6)
                   and not torch.allclose(per_image, std, atol=1e-6)),
              "that is the mean of the per-image standard deviations (how the widely "
              "copied CIFAR-10 std 0.2023, 0.1994, 0.2010 was made), not the standard "
              "deviation of all the pixels together")
        unbiased = x.std(dim=(0, 2, 3), correction=1)
        _hint(not (torch.allclose(g_std, unbiased, atol=1e-9)
                   and not torch.allclose(unbiased, std, atol=1e-9)),
              "use the population standard deviation (divide by n: correction=0), the "
              "statistic normalisation divides by")
        _hint(torch.allclose(g_std, std, atol=1e-6),
              f"the standard deviations should be {[round(v, 4) for v in std.tolist()]}, "
              f"got {[round(v, 4) for v in g_std.tolist()]}")
    _passed("per-channel means and standard deviations over every pixel, on the [0, 1] "
            "scale, as ImageSet.channel_stats() computes them.")


def check_capture_points(capture_points) -> None:
    """Check ``capture_points(shapes, min_size, first, last) -> list of names``.

    ``shapes`` maps each candidate capture point, in forward order, to its output shape
    (C, H, W); the answer drops the points whose maps are smaller than ``min_size`` in
    height or width (a 1×1 map carries no "where"), then keeps the first ``first`` and the
    last ``last`` of the rest, in order, each once. Compared with hand-made cases and
    with :func:`~atkd_lite.atcam.select_layers` on the filtered names.
    """
    from atkd_lite.atcam import select_layers

    mobile = {"features.0": (16, 16, 16), "features.1": (16, 8, 8), "features.3": (24, 4, 4),
              "features.6": (40, 2, 2), "features.9": (96, 1, 1), "features.12": (576, 1, 1)}
    wide = {"group1": (32, 32, 32), "group2": (64, 16, 16), "group3": (128, 8, 8)}
    odd = {"a": (8, 8, 1), "b": (8, 4, 4), "c": (8, 1, 6), "d": (8, 5, 5)}
    cases = [
        (mobile, 4, 2, 2, ["features.0", "features.1", "features.3"]),
        (mobile, 2, 1, 1, ["features.0", "features.6"]),
        (wide, 4, 2, 2, ["group1", "group2", "group3"]),
        (wide, 8, 1, 1, ["group1", "group3"]),
        (odd, 4, 1, 1, ["b", "d"]),
    ]
    for shapes, min_size, first, last, expected in cases:
        kept = [n for n, (_, h, w) in shapes.items() if h >= min_size and w >= min_size]
        assert expected == select_layers(kept, first, last)  # the hand cases follow the rule
        got = capture_points(dict(shapes), min_size, first, last)
        _hint(isinstance(got, (list, tuple)) and all(isinstance(n, str) for n in got),
              f"return a list of names, got {got!r}")
        got = list(got)
        small = [n for n in got if min(shapes[n][1:]) < min_size] if set(got) <= set(
            shapes) else []
        _hint(not small, f"{small} have maps smaller than {min_size}×{min_size} (height "
                         "AND width must be at least min_size): drop them before choosing")
        _hint(got == expected,
              f"for the shapes {shapes}, min_size={min_size}, first={first}, last={last} the "
              f"capture points are {expected}, you gave {got} (drop the small maps first, "
              "then keep the first `first` and the last `last` of the rest, in order)")
    _passed("small maps dropped first, then the first and last of the rest, in forward "
            "order: the same rule as ATCam's first/last.")

