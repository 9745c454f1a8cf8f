"""The one training loop, :func:`fit`, with what it needs: the optimiser and its schedule
(:func:`make_optimizer`), precision (:func:`needs_grad_scaler`), data parallelism under
``torchrun``, the per-epoch :class:`History`, and evaluation (:func:`predict`,
:func:`evaluate`).

:func:`~atkd_lite.engine.train_model` and :func:`~atkd_lite.engine.distill` are built on it
(:mod:`atkd_lite.engine`, which re-exports these names).

Examples::

    >>> import torch
    >>> from atkd_lite.loop import History, make_optimizer
    >>> h = History()
    >>> h.append(epoch=1, loss=0.5)
    >>> h["loss"], h.last["epoch"]
    ([0.5], 1)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from atkd_lite import distributed
from atkd_lite.checks import trusted_inputs
from atkd_lite.data import UNLABELLED, ImageSet, make_batches
from atkd_lite.device import (
    autocast_context,
    autocast_dtype,
    eval_mode,
    get_device,
    progress_bar,
    synchronize,
)
from atkd_lite.outputs import model_logits

__all__ = [
    "History",
    "Step",
    "check_compatible",
    "evaluate",
    "evaluate_shared",
    "fit",
    "make_optimizer",
    "needs_grad_scaler",
    "predict",
]


@dataclass
class History:
    """Per-epoch metrics: ``history["test_acc"]`` is a list with one value per epoch."""

    records: list[dict] = field(default_factory=list)
    #: How the run was made (``world_size`` and ``backend`` of data parallelism).
    meta: dict = field(default_factory=dict)

    def append(self, **metrics) -> None:
        self.records.append(metrics)

    def __getitem__(self, key: str) -> list:
        return [r.get(key) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict:
        return {"records": self.records, "meta": self.meta}


# ---------------------------------------------------------------------------------------
# evaluation

def check_compatible(model: nn.Module, data) -> None:
    """Refuse an empty ImageSet, or one whose channels or classes the model does not take."""
    if not isinstance(data, ImageSet):
        return
    if len(data) == 0:
        raise ValueError(f"the dataset {data.name!r} is empty")
    in_ch = getattr(model, "in_channels", None)
    if in_ch is not None and data.in_channels != in_ch:
        raise ValueError(f"the model expects {in_ch}-channel images but {data.name!r} has "
                         f"{data.in_channels} channel(s); build the model with in_channels="
                         f"{data.in_channels}")
    n_cls = getattr(model, "num_classes", None)
    if n_cls is not None and n_cls != data.num_classes:
        raise ValueError(f"the model has {n_cls} outputs but {data.name!r} has "
                         f"{data.num_classes} classes")


@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 512, device=None,
            amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels for a whole dataset, in dataset order."""
    dev = get_device(device)
    check_compatible(model, data)
    logits, labels = [], []
    with eval_mode(model):
        for x, y, _ in make_batches(data, batch_size, shuffle=False, device=dev):
            with autocast_context(dev, amp):
                logits.append(model_logits(model(x)).float())
            labels.append(y)
    logits, labels = torch.cat(logits).cpu(), torch.cat(labels).cpu()
    bad = (labels >= logits.shape[1]) | ((labels < 0) & (labels != UNLABELLED))
    if bool(bad.any()):  # a label the model cannot predict would be scored as wrong
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"item {i} of the data has the label {int(labels[i])}, but the model "
                         f"has {logits.shape[1]} outputs (labels 0 to {logits.shape[1] - 1}); "
                         "fix the labels")
    return logits, labels


def evaluate(model: nn.Module, data, batch_size: int = 512, device=None) -> float:
    """Accuracy (fraction correct, 0–1) of ``model`` on ``data``."""
    logits, labels = predict(model, data, batch_size, device)
    return (logits.argmax(1) == labels).float().mean().item()


def evaluate_shared(model: nn.Module, data, device: torch.device) -> float:
    """:func:`evaluate`, each process on every ``world``-th image, counts all-reduced (the
    same figure on every process; one process: :func:`evaluate` itself)."""
    world, rank = distributed.world_size(), distributed.rank()
    if world == 1:
        return evaluate(model, data, device=device)
    idx = list(range(rank, len(data), world))
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    if idx:
        part = (data.subset(idx) if isinstance(data, ImageSet)
                else torch.utils.data.Subset(data, idx))
        logits, labels = predict(model, part, device=device)
        counts[0] = float((logits.argmax(1) == labels).sum())
        counts[1] = float(len(idx))
    distributed.all_reduce(counts)
    return (counts[0] / counts[1]).item()


# ---------------------------------------------------------------------------------------
# the loop

def make_optimizer(model, lr: float, weight_decay: float, total_steps: int,
                   warmup: float = 0.25, schedule: str = "warmup-cosine"):
    """AdamW and its learning-rate schedule; returns ``(optimizer, scheduler)``.

    ``model`` is the module to train, or the parameters themselves (a distiller's
    :meth:`~atkd_lite.methods.base.Distiller.trainable_parameters`).

    Call ``scheduler.step()`` after every optimiser step. Two schedules:

    - ``"warmup-cosine"`` (teacher training): linear warm-up over ``warmup`` of the steps,
      then cosine decay to zero; works for any ``total_steps >= 1``;
    - ``"onecycle"`` (distillation, as tuned by ``benchmarks/tune_defaults.py``): PyTorch's
      :class:`~torch.optim.lr_scheduler.OneCycleLR`; it needs a few steps per phase, so runs
      of fewer than 8 steps (smoke tests) keep the learning rate constant.
    """
    params = model.parameters() if isinstance(model, nn.Module) else list(model)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if schedule == "onecycle":
        if total_steps >= 8:
            return opt, torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lr, total_steps=total_steps, pct_start=warmup)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if schedule != "warmup-cosine":
        raise ValueError(f"unknown schedule {schedule!r}; use 'warmup-cosine' or 'onecycle'")
    warm = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]


class _StepModule(nn.Module):
    """The trainable model with its step as ``forward``: what DDP wraps, so that every
    training forward runs inside DDP's and the gradients are averaged in backward."""

    def __init__(self, model: nn.Module, step: Step):
        super().__init__()
        self.model = model
        self.step = step

    def forward(self, x, y, idx):
        return self.step(x, y, idx)


def _data_parallel(step: Step, model: nn.Module, device: torch.device,
                   frozen: nn.Module | None):
    """Wrap ``step`` and ``model`` in DistributedDataParallel; returns ``(ddp, buffers)``.

    Parameters that need no gradient and everything in ``frozen`` (the teacher) are left
    out, so DDP neither broadcasts nor synchronises them. ``buffers`` are the model's own
    buffers (BatchNorm statistics), made equal on all processes after each epoch.
    """
    from torch.nn.parallel import DistributedDataParallel

    wrapper = _StepModule(model, step)
    skip = {id(p) for p in model.parameters() if not p.requires_grad}
    if frozen is not None:
        skip |= {id(t) for t in (*frozen.parameters(), *frozen.buffers())}
    named = [*wrapper.named_parameters(), *wrapper.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        wrapper, [n for n, t in named if id(t) in skip])
    ddp = DistributedDataParallel(
        wrapper, device_ids=[device.index] if device.type == "cuda" else None)
    buffers = [b for _, b in wrapper.named_buffers() if id(b) not in skip]
    return ddp, buffers


def _sync_buffers(buffers: list[torch.Tensor]) -> None:
    """Rank 0's buffers everywhere (each rank updated its BatchNorm statistics with its
    own last batch), so every process evaluates and keeps the same model."""
    import torch.distributed as dist

    for b in buffers:
        dist.broadcast(b, src=0)


def needs_grad_scaler(device: torch.device, amp: bool | None = None) -> bool:
    """Whether training under autocast on ``device`` needs a gradient scaler.

    float16 has a narrow exponent range: small gradients underflow to zero unless the
    loss is scaled up before backward (and the gradients scaled down before the step).
    bfloat16 has float32's range and needs no scaler. So: True exactly when autocast runs
    in float16, i.e. on CUDA without native bfloat16 (a T4), see
    :func:`~atkd_lite.device.autocast_dtype`.

    Examples::

        >>> import torch
        >>> from atkd_lite.loop import needs_grad_scaler
        >>> needs_grad_scaler(torch.device("cpu"))
        False
    """
    return (device.type == "cuda" and amp is not False
            and autocast_dtype(device) == torch.float16)


def fit(step: Step, model: nn.Module, batches, epochs: int, optimizer, scheduler, *,
        device: torch.device, test_data=None, evaluate_model: nn.Module | None = None,
        amp: bool | None = None, channels_last: bool = False, progress: bool = True,
        desc: str = "training", frozen: nn.Module | None = None,
        eval_every: int = 1, grad_scaler: bool | None = None) -> History:
    """Run ``epochs`` epochs of ``step`` over ``batches``; the one training loop.

    Under data parallelism (a process group from :mod:`atkd_lite.distributed`) the step
    runs inside :class:`~torch.nn.parallel.DistributedDataParallel` around ``model``
    (gradients averaged over the processes; ``frozen`` and parameters without gradients
    left out), ``batches`` must be this process's share, the epoch's figures are summed
    over the processes, the test set is evaluated in shares, and only rank 0 shows a
    progress bar: every process returns the same history.

    Args:
        step: ``step(x, y, idx) -> (logits, terms)``; ``terms["loss"]`` is minimised and
            every term is averaged over the epoch into the history.
        model (nn.Module): put in train mode for each epoch and eval mode at the end (a
            distiller keeps its teacher in eval mode itself).
        batches: an iterable of ``(x, y, idx)`` with a length, reshuffled each epoch.
        epochs (int): number of epochs.
        optimizer, scheduler: from :func:`make_optimizer`; the scheduler steps per batch.
        device: where the batches are.
        test_data (optional): evaluated with ``evaluate_model`` after every
            ``eval_every``-th epoch and after the last (0: after the last only, what a
            grid of many runs needs).
        amp: autocast on CUDA (None = on); fp16 without bf16 gets a gradient scaler.
        grad_scaler: None = when :func:`needs_grad_scaler` says so; True forces a
            :class:`torch.amp.GradScaler` on any device (the CPU too: with a step under
            ``torch.autocast("cpu", dtype=torch.float16)`` this runs the T4's float16
            path on a machine without a GPU); False never.
        channels_last (bool): convert each batch to channels-last memory format.
        progress (bool): a progress bar over epochs.
        desc (str): its label.
        frozen (nn.Module, optional): a part of ``model`` that is never trained (the
            teacher inside a distiller): not synchronised under data parallelism.

    Returns:
        History: per epoch ``epoch``, each term's mean, ``train_acc``, ``time_s`` (the
        training part's wall time; the slowest process's) and ``test_acc`` when there is
        test data; ``meta`` holds ``world_size`` and ``backend``.

    Raises:
        FloatingPointError: a loss term became NaN or infinite (names the epoch and term;
            on every process at once under data parallelism).
    """
    use_scaler = needs_grad_scaler(device, amp) if grad_scaler is None else bool(grad_scaler)
    # a disabled scaler passes the loss and the step through unchanged
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    world = distributed.world_size()
    history = History(meta={"world_size": world, "backend": distributed.backend()})
    run, buffers = step, []
    if world > 1:
        run, buffers = _data_parallel(step, model, device, frozen)
        # dropout and other randomness: reproducible, and different on every process
        torch.manual_seed(torch.initial_seed() + distributed.rank())
    shown = progress and distributed.is_main()
    stepped = False
    bar = progress_bar(range(1, epochs + 1), shown, desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=device, dtype=torch.long)
        labelled = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        # the loop's own batches: no per-step NaN scan (a device sync); a non-finite
        # loss is caught below, at the end of the epoch
        with trusted_inputs():
            for x, y, idx in batches:
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits, terms = run(x, y, idx)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(terms["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
                if use_scaler and not stepped:
                    # the scaler skips steps whose float16 gradients overflow (often the
                    # first, while it finds its scale); torch then warns that the schedule
                    # stepped before the optimiser: expected here, and it warns only once
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message=r"Detected call of `lr_sch")
                        scheduler.step()
                else:
                    scheduler.step()
                stepped = True
                # accumulate on the device: no host sync until the epoch ends
                for name, value in terms.items():
                    v = value.detach() * y.shape[0]
                    sums[name] = v if name not in sums else sums[name] + v
                correct += (logits.detach().argmax(1) == y).sum()  # never true if UNLABELLED
                labelled += (y >= 0).sum()
                seen += y.shape[0]
        synchronize(device)
        elapsed = time.perf_counter() - t0
        if world > 1:  # every process reports the figures of the whole epoch
            names = sorted(sums)
            vec = torch.stack([sums[k].double() for k in names]
                              + [correct.double(), labelled.double(),
                                 torch.tensor(float(seen), device=device,
                                              dtype=torch.float64)])
            distributed.all_reduce(vec)
            slowest = distributed.all_reduce(torch.tensor([elapsed], device=device), "max")
            seen = vec[-1].item()
            totals = {k: vec[i].item() for i, k in enumerate(names)}
            record = {"epoch": epoch, **{k: v / seen for k, v in totals.items()},
                      "train_acc": vec[-3].item() / max(1.0, vec[-2].item()),
                      "time_s": slowest.item()}
            _sync_buffers(buffers)
        else:
            record = {"epoch": epoch, **{k: v.item() / seen for k, v in sums.items()},
                      "train_acc": correct.item() / max(1, labelled.item()),
                      "time_s": elapsed}
        bad = [k for k in sums if not math.isfinite(record[k])]
        if bad:
            raise FloatingPointError(
                f"epoch {epoch}: the loss term(s) {', '.join(bad)} became "
                f"{record[bad[0]]}; lower the learning rate, the temperature T or the "
                "weights alpha/beta, and check the inputs for NaN or infinity")
        if test_data is not None and (epoch == epochs or
                                      (eval_every and epoch % eval_every == 0)):
            record["test_acc"] = evaluate_shared(evaluate_model or model, test_data, device)
        history.append(**record)
        if shown:
            bar.set_postfix({k: round(v, 4) for k, v in record.items()
                             if k in ("loss", "test_acc")})
    model.eval()
    return history
