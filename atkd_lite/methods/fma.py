"""FMA: feature map accumulation, the mean over the selected layers' maps."""

from atkd_lite.methods.atcam_maps import ATCamDistiller
from atkd_lite.methods.registry import register
from atkd_lite.signals import ATCamMap

__all__ = ["FMADistiller"]


@register
class FMADistiller(ATCamDistiller):
    """FMA: feature map accumulation (mean over the selected layers' maps)."""

    method_name = "fma"
    signal = ATCamMap("fma")
    default_beta = 0.3
