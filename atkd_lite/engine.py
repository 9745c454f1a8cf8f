"""The training engine: :func:`train_model` and :func:`distill`, on one loop.

The loop, its optimiser, history and evaluation live in :mod:`atkd_lite.loop` (re-exported
here), the settings of a distillation in :mod:`atkd_lite.settings`:

- :func:`~atkd_lite.loop.fit` runs epochs of a *step*
  ``step(x, y, idx) -> (logits, {"loss": …, …})``: AdamW with a learning-rate schedule,
  autocast on CUDA (bf16 where native, else fp16 with a gradient scaler:
  :func:`~atkd_lite.loop.needs_grad_scaler`), loss sums kept on the device (no host sync
  inside an epoch), a progress bar, one :class:`~atkd_lite.loop.History` record per epoch,
  and a clear error when a loss term stops being finite;
- :func:`train_model` trains any classifier with cross-entropy (the teacher);
- :func:`distill` trains a student from a frozen teacher with a method by name
  (:data:`~atkd_lite.methods.registry.METHODS`) and a
  :class:`~atkd_lite.settings.DistillConfig`, which it validates once and hands whole to
  the method;
- :func:`~atkd_lite.loop.evaluate` / :func:`~atkd_lite.loop.predict` run a model over a
  dataset.

Started by ``torchrun`` (:mod:`atkd_lite.distributed`), :func:`train_model` and
:func:`distill` train data-parallel: :func:`~atkd_lite.loop.fit` wraps the trainable
network in :class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged over
the processes; the frozen teacher is left out), every process takes a strided share of each
global batch (``batch_size`` is per process, so the global batch is ``batch_size ×
world size``), the epoch's figures are all-reduced, and the test set is evaluated in
shares and reduced, so every process records the same history.

Defined in the book's chapters "Teacher and student" (``train_model``) and
"Attention-guided distillation" (``distill``).

Examples::

    >>> import atkd_lite as ak
    >>> train = ak.load_dataset("mnist5k", "train").per_class(20)
    >>> model = ak.student_cnn("tiny")
    >>> hist = ak.train_model(model, train, epochs=1, progress=False, device="cpu")
    >>> len(hist["loss"])
    1
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite import distributed
from atkd_lite.atcam import ATCam
from atkd_lite.checks import check_int, check_number
from atkd_lite.cost import count_parameters
from atkd_lite.data import UNLABELLED, ImageSet, make_batches
from atkd_lite.datasets import as_dataset, sample_images
from atkd_lite.device import (
    autocast_context,
    eval_mode,
    frozen,
    seed_everything,
)
from atkd_lite.files import tensor_digest
from atkd_lite.loop import (
    History,
    check_compatible,
    evaluate,
    fit,
    make_optimizer,
    needs_grad_scaler,
    predict,
)
from atkd_lite.methods import DEFAULT_ALPHA, Distiller, layer_selection, parse_method
from atkd_lite.outputs import model_logits, unwrap_model
from atkd_lite.settings import DistillConfig

__all__ = [
    "DistillConfig",
    "DistillResult",
    "History",
    "distill",
    "evaluate",
    "fit",
    "make_optimizer",
    "needs_grad_scaler",
    "predict",
    "train_model",
]


def _data_signature(data) -> dict:
    """What identifies a dataset across processes: its size and, for an ImageSet, a
    digest of its pixels and labels."""
    sig = {"length": len(data), "type": type(data).__name__}
    if isinstance(data, ImageSet):
        sig["digest"] = tensor_digest({"images": data.images, "labels": data.labels})
    return sig


def _model_signature(model: nn.Module) -> list:
    return [(name, list(p.shape), str(p.dtype)) for name, p in model.named_parameters()]


def _channels_last(device: torch.device, flag: bool | None) -> bool:
    return device.type == "cuda" if flag is None else bool(flag)


def train_model(model: nn.Module, train_data, test_data=None, epochs: int = 10,
                lr: float = 3e-3, weight_decay: float = 5e-4, batch_size: int = 128,
                augment: int = 0, device=None, seed: int = 0, progress: bool = True,
                amp: bool | None = None, channels_last: bool | None = None,
                label_smoothing: float = 0.0, compile: bool = False,
                scale_lr: bool = False, flip: bool = False) -> History:
    """Train a classifier with cross-entropy; returns a :class:`~atkd_lite.loop.History`.

    Under ``torchrun`` it trains data-parallel (see :func:`~atkd_lite.loop.fit`):
    ``batch_size`` images per process, every process the same history; rank 0's model is
    the one to save.

    Args:
        model: the network (trained in place, moved to ``device``).
        train_data / test_data: :class:`~atkd_lite.data.ImageSet` (or any map-style
            dataset of ``(image, label)``, or a DataLoader over one); ``test_data`` is
            evaluated after every epoch if given.
        epochs, lr, weight_decay, batch_size: AdamW with linear warm-up (a quarter of the
            steps) and cosine decay. The default ``lr`` (3e-3) is the one the book's
            teachers train with; its small students train best at 3e-2, the default of
            :class:`~atkd_lite.settings.DistillConfig` (``distill``): pass ``lr=3e-2`` to
            train such a student alone (chapter 9 does), or tune it for your own model.
        augment: maximum random shift in pixels (0: none), applied on the device;
            ``augment=4, flip=True`` is the standard CIFAR augmentation.
        flip: random horizontal flips, on the device.
        device: ``None``/``"auto"`` picks cuda → mps → cpu.
        seed: same seed, same result on the CPU (at the same number of threads).
        progress: show a ``tqdm`` progress bar.
        amp / channels_last: ``None`` means on for CUDA, off elsewhere.
        label_smoothing: cross-entropy's label smoothing (0: none).
        compile: run the training forward through :func:`torch.compile` (opt-in; the
            model itself is left uncompiled, so hooks and checkpoints work as usual).
        scale_lr: multiply ``lr`` by the number of processes (the linear scaling rule
            for a global batch that grows with them); off by default.

    The history records, per epoch: ``epoch``, ``loss`` (cross-entropy), ``train_acc``,
    ``test_acc`` (if test data), ``time_s`` (wall time of the training part).
    """
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("augment", augment, minimum=0)
    check_number("lr", lr, positive=True)
    check_number("label_smoothing", label_smoothing, 0.0, 1.0)
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be True or False, got {flip!r}")
    dev = distributed.setup(device)  # under torchrun: join the job, this rank's device
    if not isinstance(train_data, ImageSet):
        train_data = as_dataset(train_data, "train_data")
    if test_data is not None and not isinstance(test_data, ImageSet):
        test_data = as_dataset(test_data, "test_data")
    check_compatible(model, train_data)
    if test_data is not None:
        check_compatible(model, test_data)
    world = distributed.world_size()
    if world > 1:
        distributed.check_same_settings(
            {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
             "augment": augment, "seed": seed, "amp": amp, "label_smoothing": label_smoothing,
             "scale_lr": scale_lr, "flip": flip, "model": _model_signature(model),
             "train": _data_signature(train_data),
             "test": None if test_data is None else len(test_data)}, "training settings")
    seed_everything(seed)
    cl = _channels_last(dev, channels_last)
    model.to(dev, memory_format=torch.channels_last if cl else torch.preserve_format)
    batches = make_batches(train_data, batch_size, shuffle=True, device=dev, seed=seed,
                           augment=augment, rank=distributed.rank(), world_size=world,
                           flip=flip)
    opt, sched = make_optimizer(model, lr * world if scale_lr else lr, weight_decay,
                                epochs * len(batches))
    forward = torch.compile(model) if compile else model

    def step(x, y, idx):
        with autocast_context(dev, amp):
            logits = model_logits(forward(x))
        return logits, {"loss": F.cross_entropy(logits.float(), y, ignore_index=UNLABELLED,
                                                label_smoothing=label_smoothing)}

    return fit(step, model, batches, epochs, opt, sched, device=dev, test_data=test_data,
               amp=amp, channels_last=cl, progress=progress)


# ---------------------------------------------------------------------------------------
# distillation

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


def _sample(data, n=2) -> torch.Tensor:
    if isinstance(data, ImageSet):
        return data.subset(range(min(n, len(data)))).float_images()  # normalised if set
    return sample_images(data, n)


def _channel_hint(model: nn.Module, x: torch.Tensor) -> str:
    """Why a model may refuse ``x``: its first convolution wants other channels."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels == x.shape[1]:
        return ""
    fix = ("make the images 3-channel (e.g. load_dataset('digits-rgb'), or "
           "x.expand(-1, 3, -1, -1) for grey images)" if conv.in_channels == 3
           else f"build it with in_channels={x.shape[1]}")
    return (f" (its first convolution takes {conv.in_channels}-channel images but the data "
            f"has {x.shape[1]} channel(s): {fix})")


def _probe(model: nn.Module, x: torch.Tensor, who: str) -> int:
    """Run ``model`` once on ``x`` (eval mode); its number of classes."""
    try:
        with eval_mode(model), torch.no_grad():
            raw = model(x)
            out = model_logits(raw, f"the {who}")
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"the {who} cannot take the training images shaped "
                         f"{tuple(x.shape[1:])}{_channel_hint(model, x)}: "
                         f"{str(err).splitlines()[0]}") from err
    if out.dim() != 2:
        taken = ""
        if isinstance(raw, (tuple, list)):
            taken = (f" (it returned a {type(raw).__name__} of {len(raw)} and the package "
                     "takes element 0 as the logits; return the logits first, or wrap it: "
                     "atkd_lite.outputs.LogitsOnly(model, select=1) takes element 1, and its "
                     "layers are then named 'model.<name>')")
        raise ValueError(f"the {who} must return logits shaped (B, K); its logits are shaped "
                         f"{tuple(out.shape)}{taken}")
    return out.shape[1]


def _check_data(train_data, test_data, cache, cfg: DistillConfig):
    """The datasets (a DataLoader's dataset; items checked), or a clear error; then the
    training DataLoader's worker processes (None: the default)."""
    if train_data is None:
        raise ValueError("train_data is required")
    workers = None
    if isinstance(train_data, torch.utils.data.DataLoader):
        workers = train_data.num_workers
        if train_data.batch_size is not None and train_data.batch_size != cfg.batch_size:
            warnings.warn(f"distill batches the DataLoader's dataset itself, with batch_size="
                          f"{cfg.batch_size} from its settings, not the DataLoader's "
                          f"{train_data.batch_size}; pass batch_size={train_data.batch_size} "
                          "to use that", stacklevel=3)
    checked = []
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if data is not None and not isinstance(data, ImageSet):
            data = as_dataset(data, name)  # a DataLoader's dataset; items checked
        if data is not None and len(data) == 0:
            raise ValueError(f"{name} is empty; pass a dataset with at least one image")
        checked.append(data)
    if cache is None:
        return (*checked, workers)
    from atkd_lite.cache import TeacherCache

    if not isinstance(cache, TeacherCache):
        raise TypeError(f"cache must be a TeacherCache, got {type(cache).__name__}")
    if cfg.augment or cfg.flip:
        raise ValueError("a teacher cache cannot be used with augmentation: the cached "
                         "maps and logits belong to the unshifted images and would not "
                         "match the shifted or flipped ones; pass augment=0, flip=False or "
                         "cache=None")
    return (*checked, workers)


#: below this share of the loss (last epoch) the attention term is reported as negligible;
#: half of what the book's own pair shows at its tuned weight after two epochs (FMA, about
#: 1 %), while a term tuned for another pair was found at 0.2 % on a user's CNN
NEGLIGIBLE_SHARE = 0.005


def _check_attention_share(history: History, beta: float, default_beta: bool) -> None:
    """Warn when the weighted attention term was a negligible part of the loss."""
    last = history.last
    if "loss_att" not in last or not last.get("loss"):
        return
    share = beta * last["loss_att"] / last["loss"]
    if share >= NEGLIGIBLE_SHARE or beta == 0:
        return
    why = ("the default weight was tuned for the book's CNN pair, so tune it for your "
           "networks" if default_beta else "raise the weight")
    warnings.warn(
        f"the attention term was {100 * share:.2g}% of the loss in the last epoch (beta "
        f"{beta:g} x {last['loss_att']:.3g} of {last['loss']:.3g}): at this weight it "
        f"barely acts; {why} (e.g. try beta 10x and 100x larger on a validation split, "
        "as atkd-lite tune does)", stacklevel=3)


def distill(teacher: nn.Module, student: nn.Module, train_data, test_data=None,
            method: str = "fma", config: DistillConfig | None = None, *, cache=None,
            **settings) -> DistillResult:
    """Train ``student`` with ``method``, guided by a frozen ``teacher``.

    Loss: ``L = (1 − α)·CE + α·KD + β·L_att`` (α = 0 without ``+kd``). The step is the
    method's distiller (:mod:`atkd_lite.methods`), the loop is :func:`~atkd_lite.loop.fit` with a
    one-cycle learning rate. Same seed, same history on the CPU at the same number of
    torch threads (see :func:`~atkd_lite.device.seed_everything`).

    Args:
        teacher (nn.Module): the trained teacher; kept in eval mode with gradients off
            during the run (both restored after), never updated; moved to the device.
        student (nn.Module): trained in place (moved to the device; eval mode at the end).
        train_data: training images: an :class:`~atkd_lite.data.ImageSet` (kept on the
            device, the fast path), or any map-style dataset of ``(image, label)`` — e.g.
            torchvision's ``ImageFolder`` over files too many for memory — or a
            ``DataLoader`` over one (read through its dataset, keeping its
            ``num_workers``); with a cache too.
        test_data (optional): evaluated after every epoch; the same kinds as
            ``train_data``.
        method (str or type): one of :data:`~atkd_lite.methods.registry.METHODS`: ``student``,
            ``kd``, ``at``, ``fma``, ``mip``, ``sals``, ``at+kd``, ``fma+kd``, ``mip+kd``,
            ``sals+kd``; or your own subclass of
            :class:`~atkd_lite.methods.base.Distiller`, built with the same keyword
            arguments as the built-in ones (``alpha``, ``beta``, ``T``, ...; see
            :func:`~atkd_lite.methods.registry.parse_method` for its name and KD).
        config (DistillConfig, optional): the settings (default: the tuned defaults).
        cache (TeacherCache, optional): teacher logits/maps by dataset index, built for
            exactly ``train_data`` and the method's settings (checked); then the teacher
            is not run at all.
        **settings: shorthand for fields of ``config``, e.g. ``epochs=5, beta=0.5,
            device="cpu", progress=False``.

    Under ``torchrun`` it distils data-parallel (see :func:`~atkd_lite.loop.fit`): the
    teacher runs on every process (or is read from ``cache``), the student's gradients are averaged,
    ``batch_size`` is per process, and ``params`` records ``world_size``, ``backend`` and
    the global batch. Processes started with different settings or data stop together
    with a :class:`~atkd_lite.distributed.DistributedError`.

    Returns:
        DistillResult: ``.history``, ``.test_acc``, ``.method``, ``.params``, ``.student``.

    Raises:
        ValueError: unknown method (the valid ones are listed), a setting out of range,
            teacher and student with different numbers of classes, images the networks
            cannot take (e.g. another number of channels), layer selections that cannot
            be compared (AT: different lengths), a cache built for other data, layers or
            settings, a cache with augmentation, an empty dataset.
        TypeError: a setting that does not exist; a method class that is not a
            :class:`~atkd_lite.methods.base.Distiller` subclass; a dataset whose items are not
            ``(image, label)``; a model output that is not logits (a tensor, a tuple
            starting with them, or a dict with ``"logits"``/``"out"``).

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
    method, cls, use_kd = parse_method(method)
    if config is not None and not isinstance(config, DistillConfig):
        raise TypeError(f"config must be a DistillConfig, got {type(config).__name__}")
    cfg = (config or DistillConfig()).replace(**settings).validate()
    for who, m in (("teacher", teacher), ("student", student)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{who} must be a torch.nn.Module, got {type(m).__name__}")
    # DataParallel/DDP/compiled wrappers: distil the networks themselves (the student is
    # trained in place, so a wrapper around it sees the trained weights)
    teacher, student = unwrap_model(teacher), unwrap_model(student)
    if teacher is student:
        raise ValueError("teacher and student are the same module; pass a separate student")
    train_data, test_data, workers = _check_data(train_data, test_data, cache, cfg)
    for who, net, spec in (("teacher_layers", teacher, cfg.teacher_layers),
                           ("student_layers", student, cfg.student_layers)):
        if spec is not None:  # unknown names fail now, whatever the method
            ATCam(net, **layer_selection(spec, cfg.first, cfg.last, who))

    dev = distributed.setup(cfg.device)  # under torchrun: join the job, this rank's device
    cl = _channels_last(dev, cfg.channels_last)
    teacher.to(dev)
    student.to(dev, memory_format=torch.channels_last if cl else torch.preserve_format)
    x_probe = _sample(train_data).to(dev)
    if test_data is not None:
        x_test = _sample(test_data)
        if tuple(x_test.shape[1:]) != tuple(x_probe.shape[1:]):
            raise ValueError(f"train images are {tuple(x_probe.shape[1:])} but test images "
                             f"are {tuple(x_test.shape[1:])}; use data of one size")
    side = min(x_probe.shape[-2:])
    if cfg.augment >= side // 2 and cfg.augment:
        raise ValueError(f"augment={cfg.augment} shifts {tuple(x_probe.shape[-2:])} images by "
                         f"up to {cfg.augment} pixels, which leaves little or nothing of "
                         f"them; use less than half the image side (at most "
                         f"{max(0, side // 2 - 1)}; 4 is the usual CIFAR shift)")
    k_t, k_s = _probe(teacher, x_probe, "teacher"), _probe(student, x_probe, "student")
    if k_t != k_s:
        raise ValueError(f"the teacher has {k_t} classes but the student has {k_s}; build the "
                         f"student with num_classes={k_t}")
    num_classes = getattr(train_data, "num_classes", None)
    if num_classes is not None and num_classes != k_s:
        raise ValueError(f"the networks have {k_s} outputs but the data has {num_classes} "
                         "classes")

    alpha = (DEFAULT_ALPHA if cfg.alpha is None else cfg.alpha) if use_kd else 0.0
    world = distributed.world_size()
    if world > 1:  # every process must distil the same thing, or stop together
        distributed.check_same_settings(
            {"method": method, **{k: v for k, v in dataclasses.asdict(cfg).items()
                                  if k not in ("progress", "device")},
             "train": _data_signature(train_data),
             "test": None if test_data is None else len(test_data),
             "student": _model_signature(student),
             "teacher": tensor_digest(teacher.state_dict()),
             "cache": None if cache is None else cache.meta.get("fingerprint")},
            "distillation settings")

    with frozen(teacher):
        # the method takes the validated settings whole, with KD's weight resolved
        distiller: Distiller = cls(student, teacher, config=cfg.replace(alpha=alpha),
                                   cache=cache)
        distiller.prepare_data(train_data)  # what the method takes from the data
        distiller.setup(x_probe)  # capture points found (and AT pairs checked) first
        if cache is not None:
            needs = distiller.cache_needs()
            if needs.get("maps") and needs.get("size") is None:
                needs["size"] = tuple(x_probe.shape[-2:])  # maps at the input's size
            cache.check(train_data, teacher=teacher, num_classes=k_s, **needs)
        seed_everything(cfg.seed)
        batches = make_batches(train_data, cfg.batch_size, shuffle=True, device=dev,
                               seed=cfg.seed, augment=cfg.augment, rank=distributed.rank(),
                               world_size=world, flip=cfg.flip, num_workers=workers,
                               num_classes=k_s)
        lr = cfg.lr * world if cfg.scale_lr else cfg.lr
        opt, sched = make_optimizer(distiller.trainable_parameters(), lr, cfg.weight_decay,
                                    cfg.epochs * len(batches), schedule="onecycle")
        history = fit(distiller.forward_train, distiller, batches, cfg.epochs, opt, sched,
                      device=dev, test_data=test_data, evaluate_model=student, amp=cfg.amp,
                      channels_last=cl, progress=cfg.progress, desc=f"distill {method}",
                      eval_every=cfg.eval_every, frozen=teacher)

    if distiller.kind is not None:
        _check_attention_share(history, distiller.beta, cfg.beta is None)
    params = {"method": method, **{k: v for k, v in dataclasses.asdict(cfg).items()
                                   if k not in ("progress", "device", "eval_every")},
              "alpha": alpha, "beta": distiller.beta if distiller.kind else 0.0,
              "cached": cache is not None, "device": str(dev),
              "world_size": world, "backend": distributed.backend(),
              "global_batch_size": cfg.batch_size * world, "lr_used": lr}
    return DistillResult(method=method, history=history,
                         test_acc=history.last.get("test_acc"), params=params,
                         student=student, student_parameters=count_parameters(student))
