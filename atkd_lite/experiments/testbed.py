"""Where the decoy shortcut bites: which student learns the swatch instead of the digit.

An experiment that asks whether the teacher's attention keeps a student off a shortcut
can only answer if, without help, the student takes the shortcut. On the decoy digits
(:func:`~atkd_lite.data.decoy_mnist`) the book's small CNN hardly does: its global
pooling makes it read shapes, and it loses a few points on random shades. The testbed is
chosen here, before any attention term is tried: each candidate student is trained, from
the same seeded initialisation, on the decoy training digits (ρ = 1: the swatch gives
the label) and on the same digits without the swatch, and both are scored on test digits
with a random shade. The *cost of the shortcut* is the paired difference clean − decoy;
the literature's plain networks lose 20 to 45 points (Ross et al.: an MLP at 51.6 % against
96.1 %).

Examples::

    >>> from atkd_lite.experiments.testbed import run_testbed, candidate_rows
    >>> res = run_testbed(candidates=["mlp-256"], seeds=[0, 1], epochs=1, per_class=5,
    ...                   device="cpu", progress=False)
    >>> row = candidate_rows(res)[0]
    >>> row["candidate"], row["n"]
    ('mlp-256', 2)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from atkd_lite.cost import count_parameters
from atkd_lite.data import decoy_mnist
from atkd_lite.device import get_device, seed_everything
from atkd_lite.engine import evaluate, train_model
from atkd_lite.experiments.results import ExperimentResults, provenance
from atkd_lite.experiments.stats import paired_comparison, paired_values
from atkd_lite.models import build_student

__all__ = ["CANDIDATES", "Candidate", "run_testbed", "candidate_markdown", "candidate_rows"]


@dataclass(frozen=True)
class Candidate:
    """A student for the testbed: how to build it and train it."""

    build: object
    lr: float
    weight_decay: float = 5e-4
    description: str = ""


#: the candidate students, by name
CANDIDATES: dict[str, Candidate] = {
    "mlp-512x2": Candidate(lambda: build_student("mlp-512x2"), 1e-3,
                           description="MLP 784-512-512-10 on raw pixels"),
    "mlp-256": Candidate(lambda: build_student("mlp-256"), 1e-3,
                         description="MLP 784-256-10 on raw pixels (Ross et al.'s shape)"),
    "small-cnn": Candidate(lambda: build_student("small"), 3e-3,
                           description="the book's small CNN (global pooling)"),
}


def run_testbed(candidates: Sequence[str] = tuple(CANDIDATES), seeds: Sequence[int] = (0, 1, 2),
                epochs: int = 30, swatch: int = 4, per_class: int | None = None,
                output_dir=None, device=None, progress: bool = True,
                command: str | None = None) -> ExperimentResults:
    """Train every candidate on decoy (ρ = 1) and on clean training digits, per seed.

    Args:
        candidates: names from :data:`CANDIDATES`.
        seeds: one run per candidate, training set and seed (the seed fixes the
            initialisation and the batch order: decoy and clean runs are paired).
        epochs: training epochs (AdamW, warm-up and cosine decay, as :func:`~atkd_lite.engine.train_model`).
        swatch: the swatch side in pixels.
        per_class: training digits per class (None: all 4,000).
        output_dir: save the results there after every run.
        device: where to train.
        progress: one line per run.
        command: recorded in the provenance.

    Returns:
        ExperimentResults: runs with ``method`` = ``"<candidate>/decoy"`` or
        ``"<candidate>/clean"``, ``candidate``, ``trained_on``, ``seed``, ``test_acc``
        (random shades) and ``clean_acc`` (the test digits without a swatch).

    Raises:
        ValueError: an unknown candidate, or no seed.
    """
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or not candidates:
        raise ValueError(f"unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
    if not list(seeds):
        raise ValueError("give at least one seed")
    t_start = time.perf_counter()
    dev = get_device(device)
    decoy = decoy_mnist("train", rho=1.0, swatch=swatch)
    if per_class is not None:
        decoy = decoy.per_class(per_class, seed=0)
    sets = {"decoy": decoy, "clean": decoy.without_swatch()}
    test, clean_test = decoy_mnist("test", swatch=swatch), decoy_mnist("clean", swatch=swatch)
    settings = {"experiment": "decoy-testbed", "candidates": list(candidates),
                "student_size": "candidate", "train_name": decoy.name,
                "test_name": test.name,
                "descriptions": {c: CANDIDATES[c].description for c in candidates},
                "seeds": list(seeds), "epochs": epochs, "swatch": swatch, "rho": 1.0,
                "per_class": per_class, "train_size": len(decoy),
                "scored_on": "decoy test digits with a random shade (and without a swatch)"}
    results = ExperimentResults(settings=settings, teacher={}, provenance=provenance(command, dev))
    for name in candidates:
        cand = CANDIDATES[name]
        for trained_on, data in sets.items():
            for seed in seeds:
                seed_everything(seed)
                model = cand.build()
                history = train_model(model, data, None, epochs=epochs, lr=cand.lr,
                                      weight_decay=cand.weight_decay, seed=seed,
                                      progress=False, device=dev)
                run = {"method": f"{name}/{trained_on}", "candidate": name,
                       "trained_on": trained_on, "seed": seed,
                       "test_acc": evaluate(model, test, device=dev),
                       "clean_acc": evaluate(model, clean_test, device=dev),
                       "parameters": count_parameters(model),
                       "time_per_epoch_s": statistics.median(history["time_s"])}
                results.runs.append(run)
                results.provenance["wall_time_s"] = time.perf_counter() - t_start
                if output_dir is not None:
                    results.save(output_dir)
                if progress:
                    print(f"{name:10s} {trained_on:5s} seed {seed}: random shades "
                          f"{100 * run['test_acc']:.1f}%", flush=True)
    return results


def candidate_rows(results: ExperimentResults) -> list[dict]:
    """Per candidate: accuracy on random shades trained on decoy and on clean digits, and
    the cost of the shortcut (clean − decoy, paired by seed) with its t interval."""
    values = paired_values(results)
    rows = []
    for name in results.settings["candidates"]:
        decoy, clean = values[f"{name}/decoy"], values[f"{name}/clean"]
        cmp = paired_comparison(clean, decoy)
        rows.append({"candidate": name, "n": cmp["n"], "decoy": cmp["mean_b"],
                     "clean": cmp["mean_a"], "cost": cmp["diff"], "ci_low": cmp["ci_low"],
                     "ci_high": cmp["ci_high"]})
    return rows


def candidate_markdown(results: ExperimentResults, threshold: float = 0.20) -> str:
    """The testbed table: whether each candidate's mean cost reaches ``threshold`` (the
    issue's criterion), and whether its whole 95 % interval does."""
    lines = ["| student | trained on decoy | trained clean | cost of the shortcut (95 % CI) "
             f"| mean ≥ {100 * threshold:.0f} points | interval ≥ {100 * threshold:.0f} |",
             "|---|---|---|---|---|---|"]
    for r in candidate_rows(results):
        lines.append(f"| {r['candidate']} | {100 * r['decoy']:.1f} % | {100 * r['clean']:.1f} % "
                     f"| {100 * r['cost']:.1f} ({100 * r['ci_low']:.1f} to "
                     f"{100 * r['ci_high']:.1f}) | {'yes' if r['cost'] >= threshold else 'no'} "
                     f"| {'yes' if r['ci_low'] >= threshold else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m atkd_lite.experiments.testbed [output folder]
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "results/decoy-testbed"
    res = run_testbed(seeds=range(5), output_dir=out,
                      command=f"python -m atkd_lite.experiments.testbed {out}")
    print(candidate_markdown(res))
