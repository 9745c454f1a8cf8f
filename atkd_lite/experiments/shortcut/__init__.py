"""Shortcuts: can the teacher's eyes keep the student from learning the wrong thing?

On the decoy digits (:func:`atkd_lite.data.decoy_mnist`, the recipe of Ross, Hughes &
Doshi-Velez 2017) every training image has a grey swatch in a corner whose shade is the
label's with probability ρ: a shortcut that predicts the training labels without looking
at the digit. At test time the shade is random, so a student that learnt the swatch
instead of the digit loses accuracy. The teacher never saw a swatch (it is the book's
teacher, trained on the clean digits), so its eyes are on the digit; attention-guided
distillation asks the student to look where the teacher looks. Does that protect the
student from the shortcut?

This package

- refuses a teacher that itself reads the swatch
  (:func:`~atkd_lite.experiments.shortcut.scoring.check_teacher`: its accuracy on the
  *flipped* split, where the swatch always names a wrong class, must not fall more than
  ``max_teacher_gap`` below its accuracy on clean digits);
- adds the reference of the explanation-regularisation literature,
  :class:`~atkd_lite.methods.rrr.RRRDistiller` ("right for the right reasons": the student's input gradient is
  penalised inside the *true* swatch mask, which a practitioner would not have);
- runs the whole experiment, :func:`~atkd_lite.experiments.shortcut.grid.run_shortcut`,
  on the one grid runner: for every ρ, the attention weight of each method tuned on a
  validation split drawn from the *training* distribution
  (:func:`~atkd_lite.experiments.shortcut.grid.tune_weights`), then every method × seed,
  each student scored on the random-shade test split (the headline), the flipped split,
  the clean split, and by where its maps put their mass (swatch or digit;
  :func:`~atkd_lite.experiments.shortcut.scoring.swatch_scores`); plus the student
  trained on the same digits without swatches (the ceiling). From the command line::

      atkd-lite shortcut --output-dir results/decoy-shortcut

- reads committed results back and states what they say with the book's one statistical
  protocol (:func:`~atkd_lite.experiments.shortcut.analysis.shortcut_verdicts`,
  :func:`~atkd_lite.experiments.shortcut.analysis.accuracy_table`,
  :func:`~atkd_lite.experiments.shortcut.report.shortcut_markdown`), next to the numbers
  the original papers report (:data:`~atkd_lite.experiments.shortcut.report.PUBLISHED`).
  A grid stopped part-way is stated as such:
  :func:`~atkd_lite.experiments.shortcut.status.grid_status` says which ρ and references
  have runs, every table and verdict uses only those
  (:func:`~atkd_lite.experiments.shortcut.status.rhos_with_runs`), and
  :func:`~atkd_lite.experiments.shortcut.status.completion_command` gives the command
  that runs the whole grid; :func:`~atkd_lite.experiments.shortcut.grid.merge_shortcut`
  joins parts of one grid run side by side (one ρ per core).

Every name is importable from here, ``from atkd_lite.experiments.shortcut import ...``;
each lives in one module of the package:

- :mod:`~atkd_lite.experiments.shortcut.design` — the methods, references, splits, map
  kinds and controls of a grid;
- :mod:`~atkd_lite.experiments.shortcut.scoring` — the teacher check and where a
  model's maps look;
- :mod:`~atkd_lite.experiments.shortcut.grid` — the controls' cells, the tuning, running
  the grid and merging its parts;
- :mod:`~atkd_lite.experiments.shortcut.status` — loading results, what of the planned
  grid ran, the command that completes it;
- :mod:`~atkd_lite.experiments.shortcut.analysis` — values, verdicts, the share won
  back, the controls, the answers in words;
- :mod:`~atkd_lite.experiments.shortcut.report` — the Markdown tables and reports.

Defined in the book's chapter "Shortcuts".

Examples::

    >>> import torch, atkd_lite as ak
    >>> from atkd_lite.data import decoy_mnist
    >>> from atkd_lite.experiments.shortcut import RRRDistiller
    >>> train = decoy_mnist("train").per_class(2)
    >>> RRR = RRRDistiller.for_data(train)          # bound to the true swatch masks
    >>> d = RRR(ak.student_cnn("tiny"), ak.teacher_cnn().eval(), beta=10.0)
    >>> logits, terms = d.forward_train(train.float_images()[:4], train.labels[:4],
    ...                                 torch.arange(4))
    >>> sorted(terms)
    ['loss', 'loss_att', 'loss_ce']
"""

from atkd_lite.experiments.shortcut.analysis import (
    accuracy_table,
    control_comparisons,
    prior_clause,
    shortcut_values,
    shortcut_verdicts,
    switched_off,
    teacher_mask_answer,
    tuning_hindsight,
    won_back,
)
from atkd_lite.experiments.shortcut.design import (
    CONTROL_PAIRS,
    CONTROLS,
    DEFAULT_METHODS,
    EVAL_SPLITS,
    MAP_KINDS,
    MLP_METHODS,
    REFERENCES,
    SELECT_ON,
)
from atkd_lite.experiments.shortcut.grid import (
    choose_weight,
    control_cells,
    merge_shortcut,
    run_shortcut,
    tune_weights,
    with_mask_boxes,
)
from atkd_lite.experiments.shortcut.report import (
    PUBLISHED,
    chosen_weights_markdown,
    headline_markdown,
    map_markdown,
    published_markdown,
    shortcut_markdown,
    tuning_markdown,
    won_back_markdown,
)
from atkd_lite.experiments.shortcut.scoring import (
    ShortcutTeacherError,
    check_teacher,
    map_kinds_for,
    swatch_scores,
)
from atkd_lite.experiments.shortcut.status import (
    completion_command,
    grid_status,
    load_shortcut,
    rhos_with_runs,
)
from atkd_lite.methods import RRRDistiller  # noqa: F401 (its first home: chapter 8, old code)

# the first names of two helpers, which tests reach here
_choose = choose_weight
_with_mask_boxes = with_mask_boxes

__all__ = [
    "CONTROLS",
    "CONTROL_PAIRS",
    "DEFAULT_METHODS",
    "EVAL_SPLITS",
    "MAP_KINDS",
    "MLP_METHODS",
    "PUBLISHED",
    "REFERENCES",
    "SELECT_ON",
    "ShortcutTeacherError",
    "accuracy_table",
    "check_teacher",
    "completion_command",
    "grid_status",
    "headline_markdown",
    "control_cells",
    "control_comparisons",
    "load_shortcut",
    "map_kinds_for",
    "map_markdown",
    "merge_shortcut",
    "published_markdown",
    "rhos_with_runs",
    "run_shortcut",
    "shortcut_markdown",
    "shortcut_values",
    "shortcut_verdicts",
    "swatch_scores",
    "tune_weights",
    "tuning_hindsight",
    "tuning_markdown",
    "chosen_weights_markdown",
    "switched_off",
    "prior_clause",
    "teacher_mask_answer",
    "won_back",
    "won_back_markdown",
]
