"""Check functions for the book's exercises: a clear pass or a helpful hint.

Each exercise in a chapter ends with a cell that calls one function from here with the
learner's answer. A correct answer prints a line starting with ``✅ Correct:``; a wrong one
raises :class:`AssertionError` whose message says what is wrong and how to fix it. An
unsolved exercise (the stub of a student copy raises :class:`NotImplementedError`)
propagates unchanged, so the learner sees which exercise is still open.

The checks compare against something independent of the answer (``torch.nn.functional``,
``torch.nn`` layers, invariants such as "a flat image gives no edge"), never against a
copy of the solution.

One small function per exercise, one module per chapter; every check is imported here,
so the chapters call ``exercises.check_...``:

- :mod:`~atkd_lite.book.exercises.cnn_basics` — chapter 1 (CNN basics);
- :mod:`~atkd_lite.book.exercises.teacher_student` — chapter 2 (teacher and student);
- :mod:`~atkd_lite.book.exercises.distillation` — chapter 3 (knowledge distillation);
- :mod:`~atkd_lite.book.exercises.distill_loop` — the write-it-yourself training loop of
  chapters 3 and 5;
- :mod:`~atkd_lite.book.exercises.attention_maps` — chapter 4 (attention maps, ATCam);
- :mod:`~atkd_lite.book.exercises.attention_distillation` — chapter 5 (attention-guided
  distillation);
- :mod:`~atkd_lite.book.exercises.faithfulness` — chapter 6 (do the maps look at the right
  place?);
- :mod:`~atkd_lite.book.exercises.efficiency` — chapter 7 (efficiency);
- :mod:`~atkd_lite.book.exercises.shortcuts` — chapter 8 (shortcuts);
- :mod:`~atkd_lite.book.exercises.your_own_model` — chapter 9 (your own model);
- :mod:`~atkd_lite.book.exercises.feedback` — how every check reports (the pass line and
  the hint).

Examples::

    >>> from atkd_lite.book import exercises
    >>> exercises.check_fc_parameters(lambda n_in, n_out: n_in * n_out + n_out)
    ✅ Correct: n_in × n_out weights plus n_out biases; a 1000×1000 RGB image
       into 1,000 units needs 3,000,001,000 parameters.
"""

from atkd_lite.book.exercises.attention_distillation import check_keep_layers
from atkd_lite.book.exercises.attention_maps import check_fma_combination, check_mip_combination
from atkd_lite.book.exercises.cnn_basics import (
    check_conv2d_by_hand,
    check_fc_parameters,
    check_horizontal_edge_kernel,
)
from atkd_lite.book.exercises.distill_loop import (
    LOOP_TOLERANCE,  # noqa: F401 (at its old path, not in __all__ as before)
    check_distill_loop,
    distill_loop_distance,
)
from atkd_lite.book.exercises.distillation import (
    TEMPERATURE_QUESTIONS,  # noqa: F401 (at its old path, not in __all__ as before)
    check_kd_loss,
    check_softmax_with_temperature,
    check_temperature_predictions,
)
from atkd_lite.book.exercises.efficiency import check_cache_bytes
from atkd_lite.book.exercises.faithfulness import check_pointing_game_by_hand
from atkd_lite.book.exercises.shortcuts import (
    CORNERS,  # noqa: F401 (at its old path, not in __all__ as before)
    check_add_swatch,
    check_rrr_penalty,
)
from atkd_lite.book.exercises.teacher_student import check_conv_block_parameters
from atkd_lite.book.exercises.your_own_model import check_capture_points, check_channel_stats

__all__ = [
    "check_conv2d_by_hand",
    "check_fc_parameters",
    "check_horizontal_edge_kernel",
    # chapter 2
    "check_conv_block_parameters",
    # chapter 3 (and 5)
    "check_distill_loop",
    "check_kd_loss",
    "distill_loop_distance",
    "check_softmax_with_temperature",
    "check_temperature_predictions",
    # chapter 4
    "check_fma_combination",
    "check_mip_combination",
    # chapter 5
    "check_keep_layers",
    # chapter 6
    "check_pointing_game_by_hand",
    # chapter 7
    "check_cache_bytes",
    # chapter 8
    "check_add_swatch",
    "check_rrr_penalty",
    # chapter 9
    "check_capture_points",
    "check_channel_stats",
]
