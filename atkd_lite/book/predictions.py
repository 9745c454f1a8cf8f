"""What a classifier's outputs say: confusions, soft targets per class, ambiguous examples.

- :func:`confusion_matrix` — counts of (true class, predicted class) pairs;
- :func:`most_confused` — the largest off-diagonal entries of a confusion matrix;
- :func:`soft_confusion` — the mean softened probabilities ``softmax(z / T)`` per true
  class: the "dark knowledge" a teacher passes on, class by class;
- :func:`ambiguous` — the examples a model is least sure about (largest runner-up
  probability, or largest entropy).

Inputs are torch tensors (or anything :func:`torch.as_tensor` takes): logits ``(N, K)``,
predicted classes or labels ``(N,)``. Results are CPU tensors.

Defined in the book's chapters "Teacher and student" (confusion matrix) and "Knowledge
distillation" (soft targets, ambiguous digits).

Examples::

    >>> import torch
    >>> from atkd_lite.book.predictions import confusion_matrix, most_confused
    >>> cm = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]))
    >>> cm.tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    >>> most_confused(cm, k=1)
    [(2, 1, 1)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ambiguous", "confusion_matrix", "most_confused", "soft_confusion"]


def _labels(labels, what: str = "labels") -> torch.Tensor:
    y = torch.as_tensor(labels).detach().cpu()
    if y.dim() != 1:
        raise ValueError(f"{what} must be a 1-D tensor of class indices, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{what} must be integer class indices, got dtype {y.dtype}")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{what} must be >= 0, got {int(y.min())}")
    return y.long()


def _logits(logits) -> torch.Tensor:
    z = torch.as_tensor(logits).detach().cpu()
    if z.dim() != 2 or not z.is_floating_point():
        raise ValueError(f"logits must be a float tensor shaped (N, K), got "
                         f"{tuple(z.shape)} {z.dtype}; use atkd_lite.predict(model, data)")
    return z.float()


def _num_classes(num_classes, *tensors) -> int:
    seen = max((int(t.max()) + 1 for t in tensors if len(t)), default=0)
    if num_classes is None:
        if seen == 0:
            raise ValueError("no labels given and num_classes unknown; pass num_classes")
        return seen
    if seen > num_classes:
        raise ValueError(f"a class index {seen - 1} is >= num_classes={num_classes}")
    return int(num_classes)


def confusion_matrix(predictions, labels, num_classes: int | None = None) -> torch.Tensor:
    """Counts of (true class, predicted class): ``cm[i, j]`` = images of class i predicted j.

    Args:
        predictions: predicted classes ``(N,)``, or logits ``(N, K)`` (their argmax is
            taken, and K is the number of classes).
        labels: true classes ``(N,)``.
        num_classes (int, optional): K; default: from the logits, else the largest
            index seen plus one.

    Returns:
        Tensor: ``(K, K)`` int64; rows are true classes, columns predictions. The
        diagonal holds the correct predictions, ``cm.sum()`` is N.

    Raises:
        ValueError: different lengths, negative or too large class indices.

    Examples::

        >>> import torch
        >>> confusion_matrix(torch.tensor([[2.0, 0.1], [0.3, 1.0]]), torch.tensor([1, 1]))
        tensor([[0, 0],
                [1, 1]])
    """
    p = torch.as_tensor(predictions).detach().cpu()
    if p.dim() == 2:
        if num_classes is None:
            num_classes = p.shape[1]
        elif num_classes != p.shape[1]:
            raise ValueError(f"logits have {p.shape[1]} classes but num_classes={num_classes}")
        p = p.argmax(1)
    p = _labels(p, "predictions")
    y = _labels(labels)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions but {len(y)} labels; give one per image")
    k = _num_classes(num_classes, p, y)
    return torch.bincount(y * k + p, minlength=k * k).view(k, k)


def most_confused(cm, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal entries of a confusion matrix.

    Returns:
        list of ``(true class, predicted class, count)``, largest count first (ties by
        true class, then predicted class); entries with count 0 are left out.
    """
    cm = torch.as_tensor(cm).detach().cpu()
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"need a square (K, K) confusion matrix, got shape {tuple(cm.shape)}")
    pairs = [(int(cm[i, j]), i, j) for i in range(cm.shape[0]) for j in range(cm.shape[1])
             if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [(i, j, c) for c, i, j in pairs[:k]]


def soft_confusion(logits, labels, T: float = 1.0) -> torch.Tensor:
    """Mean softened probabilities per true class: row i = mean of ``softmax(z / T)`` over
    the images of class i.

    Where :func:`confusion_matrix` counts hard decisions, this shows how much probability
    a model gives to each wrong class on average: which digits it finds similar.

    Args:
        logits: ``(N, K)``.
        labels: ``(N,)`` true classes.
        T (float): temperature (> 0); 1 = the ordinary softmax.

    Returns:
        Tensor: ``(K, K)`` float32, each row sums to 1 (a row of zeros for a class
        without images).
    """
    z = _logits(logits)
    y = _labels(labels)
    if len(z) != len(y):
        raise ValueError(f"{len(z)} logits but {len(y)} labels; give one per image")
    if isinstance(T, bool) or not isinstance(T, (int, float)) or T <= 0:
        raise ValueError(f"temperature T must be a positive number, got {T!r}")
    k = z.shape[1]
    _num_classes(k, y)
    probs = F.softmax(z / T, dim=1)
    sums = torch.zeros(k, k).index_add_(0, y, probs)
    counts = torch.bincount(y, minlength=k).clamp_min(1).float()
    return sums / counts[:, None]


def ambiguous(logits, k: int = 8, by: str = "runner_up", T: float = 1.0,
              labels=None, correct_only: bool = False) -> torch.Tensor:
    """Indices of the ``k`` examples a model is least sure about, least sure first.

    Args:
        logits: ``(N, K)``.
        k (int): how many (fewer if there are fewer candidates).
        by (str): ``"runner_up"`` — the probability of the second most likely class
            (large: two classes compete); ``"entropy"`` — the entropy of the whole
            distribution (large: mass spread over many classes).
        T (float): temperature of the softmax the score is computed from.
        labels (optional): ``(N,)`` true classes; needed for ``correct_only``.
        correct_only (bool): only examples whose top class is the label (ambiguous
            but right: soft targets carrying information beyond the label).

    Returns:
        Tensor: int64 indices into the N examples.
    """
    z = _logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if isinstance(T, bool) or not isinstance(T, (int, float)) or T <= 0:
        raise ValueError(f"temperature T must be a positive number, got {T!r}")
    probs = F.softmax(z / T, dim=1)
    if by == "runner_up":
        score = probs.topk(2, dim=1).values[:, 1]
    elif by == "entropy":
        score = -(probs * probs.clamp_min(1e-30).log()).sum(1)
    else:
        raise ValueError(f"unknown by={by!r}; use 'runner_up' or 'entropy'")
    candidates = torch.arange(len(z))
    if correct_only:
        if labels is None:
            raise ValueError("correct_only=True needs the labels")
        y = _labels(labels)
        if len(y) != len(z):
            raise ValueError(f"{len(z)} logits but {len(y)} labels; give one per image")
        candidates = candidates[z.argmax(1) == y]
    order = torch.argsort(score[candidates], descending=True, stable=True)
    return candidates[order[:k]]
