"""Confusion matrices, soft confusion and ambiguous examples, against hand counts."""

import math

import pytest
import torch
import torch.nn.functional as F

from atkd_lite.book.predictions import ambiguous, confusion_matrix, most_confused, soft_confusion


def test_confusion_matrix_matches_a_hand_count():
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    preds = [0, 1, 0, 1, 1, 2, 0, 1, 2]
    # counted by hand, rows = true class, columns = predicted class
    want = [[2, 1, 0],
            [0, 2, 0],
            [1, 1, 2]]
    cm = confusion_matrix(torch.tensor(preds), torch.tensor(labels))
    assert cm.tolist() == want
    assert cm.dtype == torch.int64
    assert most_confused(cm, k=5) == [(0, 1, 1), (2, 0, 1), (2, 1, 1)]


def test_confusion_matrix_from_logits_takes_argmax_and_class_count():
    logits = torch.tensor([[0.1, 2.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    cm = confusion_matrix(logits, torch.tensor([1, 2]))
    assert cm.shape == (4, 4)  # from the logits, although class 3 never occurs
    assert cm[1, 1] == 1 and cm[2, 0] == 1 and cm.sum() == 2


def test_confusion_matrix_invariants_on_random_data():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 7, (500,), generator=gen)
    p = torch.randint(0, 7, (500,), generator=gen)
    cm = confusion_matrix(p, y, num_classes=7)
    assert cm.sum() == 500
    assert cm.sum(1).tolist() == torch.bincount(y, minlength=7).tolist()
    assert cm.sum(0).tolist() == torch.bincount(p, minlength=7).tolist()
    assert cm.diag().sum() == (p == y).sum()


@pytest.mark.parametrize("preds, labels, kwargs, match", [
    ([0, 1], [0], {}, "2 predictions but 1 labels"),
    ([0, -1], [0, 1], {}, ">= 0"),
    ([0, 5], [0, 1], {"num_classes": 3}, "num_classes=3"),
    ([0.0, 1.0], [0, 1], {}, "integer class indices"),
])
def test_confusion_matrix_bad_input(preds, labels, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        confusion_matrix(torch.tensor(preds), torch.tensor(labels), **kwargs)


def test_soft_confusion_is_the_mean_softmax_per_class():
    z = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
    y = torch.tensor([0, 0, 1])
    T = 2.0
    row0 = [(1 / (1 + math.exp(-1.0)) + 0.5) / 2, (1 / (1 + math.exp(1.0)) + 0.5) / 2]
    row1 = [1 / (1 + math.exp(1.0)), 1 / (1 + math.exp(-1.0))]
    sc = soft_confusion(z, y, T=T)
    assert torch.allclose(sc, torch.tensor([row0, row1]), atol=1e-6)
    assert torch.allclose(sc.sum(1), torch.ones(2))


def test_soft_confusion_class_without_images_is_zero():
    sc = soft_confusion(torch.randn(4, 3), torch.tensor([0, 0, 2, 2]))
    assert sc[1].abs().sum() == 0


def test_ambiguous_orders_by_runner_up_probability_and_entropy():
    z = torch.log(torch.tensor([
        [0.90, 0.05, 0.05],   # sure
        [0.50, 0.45, 0.05],   # two classes compete: largest runner-up
        [0.40, 0.30, 0.30],   # spread out: largest entropy
        [0.70, 0.20, 0.10],
    ]))
    assert ambiguous(z, k=4, by="runner_up").tolist() == [1, 2, 3, 0]
    assert ambiguous(z, k=1, by="entropy").tolist() == [2]
    # correct_only keeps examples whose top class is the label (class 0 here, except 1)
    labels = torch.tensor([0, 1, 0, 0])
    assert ambiguous(z, k=2, labels=labels, correct_only=True).tolist() == [2, 3]


def test_ambiguous_entropy_agrees_with_torch_distributions():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(50, 10, generator=gen) * 3
    ent = torch.distributions.Categorical(logits=z / 2.0).entropy()
    assert ambiguous(z, k=5, by="entropy", T=2.0).tolist() == ent.argsort(descending=True)[:5].tolist()
    runner = F.softmax(z, 1).sort(1, descending=True).values[:, 1]
    assert ambiguous(z, k=3).tolist() == runner.argsort(descending=True)[:3].tolist()


@pytest.mark.parametrize("kwargs, match", [
    ({"by": "margin"}, "unknown by"),
    ({"k": 0}, "positive int"),
    ({"T": 0}, "positive number"),
    ({"correct_only": True}, "needs the labels"),
])
def test_ambiguous_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ambiguous(torch.randn(4, 3), **kwargs)
