"""What only the book's chapters need: figures, interactive explorers, exercise checks.

- :mod:`atkd_lite.book.viz` — figures (every function returns a matplotlib Figure);
- :mod:`atkd_lite.book.widgets` — explorers with sliders where a kernel runs, a static
  figure elsewhere;
- :mod:`atkd_lite.book.exercises` — check functions for the chapters' exercises;
- :mod:`atkd_lite.book.predictions` — confusion matrices, soft targets per class,
  ambiguous examples;
- :mod:`atkd_lite.book.colab` — on Colab, the cache kept in Google Drive.

Nothing in the core (:mod:`atkd_lite`) or in :mod:`atkd_lite.experiments` imports this
layer.
"""
