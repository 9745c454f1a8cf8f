"""Training, evaluation and checkpoints — device-agnostic, seeded, with progress bars.

- :func:`get_device` picks ``cuda`` → ``mps`` → ``cpu`` (or validates the one you name);
- :func:`train_model` trains any classifier with cross-entropy (AdamW, one-cycle schedule,
  autocast on CUDA with bf16 where supported, no host–device sync in the hot loop);
- :func:`evaluate` / :func:`predict` run a model over a dataset;
- :func:`save_checkpoint` / :func:`load_checkpoint` write atomically and check metadata;
- :func:`pretrained_teacher` loads the teacher from the cache or trains it (deterministic).

Defined in the book's chapter "Teacher and student".

Examples::

    >>> import atkd_lite as ak
    >>> train = ak.load_dataset("mnist5k", "train").per_class(20)
    >>> model = ak.student_cnn("tiny")
    >>> hist = ak.train_model(model, train, epochs=1, progress=False, device="cpu")
    >>> len(hist["train_loss"])
    1
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atkd_lite.config import cache_dir
from atkd_lite.data import ImageSet, load_dataset, make_batches
from atkd_lite.models import build_model, count_parameters, teacher_cnn

__all__ = [
    "CheckpointError",
    "History",
    "autocast_context",
    "evaluate",
    "get_device",
    "load_checkpoint",
    "make_optimizer",
    "predict",
    "pretrained_teacher",
    "save_checkpoint",
    "seed_everything",
    "train_model",
]

CHECKPOINT_FORMAT = "atkd_lite.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, incomplete, or does not match what was asked for."""


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: ``device`` if given (validated), else cuda → mps → cpu.

    Raises:
        ValueError: an unknown or unavailable device, with what is available.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:0', 'mps' "
                         f"or 'auto'") from err
    available = ["cpu"]
    if torch.cuda.is_available():
        available.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        available.append("mps")
    if dev.type not in available:
        raise ValueError(f"device {device!r} is not available on this machine; "
                         f"available: {available} (or 'auto')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_context(device: torch.device, amp: bool | None = None):
    """Autocast on CUDA (bf16 where supported, else fp16); a no-op elsewhere or if amp=False."""
    if device.type != "cuda" or amp is False:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


@dataclass
class History:
    """Per-epoch metrics: ``history["test_acc"]`` is a list with one value per epoch."""

    records: list[dict] = field(default_factory=list)

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
        return {"records": self.records}


def _check_compatible(model: nn.Module, data) -> None:
    in_ch = getattr(model, "in_channels", None)
    if isinstance(data, ImageSet):
        if len(data) == 0:
            raise ValueError(f"the dataset {data.name!r} is empty")
        if in_ch is not None and data.in_channels != in_ch:
            raise ValueError(
                f"the model expects {in_ch}-channel images but {data.name!r} has "
                f"{data.in_channels} channel(s); build the model with in_channels="
                f"{data.in_channels}"
            )
        n_cls = getattr(model, "num_classes", None)
        if n_cls is not None and n_cls != data.num_classes:
            raise ValueError(f"the model has {n_cls} outputs but {data.name!r} has "
                             f"{data.num_classes} classes")


@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 512, device=None,
            amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels for a whole dataset, in dataset order."""
    dev = get_device(device)
    _check_compatible(model, data)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y, _ in make_batches(data, batch_size, shuffle=False, device=dev):
            with autocast_context(dev, amp):
                out = model(x)
            logits.append(out.float())
            labels.append(y)
    finally:
        model.train(was_training)
    return torch.cat(logits).cpu(), torch.cat(labels).cpu()


def evaluate(model: nn.Module, data, batch_size: int = 512, device=None) -> float:
    """Accuracy (fraction correct, 0–1) of ``model`` on ``data``."""
    logits, labels = predict(model, data, batch_size, device)
    return (logits.argmax(1) == labels).float().mean().item()


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, total_steps: int,
                   warmup: float = 0.25, schedule: str = "warmup-cosine"):
    """AdamW and its learning-rate schedule; returns ``(optimizer, scheduler)``.

    Call ``scheduler.step()`` after every optimiser step. Two schedules:

    - ``"warmup-cosine"`` (teacher training): linear warm-up over ``warmup`` of the steps,
      then cosine decay to zero; works for any ``total_steps >= 1``;
    - ``"onecycle"`` (distillation, as tuned by ``benchmarks/tune_defaults.py``): PyTorch's
      :class:`~torch.optim.lr_scheduler.OneCycleLR`; it needs a few steps per phase, so runs
      of fewer than 8 steps (smoke tests) keep the learning rate constant.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
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


def train_model(model: nn.Module, train_data, test_data=None, epochs: int = 10,
                lr: float = 3e-3, weight_decay: float = 5e-4, batch_size: int = 128,
                augment: int = 0, device=None, seed: int = 0, progress: bool = True,
                amp: bool | None = None, channels_last: bool | None = None,
                label_smoothing: float = 0.0, compile: bool = False) -> History:
    """Train a classifier with cross-entropy; returns a :class:`History`.

    Args:
        model: the network (trained in place, moved to ``device``).
        train_data / test_data: :class:`~atkd_lite.data.ImageSet` (or any dataset of
            ``(image, label)``); ``test_data`` is evaluated after every epoch if given.
        epochs, lr, weight_decay, batch_size: AdamW with a one-cycle learning-rate schedule.
        augment: maximum random shift in pixels (0: none), applied on the device.
        device: ``None``/``"auto"`` picks cuda → mps → cpu.
        seed: same seed, same result on the CPU.
        progress: show a ``tqdm`` progress bar.
        amp / channels_last: ``None`` means on for CUDA, off elsewhere.
        compile: run the training forward through :func:`torch.compile` (opt-in; the
            model itself is left uncompiled, so hooks and checkpoints work as usual).

    The history records, per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``test_acc``
    (if test data), ``time_s`` (wall time of the training part).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    dev = get_device(device)
    _check_compatible(model, train_data)
    if test_data is not None:
        _check_compatible(model, test_data)
    seed_everything(seed)
    if channels_last is None:
        channels_last = dev.type == "cuda"
    model.to(dev, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    batches = make_batches(train_data, batch_size, shuffle=True, device=dev, seed=seed,
                           augment=augment)
    opt, sched = make_optimizer(model, lr, weight_decay, epochs * len(batches))
    forward = torch.compile(model) if compile else model
    use_scaler = dev.type == "cuda" and amp is not False and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    history = History()
    bar = _progress(range(1, epochs + 1), progress, desc="training", unit="epoch")
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        for x, y, _ in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_context(dev, amp):
                logits = forward(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            # accumulate on the device: no host sync until the epoch ends
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            seen += y.shape[0]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elapsed = time.perf_counter() - t0
        record = {"epoch": epoch, "train_loss": loss_sum.item() / seen,
                  "train_acc": correct.item() / seen, "time_s": elapsed}
        if test_data is not None:
            record["test_acc"] = evaluate(model, test_data, device=dev)
        history.append(**record)
        if progress:
            bar.set_postfix({k: round(v, 4) for k, v in record.items()
                             if k in ("train_loss", "test_acc")})
    model.eval()
    return history


# ---------------------------------------------------------------------------------------
# checkpoints

def _versions() -> dict:
    import atkd_lite

    return {"atkd_lite": atkd_lite.__version__, "torch": str(torch.__version__)}


def save_checkpoint(path, model: nn.Module, **metadata) -> Path:
    """Save ``model`` (its config and weights) with ``metadata``, atomically.

    The file is written to a temporary name in the same folder and renamed into place, so
    an interrupted save never leaves a half-written checkpoint. Versions of atkd_lite and
    torch are recorded.
    """
    path = Path(path)
    config = getattr(model, "config", None)
    meta = {"format": CHECKPOINT_FORMAT, "config": config, "parameters": count_parameters(model),
            **_versions(), **metadata}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"meta": meta, "state_dict": state}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path, model: nn.Module | None = None, map_location="cpu",
                    expect: dict | None = None) -> tuple[nn.Module, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns ``(model, meta)``.

    Args:
        path: the file.
        model: load into this model; if None, the model is rebuilt from the stored config.
        expect: metadata that must match (e.g. ``{"dataset": "mnist5k"}``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is corrupt, not an atkd_lite checkpoint, its metadata
            differs from ``expect``, or its weights do not fit ``model``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is corrupt or not a checkpoint ({type(err).__name__}: {err}); "
            "delete it and train again (pretrained_teacher(...) retrains automatically)"
        ) from err
    if not isinstance(blob, dict) or blob.get("meta", {}).get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an atkd_lite checkpoint "
                              f"(expected format {CHECKPOINT_FORMAT!r})")
    meta = blob["meta"]
    for key, want in (expect or {}).items():
        if meta.get(key) != want:
            raise CheckpointError(f"{path} was saved with {key}={meta.get(key)!r}, "
                                  f"but {want!r} was expected")
    if model is None:
        if meta.get("config") is None:
            raise CheckpointError(f"{path} stores no model config; pass the model to load into")
        model = build_model(meta["config"])
    elif meta.get("config") is not None and getattr(model, "config", None) not in (None, meta["config"]):
        raise CheckpointError(f"{path} holds a model with config {meta['config']}, which does "
                              f"not match the model given ({model.config})")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit the model: {err}") from err
    return model, meta


def pretrained_teacher(dataset: str = "mnist5k", epochs: int = 12, seed: int = 0,
                       cache=None, device=None, progress: bool = True, retrain: bool = False,
                       **train_kwargs) -> tuple[nn.Module, dict]:
    """The default teacher trained on ``dataset``: loaded from the cache, or trained and cached.

    The cache file name encodes the dataset, epochs, seed and architecture, so a changed
    recipe never loads a stale teacher. A corrupt cache file is retrained. Returns
    ``(teacher in eval mode on device, metadata)`` with the test accuracy in the metadata.

    Examples::

        >>> import atkd_lite as ak
        >>> teacher, meta = ak.pretrained_teacher(progress=False)   # doctest: +SKIP
        >>> meta["test_acc"] > 0.97                                  # doctest: +SKIP
        True
    """
    dev = get_device(device)
    train = load_dataset(dataset, "train")
    test = load_dataset(dataset, "test")
    seed_everything(seed)  # the initial weights are part of the recipe
    model = teacher_cnn(in_channels=train.in_channels, num_classes=train.num_classes)
    recipe = {"dataset": dataset, "epochs": epochs, "seed": seed, "config": model.config,
              "train": {k: train_kwargs[k] for k in sorted(train_kwargs)},
              "image_size": list(train.image_size)}
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    path = cache_dir(cache) / "teachers" / f"teacher-{dataset}-{key}.pt"
    if path.exists() and not retrain:
        try:
            model, meta = load_checkpoint(path, model, expect={"recipe_key": key})
            return model.to(dev).eval(), meta
        except CheckpointError as err:
            print(f"retraining the teacher: {err}")
    train_kwargs.setdefault("augment", 2)
    history = train_model(model, train, test, epochs=epochs, seed=seed, device=dev,
                          progress=progress, **train_kwargs)
    meta = {"dataset": dataset, "epochs": epochs, "seed": seed, "recipe_key": key,
            "test_acc": history.last["test_acc"], "history": history.records,
            "device": str(dev)}
    save_checkpoint(path, model, **meta)
    _, meta = load_checkpoint(path, model)  # what we return is exactly what is on disk
    return model.to(dev).eval(), meta
