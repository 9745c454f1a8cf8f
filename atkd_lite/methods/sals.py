"""SALS: the attention loss between the two networks' saliency maps for the label class."""

from __future__ import annotations

import torch

from atkd_lite.device import autocast_context, eval_mode
from atkd_lite.methods.base import Distiller
from atkd_lite.methods.registry import register
from atkd_lite.saliency import saliency_map
from atkd_lite.signals import SaliencyMap

__all__ = ["SalsDistiller"]


@register
class SalsDistiller(Distiller):
    """SALS: the attention loss between saliency maps for the label class.

    The teacher's map needs gradients w.r.t. the input only (its parameters are frozen);
    the student's is built with ``create_graph=True`` so the loss reaches its parameters
    (double backprop). The student runs in train mode, so its BatchNorm couples the
    samples of a batch slightly (O(1/B)); the map is still the gradient of the summed
    label logits w.r.t. each image. Saliency maps are noisier than FMA maps, hence a
    smaller tuned weight.
    """

    method_name = "sals"
    signal = SaliencyMap()
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

    def teacher_online(self, x, y):
        with autocast_context(self.device, self.amp):
            t_logits, t_maps = saliency_map(self.teacher, x, target=y, return_logits=True)
        return t_logits.float(), t_maps

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            return saliency_map(self.student, x, target=y, create_graph=True,
                                return_logits=True)
