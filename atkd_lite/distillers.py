"""The distillers, by their first name: :mod:`atkd_lite.methods` holds them now, one file
per method. Kept so that ``from atkd_lite.distillers import make_distiller`` (the book,
your own code) goes on working.
"""

from atkd_lite.methods import *  # noqa: F403 (re-exported)
from atkd_lite.methods import __all__  # noqa: F401 (the same public names)
