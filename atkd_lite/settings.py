"""The settings of a distillation, one object: :class:`DistillConfig`.

:func:`~atkd_lite.engine.distill` takes one (``config=``, or its fields as keywords),
validates it once, and hands it whole to the method's
:class:`~atkd_lite.methods.base.Distiller`, which reads the fields it uses (a method
without maps never sees a layer selection as its own). Kept apart from the engine so that
the methods, which the engine imports, can take it too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from atkd_lite.capture import layer_selection
from atkd_lite.checks import check_int, check_number
from atkd_lite.device import check_compile_mode
from atkd_lite.losses.attention import FORMS
from atkd_lite.losses.kd import MAX_T

__all__ = ["DistillConfig"]


@dataclass(frozen=True)
class DistillConfig:
    """The settings of :func:`~atkd_lite.engine.distill`; the defaults are the tuned values.

    The defaults were chosen on the embedded digits' fit/val split (never the test split)
    in the low-data setting (100 digits a class): every method's weight and the epochs by
    ``atkd-lite tune`` (:mod:`atkd_lite.experiments.tuning`, committed as the results
    ``mnist5k-tuning``), the learning rate, T, first/last and the attention form by the
    earlier search of ``benchmarks/tune_defaults.py`` (``benchmarks/RESULTS.md``).

    Attributes:
        epochs: training epochs (30).
        lr: peak learning rate of the one-cycle schedule (0.03).
        weight_decay: AdamW's weight decay (5e-4).
        batch_size: images per step (128).
        alpha: KD weight in [0, 1] for ``kd`` and ``+kd`` methods;
            None = :data:`~atkd_lite.methods.base.DEFAULT_ALPHA` (0.7). Other methods use 0.
        beta: weight of the attention term; None = the method's tuned
            ``default_beta`` (FMA 0.3, MIP 3, SALS 0.1, AT 100).
        T: KD temperature (8).
        first, last: ATCam's layer selection for FMA and MIP, both networks (2, 2), unless
            a network has its own selection.
        teacher_layers, student_layers: each network's own capture points (None: the
            default, ``first``/``last`` of its automatic ones): a list of module names
            (``["layer1", "layer4"]``), ``{"first": F, "last": L}`` or ``"all"`` (see
            :func:`~atkd_lite.capture.layer_selection`). FMA and MIP accept selections
            of different lengths (each network's map is resized to one size); AT pairs
            them in order, so both must have the same length.
        size: map size for FMA and MIP; None = the input's H×W.
        attention_form: ``"l2"`` (default) or ``"bce"``, see
            :func:`~atkd_lite.losses.attention_loss`.
        label_smoothing: cross-entropy's label smoothing (0; a control for KD: does KD beat
            a well-chosen smoothing?).
        augment: maximum random shift in pixels (0: none; not with a cache); 4 with
            ``flip=True`` is the standard CIFAR augmentation (random crop with 4 pixels
            of padding, horizontal flip).
        flip: random horizontal flips (False; not with a cache).
        seed: batch order and any randomness in the loop (build the student after
            :func:`~atkd_lite.device.seed_everything` to seed its initialisation too).
        device: ``None``/``"auto"`` = cuda → mps → cpu.
        progress: a progress bar over epochs.
        amp, channels_last: None = on for CUDA, off elsewhere. Maps and
            losses are always computed in float32.
        eval_every: evaluate the test data after every this many epochs (1), and always
            after the last; 0 = after the last only (a grid of many runs needs nothing
            more, and saves a quarter of the time of a small student's epoch).
        scale_lr: under ``torchrun``, multiply ``lr`` by the number of processes (the
            linear scaling rule; ``batch_size`` is per process); off by default.
        compile_maps: FMA and MIP: compile both networks' map computation and the
            attention loss with ``torch.compile`` (False; True or a mode, see
            :class:`~atkd_lite.ATCam`). Equal to the eager numbers to rounding, not bit
            for bit; the first steps compile (seconds to a minute, again for each new
            batch shape), and on the CPU it needs a C++ compiler. It makes a step cheaper
            on two CPU cores, but a first compile pays for itself only after thousands of
            steps (``benchmarks/bench_distill.py --compile default`` and
            ``benchmarks/bench_compile.py`` measure both; figures in
            ``benchmarks/RESULTS.md``). Other methods have no maps to compile and ignore
            it.

    Examples::

        >>> from atkd_lite.settings import DistillConfig
        >>> DistillConfig().replace(epochs=5, beta=0.5).epochs
        5
    """

    epochs: int = 30
    lr: float = 3e-2
    weight_decay: float = 5e-4
    batch_size: int = 128
    alpha: float | None = None
    beta: float | None = None
    T: float = 8.0
    first: int = 2
    last: int = 2
    teacher_layers: list[str] | dict | str | None = None
    student_layers: list[str] | dict | str | None = None
    size: tuple[int, int] | None = None
    attention_form: str = "l2"
    label_smoothing: float = 0.0
    augment: int = 0
    flip: bool = False
    seed: int = 0
    device: str | None = None
    progress: bool = True
    amp: bool | None = None
    channels_last: bool | None = None
    eval_every: int = 1
    scale_lr: bool = False
    compile_maps: bool | str = False

    def replace(self, **changes) -> DistillConfig:
        """A copy with some fields changed.

        Raises:
            TypeError: a name that is not a field (the fields are listed).
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = [k for k in changes if k not in names]
        if unknown:
            hint = " (the AT weight is beta now)" if "beta_at" in unknown else ""
            raise TypeError(f"unknown distillation setting(s) {unknown}{hint}; "
                            f"the settings are: {', '.join(names)}")
        return dataclasses.replace(self, **changes)

    def validate(self) -> DistillConfig:
        """Check every field; returns self. Raises ValueError naming the field."""
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("first", self.first, minimum=0)
        check_int("last", self.last, minimum=0)
        if self.first == 0 and self.last == 0:
            raise ValueError("first and last are both 0, so no capture point would be kept; "
                             "use first >= 1 or last >= 1")
        check_int("augment", self.augment, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_int("eval_every", self.eval_every, minimum=0)
        check_number("lr", self.lr, positive=True)
        check_number("weight_decay", self.weight_decay, lo=0.0)
        check_number("T", self.T, positive=True, hi=MAX_T)
        check_number("label_smoothing", self.label_smoothing, 0.0, 1.0)
        if self.alpha is not None:
            check_number("alpha", self.alpha, 0.0, 1.0)
        if self.beta is not None:
            check_number("beta", self.beta, lo=0.0)
        if self.attention_form not in FORMS:
            raise ValueError(f"unknown attention_form {self.attention_form!r}; "
                             f"use one of {list(FORMS)}")
        if not isinstance(self.scale_lr, bool):
            raise ValueError(f"scale_lr must be True or False, got {self.scale_lr!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False, got {self.flip!r}")
        check_compile_mode(self.compile_maps, "compile_maps")
        for name in ("teacher_layers", "student_layers"):
            try:
                layer_selection(getattr(self, name), self.first, self.last, name)
            except TypeError as err:
                raise ValueError(str(err)) from None
        return self
