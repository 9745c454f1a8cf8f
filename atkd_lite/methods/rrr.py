"""RRR, Right for the Right Reasons (Ross et al., 2017): the input gradient penalised
inside a known mask of irrelevant pixels, which comes with the training data."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atkd_lite.data import DecoySet
from atkd_lite.device import autocast_context
from atkd_lite.methods.base import Distiller
from atkd_lite.methods.registry import register
from atkd_lite.metrics import box_mask
from atkd_lite.outputs import model_logits
from atkd_lite.signals import ExampleMask

__all__ = ["InputGradientPenalty", "RRRDistiller"]


class InputGradientPenalty(Distiller):
    """The student side of RRR and of the methods that borrow its penalty: the input
    gradient of the summed log-probabilities, and its squared size weighted per pixel.

    ``attention_term(grad, weight)`` is ``mean_b Σ_pixels weight_b ⊙ (Σ_c grad_b,c²)``
    for a weight (B, H, W) in [0, 1] (a boolean mask, or a soft weight).
    """

    def student_forward(self, x, y):
        x = x.detach().requires_grad_(True)
        with autocast_context(self.device, self.amp):
            logits = model_logits(self.student(x), "the student")
        log_p = F.log_softmax(logits.float(), dim=1).sum()
        (grad,) = torch.autograd.grad(log_p, x, create_graph=True)
        return logits, grad

    def attention_term(self, grad, weight):
        inside = grad.float().pow(2).sum(1) * weight  # (B, H, W): squared, channels summed
        return inside.flatten(1).sum(1).mean()


@register(kd=False)
class RRRDistiller(InputGradientPenalty):
    """Right for the Right Reasons (Ross et al., 2017): penalise the input gradient inside
    a known mask of irrelevant pixels.

    The loss adds ``β · mean_b Σ_pixels (A_b ⊙ ∂/∂x_b Σ_k log p_k)²`` to the cross-entropy,
    where ``A_b`` is image b's mask (True on the swatch) and ``p`` the student's softmax:
    the gradient of the summed log-probabilities, as in the authors' code (their sums over
    the batch become means here, so β is per image). The student is taught *where not to
    look* with the true answer; no teacher is involved. It is the literature's upper
    bound for a method that must find the shortcut by itself.

    The masks belong to the training set (a :class:`~atkd_lite.data.DecoySet`, whose
    swatch boxes they are): :meth:`prepare_data` takes them from the data ``distill``
    trains on, and each batch's masks are looked up by the dataset indices every batch
    carries. ``distill(..., method="rrr")`` is all it takes.
    """

    method_name = "rrr"
    signal = ExampleMask()
    #: the penalty weight λ when none is given (tuned per experiment)
    default_beta = 10.0
    #: its weight is chosen on test-like data (random shades), as the literature's upper
    #: bound is (see :func:`~atkd_lite.experiments.shortcut.grid.tune_weights`)
    tuned_on_test_distribution = True
    #: it trains only on data that carry swatch masks (a DecoySet), and grids check
    #: this before any work (:func:`~atkd_lite.experiments.lowdata.run_experiment`)
    needs_swatch_masks = True
    #: (N, H, W) bool masks by dataset index, set by :meth:`prepare_data` (or :meth:`for_data`)
    masks: torch.Tensor | None = None

    @classmethod
    def for_data(cls, data: DecoySet) -> type[RRRDistiller]:
        """This distiller bound to the swatch masks of ``data`` (kept for code that passes
        a class as the method; ``method="rrr"`` takes the masks from the training data).

        Raises:
            TypeError: data without swatch boxes.
        """
        masks = _masks(data)
        return type(cls.__name__, (cls,), {"masks": masks, "__doc__": cls.__doc__,
                                           "__module__": cls.__module__})

    def prepare_data(self, train_data) -> None:
        """The swatch masks of the training data, unless the class already has them.

        Raises:
            TypeError: training data without swatch boxes.
        """
        if self.masks is None:
            self.masks = _masks(train_data)

    def cache_needs(self) -> dict:
        return {}  # the masks come with the data; no teacher signal

    def teacher_signals(self, x, y, idx):
        """The teacher's logits (None without KD) and this batch's masks, by index."""
        if self.masks is None:
            raise ValueError("RRRDistiller has no masks; train it on a DecoySet "
                             "(decoy_mnist(...)) with method='rrr'")
        return self.teacher_logits(x, idx), self.masks[idx.to(self.masks.device)].to(x.device)


def _masks(data) -> torch.Tensor:
    if not isinstance(data, DecoySet):
        raise TypeError(f"RRR needs the true swatch masks: give a DecoySet "
                        f"(decoy_mnist(...)), got {type(data).__name__}")
    return box_mask(data.swatch_boxes, data.image_size)
