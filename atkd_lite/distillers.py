"""The distillers, by their first name: :mod:`atkd_lite.methods` holds them now, one file
per method. Kept so that ``from atkd_lite.distillers import make_distiller`` (the book,
your own code) goes on working.
"""

from atkd_lite.methods import (  # noqa: F401 (re-exported)
    DEFAULT_ALPHA,
    METHODS,
    ATCamDistiller,
    ATDistiller,
    Distiller,
    FMADistiller,
    MIPDistiller,
    RRRDistiller,
    SalsDistiller,
    layer_selection,
    make_distiller,
    parse_method,
    register,
    signals_for,
)

__all__ = ["DEFAULT_ALPHA", "METHODS", "ATCamDistiller", "ATDistiller", "Distiller",
           "FMADistiller", "MIPDistiller", "RRRDistiller", "SalsDistiller", "layer_selection",
           "make_distiller", "parse_method", "register", "signals_for"]
