"""Exercise checks of chapters 2 and 3: right answers pass, wrong ones get the hint, stubs
propagate. The right answers are written independently of the book's solutions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from atkd_lite.book import exercises


def stub(*args):
    raise NotImplementedError("exercise: still open")


@pytest.mark.parametrize("check", [
    exercises.check_conv_block_parameters,
    exercises.check_softmax_with_temperature,
    exercises.check_kd_loss,
])
def test_stubs_propagate(check):
    with pytest.raises(NotImplementedError, match="still open"):
        check(stub)


# ------------------------------------------------------------------ chapter 2

def test_conv_block_right_answer_passes(capsys):
    def conv_block_parameters(c_in, c_out, k=3):
        return c_out * (c_in * k * k + 2)  # per output channel: a filter, a scale, a shift

    exercises.check_conv_block_parameters(conv_block_parameters)
    assert capsys.readouterr().out.startswith("✅ Correct:")


@pytest.mark.parametrize("wrong, hint", [
    (lambda i, o, k=3: i * o * k * k, "only the convolution weights"),
    (lambda i, o, k=3: i * o * k * k + o, "scale *and* a shift"),
    (lambda i, o, k=3: i * o * k * k + 3 * o, "convolution bias"),
    (lambda i, o, k=3: i * o * k * k + 4 * o, "buffers"),
    (lambda i, o, k=3: i * o * k + 2 * o, "such a block has"),
    (lambda i, o, k=3: str(i * o * k * k + 2 * o), "whole number"),
])
def test_conv_block_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match="Not yet") as err:
        exercises.check_conv_block_parameters(wrong)
    assert hint in str(err.value)


# ------------------------------------------------------------------ chapter 3: softmax

def softmax_numpy(z, T):
    a = np.asarray(z, dtype=np.float64) / T
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_right_answers_pass(capsys):
    exercises.check_softmax_with_temperature(softmax_numpy)
    exercises.check_softmax_with_temperature(lambda z, T: torch.exp(F.log_softmax(z / T, 1)))
    assert capsys.readouterr().out.count("✅ Correct:") == 2


@pytest.mark.parametrize("wrong, hint", [
    (lambda z, T: torch.exp(z / T) / torch.exp(z / T).sum(1, keepdim=True), "overflow"),
    (lambda z, T: F.softmax(z / T, dim=0), "over the batch"),
    (lambda z, T: F.softmax(z * T, dim=1), "divide them by T"),
    (lambda z, T: F.softmax(z, dim=1), "ignores T"),
    (lambda z, T: F.softmax(z / T, dim=1)[:, :-1], "same shape"),
    (lambda z, T: F.softmax(z / (T + 1), dim=1), "differs from softmax"),
])
def test_softmax_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match="Not yet") as err:
        exercises.check_softmax_with_temperature(wrong)
    assert hint in str(err.value)


# ------------------------------------------------------------------ chapter 3: KD loss

def kd_by_hand(z_s, z_t, T):
    """T² · KL written with explicit sums (an independent formulation)."""
    p_t = torch.softmax(z_t / T, 1)
    log_p_s = torch.log_softmax(z_s / T, 1)
    return T * T * (p_t * (torch.log(p_t) - log_p_s)).sum() / z_s.shape[0]


def test_kd_right_answer_passes(capsys):
    exercises.check_kd_loss(kd_by_hand)
    assert capsys.readouterr().out.startswith("✅ Correct:")


def test_kd_reference_matches_a_hand_computation():
    # one example, two classes, T = 2: p_T = softmax([2, 0]/2), p_S = softmax([0, 0]) = ½
    from atkd_lite.losses import kd_loss

    p1 = 1 / (1 + np.exp(-1.0))
    kl = p1 * np.log(p1 / 0.5) + (1 - p1) * np.log((1 - p1) / 0.5)
    got = float(kd_loss(torch.zeros(1, 2), torch.tensor([[2.0, 0.0]]), T=2.0))
    assert got == pytest.approx(4 * kl, rel=1e-5)


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, t, T: kd_by_hand(s, t, T) / (T * T), "divided by T²"),
    (lambda s, t, T: kd_by_hand(s, t, T) * s.shape[0], "summed over the batch"),
    (lambda s, t, T: kd_by_hand(t, s, T), "wrong way round"),
    (lambda s, t, T: kd_by_hand(s, t, T) / s.shape[1], "averaged over the classes"),
    (lambda s, t, T: F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean"),
     "should be"),
    (lambda s, t, T: T * T * (F.softmax(t / T, 1) * (F.log_softmax(t / T, 1)
                                                     - F.log_softmax(s / T, 1))).sum(1),
     "scalar"),
])
def test_kd_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match="Not yet") as err:
        exercises.check_kd_loss(wrong)
    assert hint in str(err.value)


# ------------------------------------------------------------------ chapter 3: predictions

RIGHT = {"large_T": "uniform", "small_T": "one-hot", "top_class_changes": False}


def test_temperature_predictions_right(capsys):
    exercises.check_temperature_predictions(dict(RIGHT))
    assert capsys.readouterr().out.startswith("✅ Correct:")


@pytest.mark.parametrize("change, hint", [
    ({"large_T": "one-hot"}, "huge T"),
    ({"small_T": "uniform"}, "tiny T"),
    ({"top_class_changes": True}, "keeps their order"),
    ({"large_T": "flat"}, "must be one of"),
])
def test_temperature_predictions_wrong(change, hint):
    with pytest.raises(AssertionError, match="Not yet") as err:
        exercises.check_temperature_predictions({**RIGHT, **change})
    assert hint in str(err.value)


def test_temperature_predictions_missing_key_and_type():
    with pytest.raises(AssertionError, match="small_T"):
        exercises.check_temperature_predictions({"large_T": "uniform"})
    with pytest.raises(AssertionError, match="as a dict"):
        exercises.check_temperature_predictions(["uniform"])
