"""Loss functions, one small module each (the book's chapters "Knowledge distillation" and
"Attention-guided distillation" derive them).

- :func:`kd_loss` — Hinton's soft-target loss, T²·KL, batch mean (``kd.py``);
- :func:`attention_loss` — distance between student and teacher attention maps
  (``attention.py``);
- :func:`at_loss` — Zagoruyko & Komodakis' attention transfer, code form (``at.py``).
"""

from atkd_lite.losses.at import at_loss
from atkd_lite.losses.attention import attention_loss
from atkd_lite.losses.kd import kd_loss

__all__ = ["at_loss", "attention_loss", "kd_loss"]
