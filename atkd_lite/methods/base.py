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

from atkd_lite.capture import layer_selection
from atkd_lite.data import UNLABELLED
from atkd_lite.device import autocast_context
from atkd_lite.losses.attention import attention_loss
from atkd_lite.losses.kd import kd_loss
from atkd_lite.outputs import model_logits
from atkd_lite.settings import DistillConfig
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
        config (DistillConfig, optional): the run's settings, one object
            (:class:`~atkd_lite.settings.DistillConfig`; default: its defaults); the
            distiller keeps it whole (:attr:`config`) and each method reads the fields it
            uses: ``alpha`` (KD's weight, CE gets ``1 − alpha``; None or 0 = no KD),
            ``beta`` (the attention term's weight; None = ``default_beta``), ``T``,
            ``attention_form``, ``label_smoothing``, ``amp``, and for the methods with
            maps ``first``/``last``, ``teacher_layers``/``student_layers`` (see
            :func:`~atkd_lite.capture.layer_selection`), ``size`` and ``compile_maps``
            (FMA and MIP only: compile both networks' map computation and the attention
            loss as one graph; a method without ATCam maps ignores it in a config and
            refuses it as a keyword).
        cache (TeacherCache, optional): teacher logits and maps by dataset index.
        **settings: fields of the config to change, e.g. ``alpha=0.5, beta=0.3`` (the
            keywords of earlier versions, which all are fields).
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

    def __init__(self, student: nn.Module, teacher: nn.Module,
                 config: DistillConfig | None = None, *, cache=None, **settings):
        super().__init__()
        if config is not None and not isinstance(config, DistillConfig):
            raise TypeError(f"config must be a DistillConfig, got {type(config).__name__}")
        if settings.get("compile_maps") and not self.uses_atcam_maps:
            raise ValueError(f"compile_maps compiles ATCam's map computation, which only FMA "
                             f"and MIP use; {type(self).__name__} has none: leave it False")
        #: the run's settings, whole (:class:`~atkd_lite.settings.DistillConfig`)
        self.config = (config or DistillConfig()).replace(**settings)
        cfg = self.config
        self.student, self.teacher = student, teacher
        self.alpha, self.T = float(cfg.alpha or 0.0), float(cfg.T)
        self.beta = float(self.default_beta if cfg.beta is None else cfg.beta)
        self.attention_form = cfg.attention_form
        self.label_smoothing = float(cfg.label_smoothing)
        self.cache, self.amp = cache, cfg.amp

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
