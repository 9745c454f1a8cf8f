"""MIP: maximum intensity projection, the max over the selected layers' maps."""

from atkd_lite.methods.atcam_maps import ATCamDistiller
from atkd_lite.methods.registry import register
from atkd_lite.signals import ATCamMap

__all__ = ["MIPDistiller"]


@register
class MIPDistiller(ATCamDistiller):
    """MIP: maximum intensity projection (max over the selected layers' maps)."""

    method_name = "mip"
    signal = ATCamMap("mip")
    default_beta = 3.0
