"""The teacher's map as the mask: RRR's penalty where a clean teacher does not look.

Right for the Right Reasons (:mod:`~atkd_lite.methods.rrr`) needs a human to draw, for
every training image, the pixels the model must not use. A teacher trained on clean
images already "knows" where the evidence is: its attention map is high on the digit and
low elsewhere. These methods replace the human mask by the teacher's map ``M`` (B, H, W)
in [0, 1] and penalise the student's input gradient with the soft weight ``1 − M``::

    L_att = mean_b Σ_pixels (1 − M_b) ⊙ (Σ_c (∂/∂x_b Σ_k log p_k)_c²)

so a student may use the pixels the teacher looks at and is pushed off every other pixel
(a swatch, a ruler, a background) without anyone marking them. Unlike SALS or FMA, the
student is not asked to *reproduce* the teacher's map (which an MLP, or any student with
other inductive biases, may not be able to), only to stay out of where the teacher does
not look; the student side is only an input gradient, so any differentiable student
works, a multilayer perceptron included.

- ``tmask`` — the teacher's SALS map (its input gradient for the label class: a
  class-specific map);
- ``tmask-fma`` — the teacher's FMA map (class-agnostic: where its features are active).

Both have a ``+kd`` variant. Defined in the book's chapter "Shortcuts".

Examples::

    >>> import torch, atkd_lite as ak
    >>> from atkd_lite.distillers import make_distiller
    >>> d = make_distiller("tmask", ak.student_mlp((16,)), ak.teacher_cnn().eval())
    >>> logits, terms = d.forward_train(torch.rand(4, 1, 28, 28), torch.arange(4), None)
    >>> sorted(terms)
    ['loss', 'loss_att', 'loss_ce']
"""

from __future__ import annotations

import torch

from atkd_lite.atcam import resize_maps
from atkd_lite.methods.registry import register
from atkd_lite.methods.rrr import InputGradientPenalty
from atkd_lite.signals import ATCamMap, SaliencyMap

__all__ = ["TeacherFMAMaskDistiller", "TeacherMaskDistiller"]


@register
class TeacherMaskDistiller(InputGradientPenalty):
    """RRR's input-gradient penalty weighted by ``1 − M``, where ``M`` is the teacher's
    saliency map for the label class (see the module).

    Its weight β multiplies a sum over every pixel (RRR's λ multiplies a sum over the
    swatch's few), so its tuned value is much smaller than RRR's.
    """

    method_name = "tmask"
    signal = SaliencyMap()
    #: the middle of its first tuning grid (a one-seed probe on the MLP testbed found
    #: 0.1 best of 0.1, 1 and 10; every experiment tunes it)
    default_beta = 0.1

    def teacher_online(self, x, y):
        """The teacher's logits (None without KD) and its map, computed now."""
        cfg = self.config
        kw = {"first": cfg.first, "last": cfg.last, "size": cfg.size or tuple(x.shape[-2:])}
        return self.teacher_logits(x, None), self.signal.compute(self.teacher, x, y, **kw)

    def attention_term(self, grad, t_map):
        t_map = t_map.detach().float()
        if tuple(t_map.shape[-2:]) != tuple(grad.shape[-2:]):
            t_map = resize_maps(t_map, tuple(grad.shape[-2:]))
        return super().attention_term(grad, (1.0 - t_map).clamp(0.0, 1.0))


@register
class TeacherFMAMaskDistiller(TeacherMaskDistiller):
    """As :class:`TeacherMaskDistiller`, with the teacher's FMA map (class-agnostic)."""

    method_name = "tmask-fma"
    signal = ATCamMap("fma")

    def teacher_online(self, x, y):
        with torch.no_grad():
            return super().teacher_online(x, y)
