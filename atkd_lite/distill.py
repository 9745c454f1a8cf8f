"""The distillation engine: train a student from a frozen teacher, methods by name.

Every method minimises one loss (DESIGN.md, "The mathematics")::

    L = (1 − α)·CE(z_S, y) + α·KD(z_S, z_T; T) + β·L_att(student, teacher)

with α = 0 when the method has no ``+kd`` and β·L_att = 0 for ``student`` and ``kd``.

============  ================================================================
method        attention term L_att
============  ================================================================
``student``   none (cross-entropy only: the baseline)
``kd``        none, α > 0 (Hinton's soft targets)
``at``        AT (Zagoruyko & Komodakis), weight ``beta_at`` on capture points
``fma``       attention loss between ATCam FMA maps of student and teacher
``mip``       attention loss between ATCam MIP maps
``sals``      attention loss between saliency maps (student: double backprop)
``…+kd``      any of the last four plus the KD term (``fma+kd``, …)
============  ================================================================

As in mdistiller, each method is one small *distiller* class whose
:meth:`Distiller.forward_train` returns the student's logits and its loss terms by
name; the loop in :func:`distill` is shared. The teacher stays in eval mode with
``requires_grad`` off for the whole run (restored afterwards) and is never updated; its
maps are computed under ``no_grad`` (FMA/MIP/AT) or from input gradients only (SALS), or
looked up in a :class:`~atkd_lite.cache.TeacherCache`.

Defined in the book's chapter "Attention-guided distillation".
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.atcam import ATCam
from atkd_lite.cache import TeacherCache
from atkd_lite.data import ImageSet, make_batches
from atkd_lite.losses.at import at_loss, at_vector, pair_layers
from atkd_lite.losses.attention import FORMS, attention_loss
from atkd_lite.losses.kd import kd_loss
from atkd_lite.models import count_parameters
from atkd_lite.saliency import saliency_map
from atkd_lite.train import (
    History,
    autocast_context,
    evaluate,
    get_device,
    make_optimizer,
    seed_everything,
)

__all__ = [
    "DEFAULTS",
    "METHODS",
    "DistillResult",
    "Distiller",
    "distill",
    "make_distiller",
]

# Defaults chosen on the embedded data's fit/val split (never the test split) in the
# low-data setting (100 digits a class, 30 epochs) by benchmarks/tune_defaults.py; its
# output is in benchmarks/RESULTS.md, section "Defaults" (first/last and the form keep
# DESIGN.md's values: no alternative beat them by more than the script's 0.5-point
# margin). β is per map kind because the
# maps differ in sharpness (saliency maps are noisy, FMA maps smooth). AT's weight is not
# tuned: it is the β/2 = 500 of Zagoruyko & Komodakis' code (β = 1e3 with the
# mean-squared "code" form of at_loss).
DEFAULTS = {
    "epochs": 30,
    "lr": 3e-2,
    "batch_size": 128,
    "alpha": 0.5,
    "beta": {"fma": 1.0, "mip": 1.0, "sals": 0.1},
    "T": 8.0,
    "first": 2,
    "last": 2,
    "attention_form": "l2",
    "beta_at": 500.0,
}

#: method name -> (attention kind or None, uses KD)
METHODS: dict[str, tuple[str | None, bool]] = {
    "student": (None, False),
    "kd": (None, True),
    "at": ("at", False),
    "fma": ("fma", False),
    "mip": ("mip", False),
    "sals": ("sals", False),
    "at+kd": ("at", True),
    "fma+kd": ("fma", True),
    "mip+kd": ("mip", True),
    "sals+kd": ("sals", True),
}


# ---------------------------------------------------------------------------------------
# distillers: one small class per attention kind

class Distiller:
    """Base distiller: cross-entropy, plus KD when ``alpha > 0``; no attention term.

    Subclasses override ``teacher_signals`` and ``student_forward`` (and
    ``attention_term`` if the distance is not :func:`~atkd_lite.losses.attention_loss`).

    Args:
        student, teacher (nn.Module): the networks (teacher frozen by :func:`distill`).
        alpha (float): weight of KD; CE gets ``1 − alpha``. 0 = no KD.
        beta (float): weight of the attention term.
        T (float): KD temperature.
        cache (TeacherCache, optional): teacher outputs by dataset index.
        amp (bool, optional): autocast on CUDA.
        attention_form (str): form of :func:`~atkd_lite.losses.attention_loss`.
    """

    kind: str | None = None

    def __init__(self, student: nn.Module, teacher: nn.Module, *, alpha: float, beta: float,
                 T: float, cache: TeacherCache | None, device: torch.device,
                 amp: bool | None, attention_form: str = "l2", **settings):
        self.student, self.teacher = student, teacher
        self.alpha, self.beta, self.T = alpha, beta, T
        self.cache, self.device, self.amp = cache, device, amp
        self.attention_form = attention_form
        self.settings = settings

    # -- teacher side -------------------------------------------------------------------
    def teacher_logits(self, x, idx):
        if self.cache is not None:
            return self.cache.logits(idx, device=self.device)
        with torch.no_grad(), autocast_context(self.device, self.amp):
            return self.teacher(x).float()

    def teacher_signals(self, x, y, idx) -> tuple[torch.Tensor | None, object]:
        """The teacher's logits (None when KD is off) and attention (None here)."""
        return (self.teacher_logits(x, idx) if self.alpha > 0 else None), None

    # -- student side -------------------------------------------------------------------
    def student_forward(self, x, y) -> tuple[torch.Tensor, object]:
        with autocast_context(self.device, self.amp):
            return self.student(x), None

    def attention_term(self, s_att, t_att) -> torch.Tensor:
        return attention_loss(s_att, t_att, form=self.attention_form)

    def forward_train(self, x, y, idx) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training forward: ``(student logits, {"loss": total, "loss_ce": …, …})``.

        The terms are unweighted; ``"loss"`` is their weighted sum, the one to minimise.
        """
        t_logits, t_att = self.teacher_signals(x, y, idx)
        logits, s_att = self.student_forward(x, y)
        ce = F.cross_entropy(logits.float(), y)
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
    """FMA or MIP: the attention loss between the student's and the teacher's ATCam maps."""

    def __init__(self, student, teacher, *, kind: str, first: int, last: int, size, **kw):
        super().__init__(student, teacher, **kw)
        self.kind = kind
        self.student_cam = ATCam(student, first=first, last=last, combine=kind, size=size)
        self.teacher_cam = ATCam(teacher, first=first, last=last, combine=kind, size=size)

    def teacher_signals(self, x, y, idx):
        if self.cache is not None:
            t_logits = self.cache.logits(idx, device=self.device) if self.alpha > 0 else None
            return t_logits, self.cache.maps(self.kind, idx, device=self.device)
        with torch.no_grad(), autocast_context(self.device, self.amp):
            t_logits, t_maps = self.teacher_cam(x)
        return t_logits.float(), t_maps

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            return self.student_cam(x)


class SalsDistiller(Distiller):
    """SALS: the attention loss between saliency maps for the label class.

    The teacher's map needs gradients w.r.t. the input only (its parameters have
    ``requires_grad`` off); the student's is built with ``create_graph=True`` so the
    loss reaches its parameters (double backprop). The student runs in train mode, so its
    BatchNorm couples the samples of a batch slightly (O(1/B)); the map is still the
    gradient of the summed label logits w.r.t. each image.
    """

    kind = "sals"

    def teacher_signals(self, x, y, idx):
        if self.cache is not None:
            t_logits = self.cache.logits(idx, device=self.device) if self.alpha > 0 else None
            return t_logits, self.cache.maps("sals", idx, device=self.device)
        with autocast_context(self.device, self.amp):
            t_logits, t_maps = saliency_map(self.teacher, x, target=y, return_logits=True)
        return t_logits.float(), t_maps

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            return saliency_map(self.student, x, target=y, create_graph=True,
                                return_logits=True)


class ATDistiller(Distiller):
    """AT baseline: :func:`at_loss` on every capture point, layers paired by depth.

    The teacher side is its AT vectors ``q`` (B, H, W); they enter :func:`at_loss` as
    ``sqrt(q)`` with one channel, whose AT vector is ``q`` again, so cached and online
    teacher vectors go through the same code.
    """

    kind = "at"

    def __init__(self, student, teacher, **kw):
        super().__init__(student, teacher, **kw)
        self.beta = self.settings.get("beta_at", DEFAULTS["beta_at"])
        self.student_cam = ATCam(student, first=10**6, last=0)
        self.teacher_cam = ATCam(teacher, first=10**6, last=0)
        self.pairs: list[tuple[int, int]] | None = None

    def setup(self, x_probe: torch.Tensor) -> None:
        """Find both networks' capture points with one probe forward and pair them."""
        was_training = self.student.training
        self.student.eval()  # a probe must not move BatchNorm's running statistics
        try:
            with torch.no_grad():
                _, fs = self.student_cam.features(x_probe)
                _, ft = self.teacher_cam.features(x_probe)
        finally:
            self.student.train(was_training)
        self.pairs = pair_layers(len(fs), len(ft))

    def teacher_signals(self, x, y, idx):
        layers = [j for _, j in self.pairs]
        if self.cache is not None:
            t_logits = self.cache.logits(idx, device=self.device) if self.alpha > 0 else None
            return t_logits, self.cache.at_maps(idx, layers, device=self.device)
        with torch.no_grad(), autocast_context(self.device, self.amp):
            t_logits, feats = self.teacher_cam.features(x)
            q = [at_vector(feats[j]).view(x.shape[0], *feats[j].shape[-2:]) for j in layers]
        return t_logits.float(), q

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            logits, feats = self.student_cam.features(x)
        return logits, [feats[i] for i, _ in self.pairs]

    def attention_term(self, s_feats, t_q):
        return at_loss(s_feats, [q.clamp_min(0).sqrt().unsqueeze(1) for q in t_q])


def make_distiller(method: str, student: nn.Module, teacher: nn.Module, **kw) -> Distiller:
    """The distiller for ``method`` (see :data:`METHODS`), e.g. ``"fma+kd"``."""
    kind, use_kd = METHODS[method]
    if not use_kd:
        kw["alpha"] = 0.0
    first, last, size = kw.pop("first"), kw.pop("last"), kw.pop("size")
    if kind in ("fma", "mip"):
        return ATCamDistiller(student, teacher, kind=kind, first=first, last=last, size=size, **kw)
    if kind == "sals":
        return SalsDistiller(student, teacher, **kw)
    if kind == "at":
        return ATDistiller(student, teacher, **kw)
    return Distiller(student, teacher, **kw)


# ---------------------------------------------------------------------------------------
# the loop

@dataclass
class DistillResult:
    """What :func:`distill` returns.

    Attributes:
        method (str): the method name.
        history (History): per epoch: ``epoch``, ``loss`` (weighted total), the unweighted
            terms ``loss_ce`` / ``loss_kd`` / ``loss_att`` that the method uses,
            ``train_acc``, ``test_acc`` (if test data), ``time_s`` (training wall time).
        test_acc (float or None): final test accuracy (0–1).
        params (dict): the settings used (α, β, T, first, last, lr, …).
        student (nn.Module): the trained student (eval mode).
        student_parameters (int): its parameter count.
    """

    method: str
    history: History
    test_acc: float | None
    params: dict
    student: nn.Module = field(repr=False)
    student_parameters: int = 0

    @property
    def time_per_epoch(self) -> float:
        """Median training wall time per epoch, seconds."""
        times = sorted(self.history["time_s"])
        return times[len(times) // 2] if times else float("nan")

    def summary(self) -> dict:
        """One flat row: method, final test accuracy, parameters, time per epoch, settings."""
        return {"method": self.method, "test_acc": self.test_acc,
                "parameters": self.student_parameters, "time_per_epoch_s": self.time_per_epoch,
                **{k: v for k, v in self.params.items() if not isinstance(v, (list, dict))}}


def _check_number(name, value, lo=None, hi=None, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


def _sample(data, n=2) -> torch.Tensor:
    if isinstance(data, ImageSet):
        return data.images[:n].float() / 255.0
    return torch.stack([data[i][0] for i in range(min(n, len(data)))])


def _probe(model: nn.Module, x: torch.Tensor, who: str) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"the {who} cannot take the training images shaped "
                         f"{tuple(x.shape[1:])}: {str(err).splitlines()[0]}") from err
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(f"the {who} must return logits shaped (B, K)")
    return out


def distill(teacher: nn.Module, student: nn.Module, train_data, test_data=None,
            method: str = "fma", *, epochs: int = DEFAULTS["epochs"],
            lr: float = DEFAULTS["lr"], weight_decay: float = 5e-4,
            batch_size: int = DEFAULTS["batch_size"], alpha: float | None = None,
            beta: float | None = None, T: float = DEFAULTS["T"],
            first: int = DEFAULTS["first"], last: int = DEFAULTS["last"],
            size: Sequence[int] | None = None,
            attention_form: str = DEFAULTS["attention_form"],
            beta_at: float = DEFAULTS["beta_at"], cache: TeacherCache | None = None,
            augment: int = 0, device=None, seed: int = 0, progress: bool = True,
            amp: bool | None = None, channels_last: bool | None = None) -> DistillResult:
    """Train ``student`` with ``method``, guided by a frozen ``teacher``.

    Loss: ``L = (1 − α)·CE + α·KD + β·L_att`` (α = 0 without ``+kd``). AdamW with a
    one-cycle learning rate, batches by index on the device, loss sums kept on the device
    (no host sync inside an epoch). Same seed, same history on the CPU.

    Args:
        teacher (nn.Module): the trained teacher; kept in eval mode with gradients off
            during the run (both restored after), never updated; moved to ``device``.
        student (nn.Module): trained in place (moved to ``device``; eval mode at the end).
        train_data (ImageSet): training images (any map-style dataset of ``(image,
            label)`` works without a cache).
        test_data (ImageSet, optional): evaluated after every epoch.
        method (str): one of :data:`METHODS`: ``student``, ``kd``, ``at``, ``fma``,
            ``mip``, ``sals``, ``at+kd``, ``fma+kd``, ``mip+kd``, ``sals+kd``.
        epochs, lr, weight_decay, batch_size: the optimiser's schedule.
        alpha (float, optional): KD weight in [0, 1]; None = ``DEFAULTS["alpha"]`` for
            ``+kd`` methods and ``kd`` (ignored, i.e. 0, for the others).
        beta (float, optional): weight of the attention term (FMA, MIP, SALS); None =
            ``DEFAULTS["beta"][kind]``, tuned per map kind.
        T (float): KD temperature.
        first, last (int): ATCam's layer selection (both networks).
        size (two ints, optional): map size; None = the input's H×W.
        attention_form (str): ``"l2"`` (default) or ``"bce"``, see
            :func:`~atkd_lite.losses.attention_loss`.
        beta_at (float): weight of the AT baseline's loss.
        cache (TeacherCache, optional): teacher logits/maps by dataset index, built for
            exactly ``train_data`` (checked); then the teacher is not run at all.
        augment (int): maximum random shift in pixels (0: none). Not with a cache.
        device: ``None``/``"auto"`` = cuda → mps → cpu.
        seed (int): batches and any randomness in the loop (build the student after
            :func:`~atkd_lite.train.seed_everything` to seed its initialisation too).
        progress (bool): a tqdm progress bar over epochs.
        amp, channels_last: None = on for CUDA, off elsewhere. Maps and losses are
            always computed in float32.

    Returns:
        DistillResult: ``.history``, ``.test_acc``, ``.method``, ``.params``, ``.student``.

    Raises:
        ValueError: unknown method (the valid ones are listed), teacher and student with
            different numbers of classes, images the networks cannot take, a cache built
            for other data or settings, a cache with augmentation, an empty dataset.

    Examples::

        >>> import atkd_lite as ak
        >>> train = ak.load_dataset("mnist5k", "train").per_class(10)
        >>> test = ak.load_dataset("mnist5k", "test").per_class(10)
        >>> teacher = ak.teacher_cnn().eval()
        >>> student = ak.student_cnn("tiny")
        >>> result = ak.distill(teacher, student, train, test, method="fma+kd", epochs=1,
        ...                     progress=False, device="cpu")
        >>> sorted(k for k in result.history.keys() if k.startswith("loss"))
        ['loss', 'loss_att', 'loss_ce', 'loss_kd']
    """
    # ---- validate ---------------------------------------------------------------------
    if not isinstance(method, str) or method.lower().replace(" ", "") not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    method = method.lower().replace(" ", "")
    kind, use_kd = METHODS[method]
    for who, m in (("teacher", teacher), ("student", student)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{who} must be a torch.nn.Module, got {type(m).__name__}")
    if teacher is student:
        raise ValueError("teacher and student are the same module; pass a separate student")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if alpha is None:
        alpha = DEFAULTS["alpha"] if use_kd else 0.0
    _check_number("alpha", alpha, 0.0, 1.0)
    if beta is None:
        beta = DEFAULTS["beta"].get(kind, 0.0)
    _check_number("beta", beta, lo=0.0)
    _check_number("beta_at", beta_at, lo=0.0)
    _check_number("T", T, positive=True)
    _check_number("lr", lr, positive=True)
    if attention_form not in FORMS:
        raise ValueError(f"unknown attention_form {attention_form!r}; use one of {list(FORMS)}")
    if not use_kd:
        alpha = 0.0
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if data is not None and len(data) == 0:
            raise ValueError(f"{name} is empty; pass a dataset with at least one image")
    if train_data is None:
        raise ValueError("train_data is required")
    if cache is not None:
        if not isinstance(cache, TeacherCache):
            raise TypeError(f"cache must be a TeacherCache, got {type(cache).__name__}")
        if augment:
            raise ValueError("a teacher cache cannot be used with augmentation: the cached "
                             "maps and logits belong to the unshifted images and would not "
                             "match the shifted ones; pass augment=0 or cache=None")
        if not isinstance(train_data, ImageSet):
            raise TypeError("a teacher cache needs train_data as an ImageSet (looked up by index)")
        needs = [kind] if kind in ("fma", "mip", "sals") else []
        cache.check(train_data, maps=needs, at=kind == "at",
                    first=first if kind in ("fma", "mip") else None,
                    last=last if kind in ("fma", "mip") else None,
                    size=size if size is not None else
                    (train_data.image_size if needs else None), teacher=teacher)
    dev = get_device(device)
    if channels_last is None:
        channels_last = dev.type == "cuda"
    teacher.to(dev)
    student.to(dev, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    x_probe = _sample(train_data).to(dev)
    if test_data is not None:
        x_test = _sample(test_data)
        if tuple(x_test.shape[1:]) != tuple(x_probe.shape[1:]):
            raise ValueError(f"train images are {tuple(x_probe.shape[1:])} but test images "
                             f"are {tuple(x_test.shape[1:])}; use data of one size")
    k_t = _probe(teacher, x_probe, "teacher").shape[1]
    k_s = _probe(student, x_probe, "student").shape[1]
    if k_t != k_s:
        raise ValueError(f"the teacher has {k_t} classes but the student has {k_s}; build the "
                         f"student with num_classes={k_t}")
    if cache is not None and cache.meta["num_classes"] != k_s:
        raise ValueError(f"the cache holds {cache.meta['num_classes']} teacher logits per "
                         f"image but the student has {k_s} classes")
    num_classes = getattr(train_data, "num_classes", None)
    if num_classes is not None and num_classes != k_s:
        raise ValueError(f"the networks have {k_s} outputs but the data has {num_classes} "
                         "classes")

    params = {"method": method, "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
              "batch_size": batch_size, "alpha": alpha, "beta": beta if kind in
              ("fma", "mip", "sals") else (beta_at if kind == "at" else 0.0), "T": T,
              "first": first, "last": last, "attention_form": attention_form,
              "augment": augment, "seed": seed, "cached": cache is not None,
              "device": str(dev)}

    # ---- freeze the teacher -----------------------------------------------------------
    teacher_mode = teacher.training
    teacher_grad = [p.requires_grad for p in teacher.parameters()]
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    try:
        seed_everything(seed)
        distiller = make_distiller(method, student, teacher, alpha=alpha, beta=beta, T=T,
                                   cache=cache, device=dev, amp=amp,
                                   attention_form=attention_form, first=first, last=last,
                                   size=size, beta_at=beta_at)
        if isinstance(distiller, ATDistiller):
            distiller.setup(x_probe)
        batches = make_batches(train_data, batch_size, shuffle=True, device=dev, seed=seed,
                               augment=augment)
        opt, sched = make_optimizer(student, lr, weight_decay, epochs * len(batches),
                                    schedule="onecycle")
        use_scaler = dev.type == "cuda" and amp is not False and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        history = History()
        bar = range(1, epochs + 1)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(bar, desc=f"distill {method}", unit="epoch")
        for epoch in bar:
            student.train()
            t0 = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            correct = torch.zeros((), device=dev, dtype=torch.long)
            seen = 0
            for x, y, idx in batches:
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits, terms = distiller.forward_train(x, y, idx)
                opt.zero_grad(set_to_none=True)
                scaler.scale(terms["loss"]).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                # accumulate on the device: no host sync until the epoch ends
                for name, value in terms.items():
                    v = value.detach() * y.shape[0]
                    sums[name] = v if name not in sums else sums[name] + v
                correct += (logits.detach().argmax(1) == y).sum()
                seen += y.shape[0]
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            record = {"epoch": epoch, **{k: v.item() / seen for k, v in sums.items()},
                      "train_acc": correct.item() / seen,
                      "time_s": time.perf_counter() - t0}
            if test_data is not None:
                record["test_acc"] = evaluate(student, test_data, device=dev)
            history.append(**record)
            if progress:
                bar.set_postfix({k: round(v, 4) for k, v in record.items()
                                 if k in ("loss", "test_acc")})
    finally:
        for p, flag in zip(teacher.parameters(), teacher_grad):
            p.requires_grad_(flag)
        teacher.train(teacher_mode)
    student.eval()
    return DistillResult(method=method, history=history,
                         test_acc=history.last.get("test_acc"), params=params,
                         student=student, student_parameters=count_parameters(student))
