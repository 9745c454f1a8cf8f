"""Distillers: one small class per method, each an ``nn.Module`` holding student and teacher.

Every method minimises one loss (the book's chapter "Attention-guided distillation")::

    L = (1 − α)·CE(z_S, y) + α·KD(z_S, z_T; T) + β·L_att(student, teacher)

with α = 0 unless the method has ``+kd``, and no attention term for ``student`` and
``kd``. As in mdistiller, a distiller's :meth:`Distiller.forward_train` returns the
student's logits and its loss terms by name; the training loop only sums and logs them.
A distiller carries its own needs:

- ``kind`` — which teacher signal it matches (``"fma"``, ``"mip"``, ``"sals"``, ``"at"``
  or None), hence what it needs from a :class:`~atkd_lite.cache.TeacherCache`
  (:meth:`Distiller.cache_needs`);
- ``default_beta`` — its tuned attention weight, used when ``beta`` is not given;
- :meth:`Distiller.setup` — anything it must learn about the networks before training
  (AT pairs the capture points of two networks of different depths).

Each network has its own capture points (``teacher_layers``, ``student_layers``; see
:func:`layer_selection`): a ResNet teacher and a MobileNet student have different
depths and different natural places to listen. The rules for comparing them:

- **FMA and MIP** compare one map per network, each combined from its own selection and
  resized to one size (the input's, or ``size``), so the two selections may differ in
  length and in depth;
- **AT** compares feature maps *in pairs*, in order: with no selection given, all
  capture points of both networks are paired by depth (:func:`~atkd_lite.losses.at.pair_layers`);
  with a selection, both sides must select equally many layers (else a ValueError says
  how to fix it);
- **SALS** and the methods without an attention term use no capture point (the
  selections are checked, then unused).

``train()`` keeps the teacher in eval mode whatever it is called with, so the loop needs
no freeze/restore code. :data:`METHODS` maps each method name to its distiller; it is
the one place the method string is decoded.

Defined in the book's chapter "Attention-guided distillation".

Examples::

    >>> import torch, atkd_lite as ak
    >>> from atkd_lite.distillers import make_distiller
    >>> d = make_distiller("fma+kd", ak.student_cnn("tiny"), ak.teacher_cnn().eval())
    >>> logits, terms = d.forward_train(torch.rand(4, 1, 28, 28), torch.arange(4), None)
    >>> sorted(terms)
    ['loss', 'loss_att', 'loss_ce', 'loss_kd']
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.atcam import ATCam, resize_weights, traceable_maps_from_raw
from atkd_lite.data import UNLABELLED
from atkd_lite.losses.at import at_loss, at_vector, pair_layers
from atkd_lite.losses.attention import attention_loss
from atkd_lite.losses.kd import kd_loss
from atkd_lite.runtime import (
    autocast_context,
    compile_function,
    cuda_graph_mode,
    eval_mode,
    model_logits,
)
from atkd_lite.saliency import saliency_map

__all__ = [
    "DEFAULT_ALPHA",
    "METHODS",
    "ATCamDistiller",
    "ATDistiller",
    "Distiller",
    "FMADistiller",
    "MIPDistiller",
    "SalsDistiller",
    "layer_selection",
    "make_distiller",
    "parse_method",
]


#: the KD weight α of ``kd`` and ``+kd`` methods, chosen on the validation split like every
#: method's weight (``atkd-lite tune``, committed as the results ``mnist5k-tuning``)
DEFAULT_ALPHA = 0.7


class Distiller(nn.Module):
    """Cross-entropy, plus Hinton's KD when ``alpha > 0``; no attention term.

    Subclasses set ``kind`` (the teacher signal their attention term matches: ``"fma"``,
    ``"mip"``, ``"sals"``, ``"at"``; None here) and ``default_beta`` (its tuned weight),
    and override :meth:`teacher_signals` and :meth:`student_forward` (and
    :meth:`attention_term` when the distance is not
    :func:`~atkd_lite.losses.attention_loss`).

    Args:
        student, teacher (nn.Module): the networks (the teacher is never trained).
        alpha (float): weight of KD; CE gets ``1 − alpha``. 0 = no KD.
        beta (float, optional): weight of the attention term; None = ``default_beta``.
        T (float): KD temperature.
        attention_form (str): the form of :func:`~atkd_lite.losses.attention_loss`.
        label_smoothing (float): cross-entropy's label smoothing (0: none; a control for
            KD's soft targets).
        first, last (int): ATCam's layer selection (FMA and MIP), for a network whose own
            selection is None.
        teacher_layers, student_layers (optional): each network's capture points, see
            :func:`layer_selection` (None: ``first``/``last`` of its automatic ones).
        size (two ints, optional): map size (FMA and MIP); None = the input's H×W.
        cache (TeacherCache, optional): teacher logits and maps by dataset index.
        amp (bool, optional): autocast on CUDA (None = on there).
        compile_maps (bool or str): FMA and MIP: compile both networks' map computation
            (``ATCam(..., compile=)``) and the attention loss, as one graph; off by default
            (equal to rounding, not bit for bit, and the first steps compile). The
            :class:`~atkd_lite.engine.DistillConfig` setting of the same name.
    """

    # the teacher signal matched by the attention term (None: no attention term), and the
    # attention weight β tuned for it (see benchmarks/tune_defaults.py)
    kind: str | None = None
    default_beta: float = 0.0
    #: True where the attention term uses ATCam's maps (FMA and MIP), the only methods
    #: that ``compile_maps`` applies to
    uses_atcam_maps: bool = False

    def __init__(self, student: nn.Module, teacher: nn.Module, *, alpha: float = 0.0,
                 beta: float | None = None, T: float = 8.0, attention_form: str = "l2",
                 first: int = 2, last: int = 2, size: Sequence[int] | None = None,
                 cache=None, amp: bool | None = None, label_smoothing: float = 0.0,
                 teacher_layers=None, student_layers=None, compile_maps: bool | str = False):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.teacher_layers, self.student_layers = teacher_layers, student_layers
        self.alpha, self.T = float(alpha), float(T)
        self.beta = float(self.default_beta if beta is None else beta)
        self.attention_form = attention_form
        self.first, self.last, self.size = first, last, size
        self.cache, self.amp = cache, amp
        self.label_smoothing = float(label_smoothing)
        if compile_maps and not self.uses_atcam_maps:
            raise ValueError(f"compile_maps compiles ATCam's map computation, which only FMA "
                             f"and MIP use; {type(self).__name__} has none: leave it False")
        self.compile_maps = compile_maps

    def train(self, mode: bool = True) -> Distiller:
        """Train or evaluate the student; the teacher always stays in eval mode."""
        self.training = mode
        self.student.train(mode)
        self.teacher.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.student.parameters()).device

    def setup(self, x_probe: torch.Tensor) -> None:
        """Prepare for training with a probe batch (nothing to do here)."""

    def cache_needs(self) -> dict:
        """What a teacher cache must hold for this distiller (see ``TeacherCache.check``)."""
        return {}

    # -- teacher side -------------------------------------------------------------------
    def teacher_logits(self, x: torch.Tensor, idx) -> torch.Tensor | None:
        """The teacher's logits when KD is on (from the cache if there is one), else None."""
        if self.alpha == 0:
            return None
        if self.cache is not None:
            return self.cache.logits(idx, device=self.device)
        with torch.no_grad(), autocast_context(self.device, self.amp):
            return model_logits(self.teacher(x), "the teacher").float()

    def teacher_signals(self, x, y, idx) -> tuple[torch.Tensor | None, object]:
        """The teacher's logits (None when KD is off) and its attention (None here)."""
        return self.teacher_logits(x, idx), None

    # -- student side -------------------------------------------------------------------
    def student_forward(self, x, y) -> tuple[torch.Tensor, object]:
        """The student's logits and its attention (None here)."""
        with autocast_context(self.device, self.amp):
            return model_logits(self.student(x), "the student"), None

    def attention_term(self, s_att, t_att) -> torch.Tensor:
        """The unweighted attention loss between the student's and the teacher's signal."""
        return attention_loss(s_att, t_att, form=self.attention_form)

    def forward_train(self, x, y, idx) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training forward: ``(student logits, {"loss": total, "loss_ce": …, …})``.

        The terms are unweighted; ``"loss"`` is their weighted sum, the one to minimise.
        """
        t_logits, t_att = self.teacher_signals(x, y, idx)
        logits, s_att = self.student_forward(x, y)
        # images without a label (a KD transfer set) count in every term but this one
        labelled = (y != UNLABELLED).sum().clamp_min(1)
        ce = F.cross_entropy(logits.float(), y, ignore_index=UNLABELLED, reduction="sum",
                             label_smoothing=self.label_smoothing) / labelled
        terms = {"loss_ce": ce}
        total = (1 - self.alpha) * ce
        if self.alpha > 0:
            terms["loss_kd"] = kd_loss(logits, t_logits, self.T)
            total = total + self.alpha * terms["loss_kd"]
        if self.kind is not None:
            terms["loss_att"] = self.attention_term(s_att, t_att)
            total = total + self.beta * terms["loss_att"]
        return logits, {"loss": total, **terms}


class ATCamDistiller(Distiller):
    """ATCam maps (FMA or MIP, by ``kind``): the attention loss between the two networks' maps.

    Each network's map is combined from its own capture points and resized to one size,
    so the teacher's and the student's selections may differ in length.
    """

    uses_atcam_maps = True

    def __init__(self, student, teacher, **kw):
        super().__init__(student, teacher, **kw)
        self.student_cam = ATCam(student, combine=self.kind, size=self.size,
                                 compile=self.compile_maps,
                                 **layer_selection(self.student_layers, self.first,
                                                   self.last, "student_layers"))
        self.teacher_cam = ATCam(teacher, combine=self.kind, size=self.size,
                                 compile=self.compile_maps,
                                 **layer_selection(self.teacher_layers, self.first,
                                                   self.last, "teacher_layers"))

    def setup(self, x_probe: torch.Tensor) -> None:
        """Find both networks' capture points (and check they give 4-D feature maps)."""
        with eval_mode(self.student, self.teacher), torch.no_grad():
            self.student_cam.features(x_probe)
            self.teacher_cam.features(x_probe)

    def cache_needs(self) -> dict:
        needs = {"maps": [self.kind], "size": self.size}
        if self.teacher_cam.layer_names is not None:  # known after setup()
            needs["layers"] = list(self.teacher_cam.layer_names)
        if self.teacher_layers is None:
            needs.update(first=self.first, last=self.last)
        return needs

    # With compile_maps, the teacher's and the student's signals are their raw per-layer
    # maps (ATCam.raw_maps), and attention_term makes both maps and the loss in one
    # compiled call (_compiled_attention): one graph instead of three (the teacher's map,
    # the student's, the loss), each of which costs ~0.3 ms of guards and wrappers on the
    # CPU, and the teacher's map fused with the rest (benchmarks/RESULTS.md).
    def teacher_signals(self, x, y, idx):
        if self.cache is not None:
            return self.teacher_logits(x, idx), self.cache.maps(self.kind, idx,
                                                                device=self.device)
        with torch.no_grad(), autocast_context(self.device, self.amp):
            if self.student_cam.compile is not None:  # raw maps, a list
                t_logits, t_maps = self.teacher_cam.raw_maps(x)
            else:
                t_logits, t_maps = self.teacher_cam(x)
        return t_logits.float(), t_maps

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            if self.student_cam.compile is not None:
                logits, raw = self.student_cam.raw_maps(x)
                return logits, _RawMaps(raw, self.student_cam.map_size(x))
            return self.student_cam(x)

    def attention_term(self, s_att, t_att) -> torch.Tensor:
        mode = self.student_cam.compile
        if mode is None:
            return super().attention_term(s_att, t_att)
        return _compiled_attention(mode)(s_att, t_att, self.kind, self.attention_form)


class FMADistiller(ATCamDistiller):
    """FMA: feature map accumulation (mean over the selected layers' maps)."""

    kind = "fma"
    default_beta = 0.3


class MIPDistiller(ATCamDistiller):
    """MIP: maximum intensity projection (max over the selected layers' maps)."""

    kind = "mip"
    default_beta = 3.0


class SalsDistiller(Distiller):
    """SALS: the attention loss between saliency maps for the label class.

    The teacher's map needs gradients w.r.t. the input only (its parameters are frozen);
    the student's is built with ``create_graph=True`` so the loss reaches its parameters
    (double backprop). The student runs in train mode, so its BatchNorm couples the
    samples of a batch slightly (O(1/B)); the map is still the gradient of the summed
    label logits w.r.t. each image. Saliency maps are noisier than FMA maps, hence a
    smaller tuned weight.
    """

    kind = "sals"
    default_beta = 0.1

    def setup(self, x_probe: torch.Tensor) -> None:
        """Check that the student's saliency map can be differentiated (double backprop).

        Raises:
            ValueError: the student uses an operation without a second derivative in
                PyTorch (e.g. ``hardsigmoid``, in MobileNetV3's squeeze-excitation), with
                the fix.
        """
        params = [p for p in self.student.parameters() if p.requires_grad]
        with eval_mode(self.student):
            maps = saliency_map(self.student, x_probe, create_graph=True)
            try:  # gradients w.r.t. the parameters, returned: nothing accumulates in .grad
                torch.autograd.grad(maps.sum(), params, allow_unused=True)
            except RuntimeError as err:
                if "not implemented" not in str(err):
                    raise
                raise ValueError(
                    "SALS trains the student through the gradient of its saliency map "
                    "(double backprop), but PyTorch has no second derivative for an "
                    f"operation in the student ({str(err).splitlines()[0]}); replace it, "
                    "e.g. atkd_lite.models.twice_differentiable(student) swaps "
                    "nn.Hardsigmoid for an equal composite, or use FMA or MIP") from err

    def cache_needs(self) -> dict:
        return {"maps": ["sals"]}

    def teacher_signals(self, x, y, idx):
        if self.cache is not None:
            return self.teacher_logits(x, idx), self.cache.maps("sals", idx, device=self.device)
        with autocast_context(self.device, self.amp):
            t_logits, t_maps = saliency_map(self.teacher, x, target=y, return_logits=True)
        return t_logits.float(), t_maps

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            return saliency_map(self.student, x, target=y, create_graph=True,
                                return_logits=True)


class ATDistiller(Distiller):
    """AT baseline (Zagoruyko & Komodakis): :func:`~atkd_lite.losses.at.at_loss` on every
    capture point, layers of the two networks paired by depth (:func:`~atkd_lite.losses.at.pair_layers`).

    With ``teacher_layers`` or ``student_layers`` given, the two selections (a None side
    meaning ``first``/``last`` of its automatic capture points) are paired in order
    instead, and must have the same length.

    The teacher side is its AT maps ``q`` (B, H, W), computed online or read from a
    cache; :func:`~atkd_lite.losses.at.at_loss` takes them as they are. The default weight
    is chosen on the validation split like every other method's (100; Zagoruyko &
    Komodakis' code uses β/2 = 500 with the same mean-squared form, which is worse here).
    """

    kind = "at"
    default_beta = 100.0

    def __init__(self, student, teacher, **kw):
        super().__init__(student, teacher, **kw)
        self.by_depth = self.teacher_layers is None and self.student_layers is None
        if self.by_depth:
            self.student_cam = ATCam(student, layers="all")
            self.teacher_cam = ATCam(teacher, layers="all")
        else:
            self.student_cam = ATCam(student, **layer_selection(
                self.student_layers, self.first, self.last, "student_layers"))
            self.teacher_cam = ATCam(teacher, **layer_selection(
                self.teacher_layers, self.first, self.last, "teacher_layers"))
        self.pairs: list[tuple[int, int]] | None = None
        self._cache_index: list[int] | None = None

    def setup(self, x_probe: torch.Tensor) -> None:
        """Find both networks' capture points with one probe forward and pair them.

        Raises:
            ValueError: explicit selections of different lengths (AT needs pairs).
        """
        with eval_mode(self.student, self.teacher), torch.no_grad():
            _, fs = self.student_cam.features(x_probe)
            _, ft = self.teacher_cam.features(x_probe)
        if self.by_depth:
            self.pairs = pair_layers(len(fs), len(ft))
            self._hook_teacher_pairs()
            return
        if len(fs) != len(ft):
            raise ValueError(
                f"AT compares feature maps in pairs, in order, but the student selection has "
                f"{len(fs)} layer(s) {self.student_cam.layer_names} and the teacher's "
                f"{len(ft)} {self.teacher_cam.layer_names}; give both the same number, e.g. "
                f"student_layers=[...{len(ft)} names...], or leave both teacher_layers and "
                "student_layers None to pair every capture point by depth (FMA and MIP "
                "accept selections of different lengths)")
        self.pairs = [(i, i) for i in range(len(fs))]
        self._hook_teacher_pairs()

    def _hook_teacher_pairs(self) -> None:
        # online, only the paired teacher layers are captured, each reduced to its AT map
        # inside the forward pass (not every capture point kept alive to the end)
        names = list(dict.fromkeys(self._teacher_names()))
        self._teacher_pairs_cam = ATCam(self.teacher, layers=names, first=len(names), last=0)

    def _teacher_names(self) -> list[str]:
        return [self.teacher_cam.layer_names[j] for _, j in self.pairs]

    def cache_needs(self) -> dict:
        needs = {"at": True}
        if self.pairs is not None:  # known after setup()
            needs["at_layers"] = self._teacher_names()
        return needs

    def teacher_signals(self, x, y, idx):
        if self.cache is not None:
            if self._cache_index is None:  # by name: the cache may hold more layers
                stored = self.cache.meta["at_layers"]
                self._cache_index = [stored.index(n) for n in self._teacher_names()]
            return self.teacher_logits(x, idx), self.cache.at_maps(idx, self._cache_index,
                                                                  device=self.device)
        cam = self._teacher_pairs_cam
        with torch.no_grad(), autocast_context(self.device, self.amp):
            t_logits, q = cam.features(x, reduce=_at_map)
        by_name = dict(zip(cam.layer_names, q))
        return t_logits.float(), [by_name[name] for name in self._teacher_names()]

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            logits, feats = self.student_cam.features(x)
        return logits, [feats[i] for i, _ in self.pairs]

    def attention_term(self, s_feats, t_q):
        return at_loss(s_feats, t_q)


class _RawMaps(NamedTuple):
    """A network's raw per-layer maps (:meth:`ATCam.raw_maps`) and the size of its map."""

    maps: list
    size: tuple


def _maps_and_loss(s_raw, s_weights, teacher, t_weights, size, combine: str, form: str):
    """The attention loss from the student's raw maps and the teacher's raw maps (or its
    map, from a cache): what ``compile_maps`` compiles, as one graph."""
    s_map = traceable_maps_from_raw(s_raw, size, combine, s_weights)[0]
    if t_weights is not None:
        teacher = traceable_maps_from_raw(teacher, size, combine, t_weights)[0]
    return attention_loss(s_map, teacher, form=form)


@functools.cache
def _compiled_attention(mode: str):
    """:func:`_maps_and_loss` compiled once per ``torch.compile`` mode, called with the
    student's :class:`_RawMaps` and the teacher's raw maps (a list) or cached map."""
    compiled = compile_function(_maps_and_loss, mode)

    def loss(s_att: _RawMaps, t_att, combine: str, form: str) -> torch.Tensor:
        raw, size = s_att.maps, s_att.size
        if isinstance(t_att, torch.Tensor):  # from a cache
            teacher, t_weights = t_att, None
        else:  # online: raw maps, resized to the student's size
            teacher, t_weights = t_att, resize_weights(t_att, size)
        out = compiled(raw, resize_weights(raw, size), teacher, t_weights, size, combine, form)
        # a CUDA graph's output is overwritten by the graph's next replay
        return out.clone() if cuda_graph_mode(mode) and out.is_cuda else out

    return loss


def _at_map(features: torch.Tensor) -> torch.Tensor:
    """A feature map's AT map (B, H, W), as a teacher cache stores it."""
    return at_vector(features).view(features.shape[0], *features.shape[-2:])


def layer_selection(spec, first: int = 2, last: int = 2, what: str = "layers") -> dict:
    """:class:`~atkd_lite.atcam.ATCam` keyword arguments for one network's capture points.

    Args:
        spec: None (``first``/``last`` of the network's automatic capture points, the
            default); a list of module names (exactly those, in that order); a dict
            ``{"first": f, "last": l}`` or a pair of ints ``(f, l)`` (this network's own
            counts of its automatic capture points); or ``"all"`` (every automatic one).
        first, last (int): the counts used when ``spec`` is None.
        what (str): the argument's name, for errors.

    Returns:
        dict: ``layers``, ``first``, ``last`` for ATCam.

    Raises:
        TypeError: anything else (says what is accepted).

    Examples::

        >>> layer_selection(["layer1", "layer4"])
        {'layers': ['layer1', 'layer4'], 'first': 2, 'last': 0}
        >>> layer_selection({"first": 1, "last": 3})
        {'layers': None, 'first': 1, 'last': 3}
    """
    if spec is None:
        return {"layers": None, "first": first, "last": last}
    if isinstance(spec, str):
        return ({"layers": "all", "first": first, "last": last} if spec == "all"
                else {"layers": [spec], "first": 1, "last": 0})
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"first", "last"})
        if unknown:
            raise TypeError(f"{what} as a dict takes 'first' and 'last', not {unknown}")
        return {"layers": None, "first": spec.get("first", first),
                "last": spec.get("last", last)}
    if isinstance(spec, (list, tuple)) and spec:
        if all(isinstance(v, str) for v in spec):
            return {"layers": list(spec), "first": len(spec), "last": 0}
        if len(spec) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            return {"layers": None, "first": spec[0], "last": spec[1]}
    raise TypeError(f"{what} must be None, a list of module names (e.g. ['layer1', "
                    "'layer4']), {'first': F, 'last': L}, a pair (F, L) or 'all'; got "
                    f"{spec!r}")


#: method name -> (distiller class, uses KD)
METHODS: dict[str, tuple[type[Distiller], bool]] = {
    "student": (Distiller, False),
    "kd": (Distiller, True),
    "at": (ATDistiller, False),
    "fma": (FMADistiller, False),
    "mip": (MIPDistiller, False),
    "sals": (SalsDistiller, False),
    "at+kd": (ATDistiller, True),
    "fma+kd": (FMADistiller, True),
    "mip+kd": (MIPDistiller, True),
    "sals+kd": (SalsDistiller, True),
}


def parse_method(method) -> tuple[str, type[Distiller], bool]:
    """``(canonical name, distiller class, uses KD)`` of a method such as ``"FMA + KD"``.

    ``method`` is a name from :data:`METHODS`, or a subclass of :class:`Distiller` — your
    own method, plugged in without registering it. A subclass is named by its class
    attribute ``method_name`` (default: the class name) and uses KD when its class
    attribute ``uses_kd`` is true (default: no KD).

    Raises:
        ValueError: an unknown method, listing the valid ones.
        TypeError: a class that is not a :class:`Distiller` subclass.

    Examples::

        >>> from atkd_lite.distillers import Distiller, parse_method
        >>> parse_method("FMA + KD")[0], parse_method("FMA + KD")[2]
        ('fma+kd', True)
        >>> class Mine(Distiller):
        ...     method_name = "mine"
        >>> parse_method(Mine)
        ('mine', <class 'atkd_lite.distillers.Mine'>, False)
    """
    if isinstance(method, type):
        if not issubclass(method, Distiller):
            raise TypeError(f"a method given as a class must subclass "
                            f"atkd_lite.distillers.Distiller; {method.__name__} does not")
        return (str(getattr(method, "method_name", None) or method.__name__), method,
                bool(getattr(method, "uses_kd", False)))
    name = method.lower().replace(" ", "") if isinstance(method, str) else None
    if name not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    cls, use_kd = METHODS[name]
    return name, cls, use_kd


def make_distiller(method: str, student: nn.Module, teacher: nn.Module, *,
                   alpha: float | None = None, **kw) -> Distiller:
    """The distiller for ``method`` (see :data:`METHODS`), e.g. ``"fma+kd"``, or for a
    :class:`Distiller` subclass (see :func:`parse_method`).

    ``alpha`` is the KD weight for ``kd`` and ``+kd`` methods (None:
    :data:`DEFAULT_ALPHA`) and is forced to 0 for the others; the other keywords go to the
    distiller.
    """
    _, cls, use_kd = parse_method(method)
    alpha = (DEFAULT_ALPHA if alpha is None else alpha) if use_kd else 0.0
    return cls(student, teacher, alpha=alpha, **kw)
