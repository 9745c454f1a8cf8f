"""The base of every method: :class:`Distiller`, the loss, and the teacher side.

Every method minimises one loss (the book's chapter "Attention-guided distillation")::

    L = (1 − α)·CE(z_S, y) + α·KD(z_S, z_T; T) + β·L_att(student, teacher)

with α = 0 unless the method has ``+kd``, and no attention term for ``student`` and
``kd``. As in mdistiller, a distiller's :meth:`Distiller.forward_train` returns the
student's logits and its loss terms by name; the training loop only sums and logs them.
A method is one file in :mod:`atkd_lite.methods` that subclasses :class:`Distiller` and
declares:

- ``signal`` — the teacher :mod:`signal <atkd_lite.signals>` its attention term matches
  (None: no attention term), hence what it needs from a
  :class:`~atkd_lite.cache.TeacherCache` (:meth:`Distiller.cache_needs`);
- ``default_beta`` — its tuned attention weight, used when ``beta`` is not given;
- :meth:`Distiller.teacher_online` and :meth:`Distiller.student_forward` — the two
  networks' signals (reading the cache instead of running the teacher is decided in one
  place, :meth:`Distiller.teacher_signals`);
- optionally :meth:`Distiller.setup` (what it must learn about the networks before
  training, e.g. AT's layer pairs, or learnable parameters of its own, which are
  trained with the student: :meth:`Distiller.trainable_parameters`) and
  :meth:`Distiller.prepare_data` (inputs that belong to the training data, e.g. RRR's
  masks).

:func:`layer_selection` reads one network's capture points (``teacher_layers``,
``student_layers``): a ResNet teacher and a MobileNet student have different depths
and different natural places to listen.

``train()`` keeps the teacher in eval mode whatever it is called with, so the loop needs
no freeze/restore code.

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

import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.data import UNLABELLED
from atkd_lite.device import autocast_context
from atkd_lite.losses.attention import attention_loss
from atkd_lite.losses.kd import kd_loss
from atkd_lite.outputs import model_logits
from atkd_lite.signals import Logits, Signal

__all__ = ["DEFAULT_ALPHA", "Distiller", "check_map_sizes", "layer_selection"]


#: the KD weight α of ``kd`` and ``+kd`` methods, chosen on the validation split like every
#: method's weight (``atkd-lite tune``, committed as the results ``mnist5k-tuning``)
DEFAULT_ALPHA = 0.7


class Distiller(nn.Module):
    """Cross-entropy, plus Hinton's KD when ``alpha > 0``; no attention term.

    Subclasses set ``signal`` (the teacher :class:`~atkd_lite.signals.Signal` their
    attention term matches; None here) and ``default_beta`` (its tuned weight), and
    override :meth:`teacher_online` and :meth:`student_forward` (and
    :meth:`attention_term` when the distance is not
    :func:`~atkd_lite.losses.attention_loss`). Register one with
    :func:`~atkd_lite.methods.registry.register` to call it by name (with its ``+kd`` variant).

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

    #: the teacher signal matched by the attention term, or None without a term
    signal: Signal | None = None
    #: the attention weight β tuned for it (``atkd-lite tune``)
    default_beta: float = 0.0
    #: the method's name in the registry, or None for the class name
    method_name: str | None = None
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

    @property
    def kind(self) -> str | None:
        """The key of the teacher signal that the attention term matches, or None."""
        return None if self.signal is None else self.signal.key

    def prepare_data(self, train_data) -> None:
        """Take what the method needs from the training data (nothing here)."""

    def setup(self, x_probe: torch.Tensor) -> None:
        """Prepare for training with a probe batch (nothing to do here). A method with
        learnable parameters of its own creates them here (on ``x_probe``'s device)."""

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimiser trains: the student's parameters, then the method's own
        (any parameter of the distiller outside the student and the teacher)."""
        yield from self.student.parameters()
        networks = {id(p) for net in (self.student, self.teacher) for p in net.parameters()}
        for p in self.parameters():
            if id(p) not in networks:
                yield p

    def cache_needs(self) -> dict:
        """What a teacher cache must hold for this distiller (see ``TeacherCache.check``)."""
        return {} if self.signal is None else {"maps": [self.signal.key]}

    # -- teacher side -------------------------------------------------------------------
    def teacher_logits(self, x: torch.Tensor, idx) -> torch.Tensor | None:
        """The teacher's logits when KD is on (from the cache if there is one), else None."""
        if self.alpha == 0:
            return None
        if self.cache is not None:
            return self.cache.read(Logits(), idx, device=self.device)
        with torch.no_grad(), autocast_context(self.device, self.amp):
            return model_logits(self.teacher(x), "the teacher").float()

    def teacher_signals(self, x, y, idx) -> tuple[torch.Tensor | None, object]:
        """The teacher's logits (None when KD is off) and its signal: the one place that
        decides between reading the cache and running the teacher
        (:meth:`~atkd_lite.methods.base.Distiller.teacher_online`)."""
        if self.cache is None:
            return self.teacher_online(x, y)
        signal = None if self.signal is None else self.cache.read(self.signal, idx,
                                                                  device=self.device)
        return self.teacher_logits(x, idx), signal

    def teacher_online(self, x, y) -> tuple[torch.Tensor | None, object]:
        """The teacher's logits (None when KD is off) and its signal (None here),
        computed by running the teacher."""
        return self.teacher_logits(x, None), None

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


def check_map_sizes(who: str, names: Sequence[str], features: Sequence[torch.Tensor],
                    what: str) -> None:
    """Capture points whose feature maps are 1×1 for these images: a 1×1 map is constant,
    and a constant map normalises to zeros (or, for AT, to one value), so it carries no
    "where". A warning names them; an error when every selected one is.

    Args:
        who (str): ``"teacher"`` or ``"student"``.
        names, features: the selected capture points and their feature maps for a probe.
        what (str): what the maps make (e.g. ``"FMA map"``), for the message.

    Raises:
        ValueError: every selected capture point is 1×1.
    """
    flat = [n for n, a in zip(names, features) if a.shape[-2] * a.shape[-1] == 1]
    if not flat:
        return
    fix = (f"choose capture points with a spatial extent at this image size, e.g. "
           f"{who}_layers=['layer1', 'layer2'] for a torchvision ResNet (the book's chapter "
           "'Your own model and data' shows how to list them)")
    if len(flat) == len(names):
        raise ValueError(f"every selected capture point of the {who} ({flat}) gives a 1×1 "
                         f"feature map for these images, so its {what} is constant (all "
                         f"zeros) and the attention term can teach nothing; {fix}")
    warnings.warn(f"the {who}'s capture point(s) {flat} give 1×1 feature maps for these "
                  f"images: such a map is constant and adds nothing to the {what}; {fix}",
                  stacklevel=4)
