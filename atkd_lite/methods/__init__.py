"""The distillation methods: one file per method, registered where it is defined.

- :mod:`~atkd_lite.methods.base` — :class:`~atkd_lite.methods.base.Distiller` (``student``, and ``kd`` with
  Hinton's soft targets), the loss and the teacher side every method shares;
- :mod:`~atkd_lite.methods.fma`, :mod:`~atkd_lite.methods.mip` — ATCam's maps
  (on :mod:`~atkd_lite.methods.atcam_maps`); :mod:`~atkd_lite.methods.sals` — saliency
  maps; :mod:`~atkd_lite.methods.at` — the AT baseline; :mod:`~atkd_lite.methods.rrr` —
  Right for the Right Reasons, with masks that come with the data;
  :mod:`~atkd_lite.methods.tmask` — RRR's penalty with the teacher's map as the mask;
  :mod:`~atkd_lite.methods.input_map` — a control: FMA towards the input at the maps'
  scales;
- :mod:`~atkd_lite.methods.registry` — :data:`~atkd_lite.methods.registry.METHODS`
  (every name and its ``+kd`` variant), :func:`~atkd_lite.methods.registry.register`,
  :func:`~atkd_lite.methods.registry.parse_method`,
  :func:`~atkd_lite.methods.registry.make_distiller` and
  :func:`~atkd_lite.methods.registry.signals_for` (what a teacher cache must hold for a
  set of methods).

A new method is one file: a Distiller subclass that declares its teacher
:mod:`signal <atkd_lite.signals>`, its default weight and its two networks' signals,
decorated with :func:`~atkd_lite.methods.registry.register` (``tests/test_methods.py`` adds a new ATCam map and a
FitNet-style method with learnable parameters this way).
"""

# registered in this order, the order the book lists them
from atkd_lite.methods import at, fma, mip, sals  # noqa: F401, I001
from atkd_lite.methods import rrr, tmask  # noqa: F401, I001
from atkd_lite.methods import input_map  # noqa: F401, I001
from atkd_lite.methods.at import ATDistiller
from atkd_lite.methods.atcam_maps import ATCamDistiller
from atkd_lite.methods.base import DEFAULT_ALPHA, Distiller, layer_selection
from atkd_lite.methods.fma import FMADistiller
from atkd_lite.methods.mip import MIPDistiller
from atkd_lite.methods.registry import (
    METHODS,
    make_distiller,
    parse_method,
    register,
    signals_for,
)
from atkd_lite.methods.rrr import InputGradientPenalty, RRRDistiller
from atkd_lite.methods.sals import SalsDistiller
from atkd_lite.methods.tmask import TeacherFMAMaskDistiller, TeacherMaskDistiller

__all__ = ["DEFAULT_ALPHA", "METHODS", "ATCamDistiller", "ATDistiller", "Distiller",
           "FMADistiller", "InputGradientPenalty", "MIPDistiller", "RRRDistiller", "SalsDistiller",
           "TeacherFMAMaskDistiller", "TeacherMaskDistiller", "layer_selection",
           "make_distiller", "parse_method", "register", "signals_for"]
