"""The design of the shortcut experiment: which methods, references, splits, maps and
controls a grid holds, and on what a weight can be chosen.

Part of :mod:`atkd_lite.experiments.shortcut` (every name here is also importable from
there).
"""

from __future__ import annotations

from collections.abc import Sequence

from atkd_lite.methods import METHODS

__all__ = [
    "CONTROLLED",
    "CONTROLS",
    "CONTROL_BASE",
    "CONTROL_PAIRS",
    "DEFAULT_METHODS",
    "EVAL_SPLITS",
    "MAP_KINDS",
    "MLP_METHODS",
    "REFERENCES",
    "SELECT_ON",
    "reference_methods",
]


#: the practitioner's methods, in the order of the book's tables
DEFAULT_METHODS = ("student", "kd", "at", "fma", "mip", "sals", "at+kd", "fma+kd", "mip+kd",
                   "sals+kd")
#: the two references that use what a practitioner would not have, the true swatch mask
#: (``rrr``) and data without the shortcut (``clean``)
REFERENCES = ("rrr", "clean")
#: where each student is evaluated (``test`` is the headline: random shades)
EVAL_SPLITS = ("test", "flipped", "clean")
#: the maps scored for where their mass lies
MAP_KINDS = ("sals", "gradcam", "fma", "mip")
#: the methods of the MLP testbed (:mod:`atkd_lite.experiments.testbed`): an MLP has no
#: capture points, so only terms made from input gradients apply; ``tmask`` and
#: ``tmask-fma`` use the clean teacher's map as RRR's mask (:mod:`atkd_lite.methods.tmask`)
MLP_METHODS = ("student", "kd", "sals", "sals+kd", "tmask", "tmask+kd", "tmask-fma",
               "tmask-fma+kd")
#: the controls of ``controls=True``: does the *teacher's* map do the work, or would any
#: mask, or no mask at all? Each takes the tuned weight of the method it controls
CONTROLS = {
    "rrr-wrong": "RRR with its mask on the opposite corner of the image (a wrong mask), "
                 "at RRR's weight",
    "rrr-all": "RRR with every pixel as the mask (a plain input-gradient penalty, no map), "
               "at tmask's weight",
    "tmask-shuffled": "tmask with the teacher maps of other images (a wrong teacher map), "
                      "at tmask's weight",
    "rrr-centre": "RRR with its mask at the centre of the image, where no swatch ever is "
                  "(a mask that misses the shortcut), at RRR's weight",
}
#: the tuned method whose weight each control takes
CONTROL_BASE = {"rrr-wrong": "rrr", "rrr-all": "tmask", "tmask-shuffled": "tmask",
                "rrr-centre": "rrr"}
#: the methods whose weights the controls take
CONTROLLED = ("tmask", "rrr")
#: the one family of control comparisons, each method against its control (wherever
#: it is shown, the same family, so the same Holm-adjusted p)
CONTROL_PAIRS = (("tmask", "rrr-all"), ("tmask", "tmask-shuffled"), ("rrr", "rrr-wrong"))
#: The splits a weight can be chosen on, the training distribution's validation split
#: (``"val"``) or, as an oracle, validation digits with random shades (``"val_random"``).
SELECT_ON = ("val", "val_random")


def reference_methods(references: Sequence[str]) -> list[str]:
    """The references that are methods (RRR), not other data (``clean``)."""
    return [r for r in references if r in METHODS]
