"""The experiments of the book: one grid runner, results with provenance, one protocol.

- :mod:`~atkd_lite.experiments.runner` — every cell (method, student size) × every seed,
  paired by seed, from one teacher cache;
- :mod:`~atkd_lite.experiments.results` — results, provenance, and the committed
  results shipped with the package (loaded by name);
- :mod:`~atkd_lite.experiments.stats` — the statistical protocol every chapter uses;
- the experiments: :mod:`~atkd_lite.experiments.lowdata` (every method, 100 digits a
  class), :mod:`~atkd_lite.experiments.sizes` (students of three sizes from one cache),
  :mod:`~atkd_lite.experiments.faithfulness` (maps against known boxes),
  :mod:`~atkd_lite.experiments.shortcut` (a decoy in the corner: does the teacher's
  attention keep the student off it?), :mod:`~atkd_lite.experiments.overhead` (what the
  maps cost next to a forward pass);
- :mod:`~atkd_lite.experiments.profiles` — the CPU and GPU settings the chapters and
  ``atkd-lite reproduce`` run with;
- :mod:`~atkd_lite.experiments.questions` — the questions every chapter answers, each
  with its family of comparisons and its rule.

Examples::

    >>> from atkd_lite.experiments import load_results, packaged_results
    >>> "mnist5k-lowdata" in packaged_results()
    True
"""

from atkd_lite.experiments import overhead, profiles
from atkd_lite.experiments.lowdata import ALL_METHODS, reproduce, run_experiment
from atkd_lite.experiments.results import (
    PACKAGED_RESULTS,
    ExperimentResults,
    load_results,
    packaged_results,
    provenance,
)

__all__ = ["ALL_METHODS", "PACKAGED_RESULTS", "ExperimentResults", "load_results",
           "overhead", "packaged_results", "profiles", "provenance", "reproduce",
           "run_experiment"]
