"""Recipes for colour and medical data: CIFAR-10 with Wide ResNets, two MedMNIST sets.

A recipe fixes everything a run needs — the dataset, the teacher and student networks,
epochs, learning rates, augmentation, the methods — so that a reader with a GPU (Colab)
reproduces a comparison with one command::

    atkd-lite recipe cifar10-wrn --output-dir results/cifar10-wrn
    atkd-lite recipe bloodmnist --output-dir results/bloodmnist

:func:`run_recipe` trains the teacher once (its checkpoint is kept in the output folder,
so an interrupted session resumes), standardises the images with the training split's
own per-channel statistics, then distils a fresh, seeded student for every method and
seed (paired seeds, as everywhere in the book) and saves the results with their
provenance after every run; runs already in the folder are not repeated.

:data:`RECIPES` holds the recipes; :data:`PUBLISHED` the published CIFAR numbers they
are meant to be read beside, each marked with how it was checked
(:func:`published_markdown`). The recipes' schedules are short (minutes per run on a
Colab T4), far from the papers' 200 epochs, so expect lower accuracies than published;
the comparison between methods on paired seeds is the point. The learning rates and
weights were not tuned on CIFAR-10 or MedMNIST (the attention weights are the ones
tuned on the embedded digits).

Defined in the book's chapter "Your own model".
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from atkd_lite.checkpoints import load_checkpoint, save_checkpoint
from atkd_lite.checks import check_int
from atkd_lite.cost import count_parameters
from atkd_lite.data import load_dataset
from atkd_lite.device import get_device, seed_everything
from atkd_lite.engine import evaluate, train_model
from atkd_lite.experiments.results import ExperimentResults, load_results, provenance
from atkd_lite.experiments.runner import ExperimentSetup, GridCell, run_grid
from atkd_lite.methods import METHODS
from atkd_lite.models import build_model

__all__ = ["PUBLISHED", "PUBLISHED_SOURCES", "RECIPES", "Recipe", "beside_published",
           "published_markdown", "recipe_settings", "run_recipe"]


@dataclass(frozen=True)
class Recipe:
    """A complete setting: data, networks, schedule, methods.

    Attributes:
        name: the recipe's name (``atkd-lite recipe NAME``).
        dataset: a :func:`~atkd_lite.data.load_dataset` name.
        teacher, student: model configs for :func:`~atkd_lite.models.build_model`
            (``in_channels`` and ``num_classes`` are filled in from the data).
        teacher_epochs, student_epochs: epochs.
        teacher_lr, lr: peak learning rates (teacher: warm-up and cosine; students:
            one-cycle), AdamW.
        weight_decay: AdamW's decoupled weight decay (teacher and students).
        batch_size: images per step.
        augment, flip: random crop with ``augment`` pixels of padding and horizontal
            flips, on the device (teacher and students).
        methods: distillation methods, in order.
        seeds: default seeds.
        about: one line on what it is.
    """

    name: str
    dataset: str
    teacher: dict
    student: dict
    teacher_epochs: int
    student_epochs: int
    teacher_lr: float
    lr: float
    weight_decay: float
    batch_size: int
    augment: int
    flip: bool
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    about: str


_METHODS = ("student", "kd", "at", "fma", "mip", "sals", "fma+kd", "sals+kd")

#: what the two MedMNIST recipes share: the book's CNN teacher and small student, and
#: their schedule
_MEDMNIST = dict(
    teacher={"arch": "cnn", "widths": [32, 64, 128], "convs_per_stage": 2, "dropout": 0.1},
    student={"arch": "cnn", "widths": [8, 16, 32], "convs_per_stage": 1},
    teacher_epochs=15, student_epochs=30, teacher_lr=3e-3, lr=3e-2, weight_decay=5e-4,
    batch_size=128, augment=2, methods=_METHODS, seeds=(0, 1, 2))

#: the recipes by name
RECIPES: dict[str, Recipe] = {
    "cifar10-wrn": Recipe(
        name="cifar10-wrn", dataset="cifar10",
        teacher={"arch": "wrn", "depth": 16, "width": 2},
        student={"arch": "wrn", "depth": 16, "width": 1},
        teacher_epochs=30, student_epochs=20, teacher_lr=5e-3, lr=5e-3, weight_decay=5e-2,
        batch_size=128, augment=4, flip=True, methods=_METHODS, seeds=(0,),
        about="CIFAR-10, WRN-16-2 teaches WRN-16-1 (attention transfer's CIFAR setting, "
              "short schedule)"),
    "bloodmnist": Recipe(
        name="bloodmnist", dataset="bloodmnist", flip=True,
        about="BloodMNIST (8 blood-cell types, 28x28 colour), the book's CNN teacher and "
              "small student", **_MEDMNIST),
    "pneumoniamnist": Recipe(
        name="pneumoniamnist", dataset="pneumoniamnist", flip=False,
        about="PneumoniaMNIST (chest X-rays, normal or pneumonia, 28x28 grey), the book's "
              "CNN teacher and small student", **_MEDMNIST),
}

#: Published CIFAR numbers to read the recipes beside, top-1 test accuracy (%), with the
#: source and how it was checked ("verified": confirmed in a second, independent copy;
#: "authors' repository": read in the authors' own README). Figures that could not be
#: checked against a source (the same table's KD and AT+KD columns) are left out.
PUBLISHED: dict[str, list[dict]] = {
    "cifar10-wrn": [
        {"method": "teacher (WRN-16-2)", "accuracy": 93.69, "checked": "verified"},
        {"method": "student (WRN-16-1)", "accuracy": 91.23, "checked": "verified"},
        {"method": "at", "accuracy": 92.07, "checked": "verified"},
    ],
    "cifar100-vgg13-mobilenetv2": [
        {"method": "teacher (vgg13)", "accuracy": 74.64, "checked": "authors' repository"},
        {"method": "student (MobileNetV2)", "accuracy": 64.60,
         "checked": "authors' repository"},
        {"method": "kd", "accuracy": 67.37, "checked": "authors' repository"},
        {"method": "at", "accuracy": 59.40, "checked": "authors' repository"},
    ],
}

#: where the published numbers come from
PUBLISHED_SOURCES = {
    "cifar10-wrn": "Zagoruyko & Komodakis (ICLR 2017), Table 1: CIFAR-10, WRN-16-2 → "
                   "WRN-16-1, median of 5 runs, 200 epochs of SGD (100 − the test error)",
    "cifar100-vgg13-mobilenetv2": "Tian, Krishnan & Isola (CRD, ICLR 2020), RepDistiller's "
                                  "CIFAR-100 table: vgg13 → MobileNetV2, 240 epochs",
}


def published_markdown(key: str = "cifar10-wrn") -> str:
    """A markdown table of :data:`PUBLISHED` numbers, with their source and checks.

    Examples::

        >>> print(published_markdown().splitlines()[2])
        | teacher (WRN-16-2) | 93.69 | verified |
    """
    if key not in PUBLISHED:
        raise ValueError(f"no published numbers for {key!r}; choose from {list(PUBLISHED)}")
    rows = [f"| {r['method']} | {r['accuracy']:.2f} | {r['checked']} |" for r in PUBLISHED[key]]
    return ("| method | published accuracy (%) | checked |\n|---|---|---|\n" + "\n".join(rows)
            + f"\n\nSource: {PUBLISHED_SOURCES[key]}.")


def beside_published(results: ExperimentResults, key: str = "cifar10-wrn") -> str:
    """A markdown table: this run's accuracy per method (mean over seeds) beside the
    published one, where the papers report that method.

    The teacher row is the run's teacher. The schedules differ (minutes here, 200 epochs
    in the paper), so read the columns for the *order* of the methods, not for equal
    numbers.
    """
    published = {r["method"].split(" ")[0]: r for r in PUBLISHED[key]}
    rows = [("teacher", 100 * results.teacher["test_acc"], published.get("teacher"))]
    rows += [(r["method"], 100 * r["mean"], published.get(r["method"]))
             for r in results.summary()]
    lines = ["| method | this run (%) | seeds | published (%) | checked |", "|---|---|---|---|---|"]
    seeds = {r["method"]: r["n"] for r in results.summary()}
    for method, ours, pub in rows:
        acc = "" if pub is None else f"{pub['accuracy']:.2f}"
        checked = "" if pub is None else pub["checked"]
        lines.append(f"| {method} | {ours:.2f} | {seeds.get(method, 1)} | {acc} | {checked} |")
    return "\n".join(lines) + f"\n\nPublished: {PUBLISHED_SOURCES[key]}.\n"


def recipe_settings(name: str, **changes) -> Recipe:
    """The recipe ``name`` with some fields changed (e.g. fewer epochs for a trial).

    Raises:
        ValueError: an unknown recipe (the known ones are listed) or field.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    fields = asdict(RECIPES[name])
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValueError(f"unknown recipe field(s) {unknown}; the fields are {list(fields)}")
    changes = {k: tuple(v) if k in ("methods", "seeds") else v for k, v in changes.items()}
    return Recipe(**{**fields, **changes})


def _describe(config: dict) -> str:
    """A network's usual name from its config: ``WRN-16-1``, ``CNN 8-16-32``."""
    if config.get("arch") == "wrn":
        return f"WRN-{config['depth']}-{config['width']}"
    return "CNN " + "-".join(str(w) for w in config.get("widths", []))


def _model(config: dict, data) -> torch.nn.Module:
    return build_model({**config, "in_channels": data.in_channels,
                        "num_classes": data.num_classes})


def _teacher(recipe: Recipe, train, test, folder: Path | None, device, progress: bool):
    """The recipe's teacher: loaded from ``folder/teacher.pt`` when it was trained with
    the same settings, else trained (seed 0) and saved there."""
    settings = {"recipe": recipe.name, "teacher": recipe.teacher,
                "epochs": recipe.teacher_epochs, "lr": recipe.teacher_lr,
                "weight_decay": recipe.weight_decay, "augment": recipe.augment,
                "flip": recipe.flip, "train": train.name, "train_size": len(train),
                "normalize": [list(v) for v in train.normalize]}
    path = None if folder is None else folder / "teacher.pt"
    if path is not None and path.exists():
        try:
            teacher, meta = load_checkpoint(path)
            if meta.get("recipe_settings") == settings:
                return teacher.to(device).eval(), meta.get("train_time_s")
        except Exception:  # damaged or another version: train again
            pass
    seed_everything(0)
    teacher = _model(recipe.teacher, train)
    t0 = time.perf_counter()
    train_model(teacher, train, test, epochs=recipe.teacher_epochs, lr=recipe.teacher_lr,
                weight_decay=recipe.weight_decay, batch_size=recipe.batch_size,
                augment=recipe.augment, flip=recipe.flip, device=device, seed=0,
                progress=progress)
    train_s = time.perf_counter() - t0
    if path is not None:
        save_checkpoint(path, teacher, recipe_settings=settings, train_time_s=train_s)
    return teacher.eval(), train_s


#: what must be equal for runs found in a results folder to be kept (resumed)
_SAME_RUN_KEYS = ("device", "versions")


def _resumable_runs(folder: Path, settings: dict, prov: dict) -> dict:
    """The runs of an interrupted session in ``folder`` that this one can keep, by
    (method, seed): only runs written by the same code (the same commit, no uncommitted
    changes on either side), versions and device, with the same settings. Anything else
    is said (a warning) and run again."""
    try:
        old = load_results(folder)
    except (OSError, ValueError) as err:  # unreadable, damaged or edited: never adopted
        reason = str(err)
    else:
        mine, theirs = prov.get("git") or {}, old.provenance.get("git") or {}
        same_settings = ({k: v for k, v in old.settings.items() if k not in ("methods", "seeds")}
                         == {k: v for k, v in settings.items()
                             if k not in ("methods", "seeds")})
        if not same_settings:
            reason = "its settings differ from this recipe's"
        elif theirs.get("commit") != mine.get("commit"):  # None twice: an installed package
            reason = (f"its runs come from commit {theirs.get('commit')}, this code is "
                      f"{mine.get('commit')}")
        elif mine.get("dirty") or theirs.get("dirty"):
            reason = "uncommitted changes (then or now) make the commit an inexact record"
        elif any(old.provenance.get(k) != prov.get(k) for k in _SAME_RUN_KEYS):
            reason = "its runs were made with other library versions or on another device"
        else:
            return {(r["method"], r["seed"]): r for r in old.runs}
    warnings.warn(f"not resuming from {folder / 'results.json'} ({reason}); every run "
                  "of the recipe is made again and the file is replaced", stacklevel=3)
    return {}


def run_recipe(name: str | Recipe, *, methods: Sequence[str] | None = None,
               seeds: Sequence[int] | None = None, root=None, output_dir=None, device=None,
               progress: bool = True, command: str | None = None,
               **changes) -> ExperimentResults:
    """Run a recipe: train (or load) its teacher, then every method × seed.

    Args:
        name (str or Recipe): a name from :data:`RECIPES`, or a :class:`Recipe`.
        methods, seeds (optional): override the recipe's.
        root: the data cache (default :func:`~atkd_lite.files.cache_dir`).
        output_dir (optional): results (``results.json`` …) and ``teacher.pt`` are
            written there after every run; runs already saved there with the same
            settings are kept, not repeated (an interrupted Colab session resumes).
        device: cuda → mps → cpu by default.
        progress (bool): progress bars and one line per run.
        command (str, optional): recorded in the provenance.
        **changes: other recipe fields, e.g. ``student_epochs=2`` for a trial.

    Returns:
        ExperimentResults: one run per method and seed; ``teacher`` holds the teacher's
        accuracy, parameters and training time; ``settings`` the whole recipe.

    Raises:
        ValueError: an unknown recipe, field or method.
        DatasetUnavailableError: the data cannot be downloaded (names the offline sets).
    """
    if isinstance(name, Recipe):
        recipe = Recipe(**{**asdict(name), **changes})
    else:
        recipe = recipe_settings(name, **changes)
    if methods is not None or seeds is not None:
        recipe = Recipe(**{**asdict(recipe),
                           "methods": tuple(methods or recipe.methods),
                           "seeds": tuple(recipe.seeds if seeds is None else seeds)})
    unknown = [m for m in recipe.methods if m not in METHODS]
    if unknown or not recipe.methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    for s in recipe.seeds:
        check_int("seed", s, minimum=0)
    if not recipe.seeds:
        raise ValueError("give at least one seed")
    dev = get_device(device)
    t_start = time.perf_counter()
    train = load_dataset(recipe.dataset, "train", root=root)
    test = load_dataset(recipe.dataset, "test", root=root)
    train = train.normalized()  # the statistics of the data actually used
    test = test.normalized(train.normalize)
    folder = None if output_dir is None else Path(output_dir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    teacher, teacher_s = _teacher(recipe, train, test, folder, dev, progress)
    settings = {**asdict(recipe), "methods": list(recipe.methods),
                "seeds": list(recipe.seeds), "normalize": [list(v) for v in train.normalize],
                "train_name": train.name, "train_size": len(train), "test_name": test.name,
                "test_size": len(test), "epochs": recipe.student_epochs,
                "student_size": _describe(recipe.student)}
    setup = ExperimentSetup(
        dev, provenance(command, dev), train, test, teacher,
        {"test_acc": evaluate(teacher, test, device=dev),
         "parameters": count_parameters(teacher), "train_time_s": teacher_s},
        t_start, recipe.dataset)
    done = {}
    if folder is not None and (folder / "results.json").exists():
        done = _resumable_runs(folder, settings, setup.provenance)
    cells = [GridCell(method, student=functools.partial(_model, recipe.student))
             for method in recipe.methods]
    # one grid runner for every experiment: the recipe's own student network, its
    # optimiser settings, and the runs an interrupted session already made
    return run_grid(setup, settings, cells, recipe.seeds, recipe.student_epochs,
                    output_dir=folder, progress=progress, done=done, lr=recipe.lr,
                    weight_decay=recipe.weight_decay, batch_size=recipe.batch_size,
                    augment=recipe.augment, flip=recipe.flip)
