"""Figures of training runs and of what models predict: learning curves, bars with their
values, curves over seeds, model footprints, confusion matrices, and class probabilities
(soft targets at several temperatures) (the book's chapters "CNN basics", "Teacher and
student" and "Knowledge distillation").

Reached as ``viz.<name>`` (:mod:`atkd_lite.book.viz`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from atkd_lite.book.viz.base import finish_figure, image_list, to_image, to_numpy

__all__ = [
    "FOOTPRINT_LABELS",
    "learning_curves",
    "bar_chart",
    "footprint_bars",
    "confusion_heatmap",
    "temperature_bars",
    "class_probabilities",
    "seed_curves",
]


#: axis labels for the metrics of a training history
_METRIC_WORDS = {"test_acc": "test accuracy", "train_acc": "training accuracy",
                 "val_acc": "validation accuracy", "train_loss": "training loss"}


def learning_curves(histories: Mapping[str, object], key: str = "test_acc",
                    ylabel: str | None = None, title: str | None = None,
                    size: tuple[float, float] = (5.5, 3.2), percent: bool | None = None) -> Figure:
    """One line per run: a metric against the epoch.

    Args:
        histories: run name -> a :class:`~atkd_lite.loop.History` (``history[key]``), a
            dict of lists, or a plain list of values (one per epoch).
        key: the metric to plot, e.g. ``"test_acc"`` or ``"train_loss"``.
        ylabel: axis label (default: ``key`` in words, e.g. "test accuracy (%)").
        title: figure title.
        size: figure size in inches.
        percent: show values as percentages (default: when ``key`` ends in ``acc``).

    Returns:
        Figure: a single axis with one line per run and a legend.

    Examples::

        >>> from atkd_lite.book.viz import learning_curves
        >>> fig = learning_curves({"student": [0.5, 0.7, 0.8], "kd": [0.6, 0.8, 0.85]})
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['student', 'kd']
    """
    if not histories:
        raise ValueError("no runs to plot; give {name: history}")
    percent = key.endswith("acc") if percent is None else percent
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    for name, h in histories.items():
        values = h if isinstance(h, (list, tuple, np.ndarray)) else h[key]
        values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        if percent:
            values = 100 * values
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=str(name))
    ax.set_xlabel("epoch")
    words = _METRIC_WORDS.get(key, key.replace("_", " "))
    ax.set_ylabel(ylabel or (f"{words} (%)" if percent else words))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, title)


def bar_chart(values: Mapping[str, float], errors: Mapping[str, float] | None = None,
              ylabel: str = "", title: str | None = None, fmt: str = "{:.3g}",
              size: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None,
              highlight: Sequence[str] = (),
              reference: Mapping[str, float] | None = None) -> Figure:
    """Bars with their values written on top (e.g. accuracy per method).

    Args:
        values: label -> value, drawn in the given order.
        errors: optional label -> error bar half-width (e.g. a standard deviation).
        ylabel: axis label.
        title: figure title.
        fmt: format of the value labels.
        size: figure size (default grows with the number of bars).
        ylim: y-axis limits (default: from zero, or fitted when all values are negative).
        highlight: labels whose bars are drawn in a second colour.
        reference: optional name -> value of horizontal dashed lines to compare the bars
            with (e.g. ``{"plain forward": 1.0}``), named in a legend.

    Returns:
        Figure: a single axis.

    Examples::

        >>> from atkd_lite.book.viz import bar_chart
        >>> fig = bar_chart({"student": 0.91, "fma": 0.93}, ylabel="accuracy")
        >>> len(fig.axes[0].patches)
        2
    """
    if not values:
        raise ValueError("no values to plot; give {label: value}")
    labels = [str(k) for k in values]
    heights = np.asarray(list(values.values()), dtype=float)
    err = None
    if errors is not None:
        err = np.asarray([errors.get(k, 0.0) for k in values], dtype=float)
    fig, ax = plt.subplots(figsize=size or (1.0 + 0.9 * len(labels), 3.2))
    plt.close(fig)
    colors = ["C1" if k in highlight else "C0" for k in labels]
    bars = ax.bar(labels, heights, yerr=err, color=colors, capsize=3)
    ax.bar_label(bars, labels=[fmt.format(v) for v in heights], fontsize=8, padding=2)
    ax.set_ylabel(ylabel)
    for i, (name, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=f"C{3 + i}", linestyle="--", linewidth=1, label=str(name))
    if reference:
        ax.legend(fontsize=8, loc="upper left")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    if len(labels) > 5:
        ax.tick_params(axis="x", labelrotation=30)
    return finish_figure(fig, title)


#: how footprint_bars labels the entries of atkd_lite.cost.footprint
FOOTPRINT_LABELS = {
    "parameters": "parameters",
    "size_kb": "size (kB)",
    "multiply_adds": "multiply-adds per image",
    "latency_ms": "CPU latency per image (ms)",
}


def _short(v: float) -> str:
    """1234567 -> '1.23M', 6274 -> '6.27k', 0.5 -> '0.5'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def footprint_bars(footprints: Mapping[str, Mapping[str, float]],
                   metrics: Sequence[str] | None = None, log: bool = True,
                   size: tuple[float, float] | None = None, title: str | None = None) -> Figure:
    """One panel per metric (parameters, size, multiply-adds, latency), one bar per model.

    Under each bar after the first: its value as a fraction (``1/46``) or a multiple
    (``3×``) of the first model's.

    Args:
        footprints: model name -> dict of metrics, e.g. from
            :func:`atkd_lite.cost.footprint`.
        metrics: which metrics to draw (default: all of the first model's, in order).
        log: logarithmic y axes (the models differ by orders of magnitude).
        size: figure size (default: 2.6 inches per panel, more for more than three
            models).
        title: figure title.

    Returns:
        Figure: one axis per metric.

    Examples::

        >>> from atkd_lite.book.viz import footprint_bars
        >>> fig = footprint_bars({"teacher": {"parameters": 288170},
        ...                       "student": {"parameters": 6274}})
        >>> fig.axes[0].get_title()
        'parameters'
    """
    if not footprints:
        raise ValueError("no models to compare; give {name: {metric: value}}")
    names = list(footprints)
    metrics = list(metrics or footprints[names[0]])
    missing = [(n, m) for n in names for m in metrics if m not in footprints[n]]
    if missing:
        raise ValueError(f"missing values (model, metric): {missing}")
    # wide enough per panel that the models' names do not run into each other
    panel = max(2.6, 0.55 + 0.62 * len(names))
    fig, axes = plt.subplots(1, len(metrics), figsize=size or (panel * len(metrics), 3.0),
                             squeeze=False)
    plt.close(fig)
    for ax, metric in zip(axes[0], metrics):
        values = np.asarray([float(footprints[n][metric]) for n in names])
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
        ratios = [_short(v) if i == 0 or values[0] == 0 or v == 0 else
                  f"{_short(v)}\n(1/{values[0] / v:.3g})" if v < values[0] else
                  f"{_short(v)}\n({v / values[0]:.3g}×)" for i, v in enumerate(values)]
        ax.bar_label(bars, labels=ratios, fontsize=8, padding=2)
        if log and (values > 0).all():
            ax.set_yscale("log")
            ax.set_ylim(values.min() / 3, values.max() * 8)
        else:
            ax.margins(y=0.3)
        ax.set_title(FOOTPRINT_LABELS.get(metric, metric), fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    return finish_figure(fig, title)


def confusion_heatmap(cm, classes: Sequence[str] | None = None, title: str | None = None,
                      percent: bool | None = None, hide_diagonal: bool = False,
                      size: float = 4.2, cmap: str = "Blues",
                      xlabel: str = "predicted class") -> Figure:
    """A confusion matrix (rows: true class, columns: predicted class) with its numbers.

    Args:
        cm: ``(K, K)`` counts (:func:`atkd_lite.book.predictions.confusion_matrix`) or
            probabilities (:func:`atkd_lite.book.predictions.soft_confusion`).
        classes: class names (default ``0 … K-1``).
        title: figure title.
        percent: write cells as percentages (default: when ``cm`` is not integer).
        hide_diagonal: leave the diagonal blank and colour only the off-diagonal cells,
            so that the (small) confusions are visible next to a large diagonal.
        size: figure width and height in inches.
        cmap: colour map.
        xlabel: what the columns are (e.g. "soft target's class" for soft targets);
            " (%)" is added when the cells are percentages.

    Returns:
        Figure: a single axis; zero cells are left blank.

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import confusion_heatmap
        >>> fig = confusion_heatmap(torch.tensor([[5, 1], [0, 4]]))
        >>> fig.axes[0].get_ylabel()
        'true class'
    """
    a = to_numpy(cm).astype(float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need a square (K, K) matrix, got shape {a.shape}")
    k = a.shape[0]
    classes = [str(c) for c in (classes if classes is not None else range(k))]
    if len(classes) != k:
        raise ValueError(f"{len(classes)} class names for a {k}×{k} matrix")
    if percent is None:
        percent = not np.allclose(a, np.round(a))
    shown = a.copy()
    if hide_diagonal:
        np.fill_diagonal(shown, np.nan)
    fig, ax = plt.subplots(figsize=(size, size))
    plt.close(fig)
    vmax = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
    ax.imshow(np.where(shown > 0, shown, np.nan), cmap=cmap, vmin=0, vmax=vmax or 1.0)
    for i in range(k):
        for j in range(k):
            v = shown[i, j]
            if not np.isfinite(v) or v <= 0:
                continue
            text = f"{100 * v:.0f}" if percent else f"{v:.0f}"
            if percent and 100 * v < 0.5:
                continue  # "0" would be noise
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 * vmax else "black")
    ax.set_xticks(range(k), classes, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel(xlabel + (" (%)" if percent else ""))
    ax.set_ylabel("true class")
    return finish_figure(fig, title)


def _prob_bars(ax, probs: np.ndarray, classes: Sequence[str], highlight: int | None,
               ymax: float | None = 1.0) -> None:
    colors = ["C1" if c == highlight else "C0" for c in range(len(probs))]
    ax.bar(range(len(probs)), probs, color=colors)
    ax.set_xticks(range(len(probs)), classes, fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    if ymax is not None:
        ax.set_ylim(0, ymax)
    ax.grid(axis="y", alpha=0.3)


def temperature_bars(logits, temperatures: Sequence[float], image=None, label: int | None = None,
                     classes: Sequence[str] | None = None, size: float = 2.2,
                     title: str | None = None) -> Figure:
    """``softmax(z / T)`` of one example's logits ``z`` for several temperatures T.

    Args:
        logits: ``(K,)`` logits of one example.
        temperatures: the T values, one panel each.
        image: optional image of the example, drawn first.
        label: optional true class, drawn in a second colour.
        classes: class names (default ``0 … K-1``).
        size: inches per panel.
        title: figure title.

    Returns:
        Figure: (image panel and) one bar panel per temperature, titled with T and the
        entropy of the distribution in bits.

    Examples::

        >>> import torch
        >>> from atkd_lite.book.viz import temperature_bars
        >>> fig = temperature_bars(torch.tensor([4.0, 1.0, 0.0]), [1, 10])
        >>> len(fig.axes)
        2
    """
    z = to_numpy(logits).astype(float)
    if z.ndim == 2 and z.shape[0] == 1:
        z = z[0]
    if z.ndim != 1:
        raise ValueError(f"give the logits of one example, shaped (K,), got {z.shape}")
    temps = [float(t) for t in temperatures]
    if not temps or min(temps) <= 0:
        raise ValueError(f"temperatures must be positive numbers, got {temperatures!r}")
    classes = [str(c) for c in (classes if classes is not None else range(len(z)))]
    n = len(temps) + (image is not None)
    fig, axes = plt.subplots(1, n, figsize=(size * n, size * 0.95), squeeze=False)
    plt.close(fig)
    axes = list(axes[0])
    if image is not None:
        ax = axes.pop(0)
        ax.imshow(to_image(to_numpy(image)), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("input" if label is None else f"label {classes[label]}", fontsize=9)
    for ax, t in zip(axes, temps):
        p = np.exp((z - z.max()) / t)
        p /= p.sum()
        entropy = -(p * np.log2(np.clip(p, 1e-300, None))).sum()
        _prob_bars(ax, p, classes, label)
        ax.set_title(f"T = {t:g}\nentropy {entropy:.2f} bits", fontsize=8)
        ax.set_xlabel("class", fontsize=7)
    axes[0].set_ylabel("probability" + ("\n(orange: label)" if label is not None else ""),
                       fontsize=8)
    return finish_figure(fig, title)


def class_probabilities(images, probs, labels: Sequence[int] | None = None,
                        classes: Sequence[str] | None = None,
                        titles: Sequence[str] | None = None, size: float = 1.9,
                        title: str | None = None, ymax: float | None = 1.0) -> Figure:
    """Images with a model's class probabilities underneath (one column per image).

    Args:
        images: ``(N, C, H, W)`` / ``(N, H, W)`` images.
        probs: ``(N, K)`` probabilities.
        labels: true classes, drawn in a second colour.
        classes: class names (default ``0 … K-1``).
        titles: one title per image.
        size: inches per column.
        title: figure title.
        ymax: upper limit of the probability axes (None: each its own).

    Returns:
        Figure: two rows (images, bars) of N axes.
    """
    ims = image_list(images)
    p = to_numpy(probs).astype(float)
    if p.ndim != 2 or len(p) != len(ims):
        raise ValueError(f"need probabilities shaped ({len(ims)}, K), got {p.shape}")
    for name, seq in (("labels", labels), ("titles", titles)):
        if seq is not None and len(seq) != len(ims):
            raise ValueError(f"{len(seq)} {name} for {len(ims)} images; give one per image")
    classes = [str(c) for c in (classes if classes is not None else range(p.shape[1]))]
    n = len(ims)
    fig, axes = plt.subplots(2, n, figsize=(size * n, 2 * size + 0.2), squeeze=False,
                             gridspec_kw={"height_ratios": [1.1, 1]})
    plt.close(fig)
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(ims[i], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
        _prob_bars(axes[1, i], p[i], classes, None if labels is None else int(labels[i]), ymax)
        axes[1, i].set_xlabel("class", fontsize=7)
    axes[1, 0].set_ylabel("probability" + ("\n(orange: label)" if labels is not None else ""),
                          fontsize=8)
    return finish_figure(fig, title)


def seed_curves(groups: Mapping[str, Sequence[Sequence[float]]], ylabel: str = "test accuracy (%)",
                title: str | None = None, percent: bool = True,
                size: tuple[float, float] = (5.5, 3.2), ylim: tuple[float, float] | None = None
                ) -> Figure:
    """Per group: the mean curve over seeds, with the range of the seeds as a band.

    Args:
        groups: name -> one sequence of per-epoch values per seed (e.g. the test
            accuracies of each seed's run).
        ylabel: axis label.
        title: figure title.
        percent: multiply the values by 100.
        size: figure size in inches.
        ylim: y-axis limits.

    Returns:
        Figure: a single axis, one line and band per group.

    Examples::

        >>> from atkd_lite.book.viz import seed_curves
        >>> fig = seed_curves({"student": [[0.5, 0.8], [0.6, 0.9]]})
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['student (2 seeds)']
    """
    if not groups:
        raise ValueError("no runs to plot; give {name: [values per epoch, per seed]}")
    fig, ax = plt.subplots(figsize=size)
    plt.close(fig)
    for i, (name, runs) in enumerate(groups.items()):
        lengths = {len(r) for r in runs}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"the runs of {name!r} must have the same, non-zero number of "
                             f"epochs, got {sorted(lengths)}")
        a = np.asarray(runs, dtype=float) * (100 if percent else 1)
        epochs = np.arange(1, a.shape[1] + 1)
        ax.plot(epochs, a.mean(0), color=f"C{i}", marker="o", ms=3,
                label=f"{name} ({len(a)} seed{'s' if len(a) > 1 else ''})")
        ax.fill_between(epochs, a.min(0), a.max(0), color=f"C{i}", alpha=0.2, lw=0)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, title)
