"""The exercise checks: right answers pass, wrong answers fail with a hint, stubs propagate.

The right answers here are written independently of the book's solutions (other
formulations of the same thing), so a check that only accepted one spelling would fail.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from atkd_lite.book import exercises

# ------------------------------------------------------------------ chapter 1: dense layer


def test_fc_parameters_right_answer_passes(capsys):
    def fc_parameters(n_in, n_out):
        return (n_in + 1) * n_out  # the bias as an extra input fixed to 1

    exercises.check_fc_parameters(fc_parameters)
    out = capsys.readouterr().out
    assert out.startswith("✅ Correct:")
    # 3M inputs into 1000 units: 3e9 weights + 1000 biases, computed by hand
    assert "3,000,001,000" in out


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda n_in, n_out: n_in * n_out, "only the weights"),
        (lambda n_in, n_out: n_in * n_out + n_in, "one bias per *output*"),
        (lambda n_in, n_out: n_in + n_out, "one weight for every (input, unit) pair"),
        (lambda n_in, n_out: (n_in * n_out + n_out) / 2, "such a layer has"),
        (lambda n_in, n_out: str(n_in * n_out + n_out), "whole number"),
    ],
)
def test_fc_parameters_wrong_answers_fail_with_hint(wrong, hint):
    with pytest.raises(AssertionError, match="Not yet") as err:
        exercises.check_fc_parameters(wrong)
    assert hint in str(err.value)


def test_stub_not_implemented_propagates():
    def stub(*args):
        raise NotImplementedError("exercise ch1: write fc_parameters")

    for check in (exercises.check_fc_parameters, exercises.check_conv2d_by_hand):
        with pytest.raises(NotImplementedError, match="exercise ch1"):
            check(stub)


# ------------------------------------------------------------------ chapter 1: convolution


def conv_numpy(image, kernel):
    """Cross-correlation via numpy's sliding windows (independent of any loop answer)."""
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(image), kernel.shape)
    return np.einsum("ijuv,uv->ij", windows, np.asarray(kernel))


def conv_unfold(image, kernel):
    kh, kw = kernel.shape
    cols = F.unfold(image[None, None], (kh, kw))  # (1, kh*kw, L)
    h, w = image.shape[0] - kh + 1, image.shape[1] - kw + 1
    return (kernel.reshape(1, -1) @ cols[0]).reshape(h, w)


@pytest.mark.parametrize("answer", [conv_numpy, conv_unfold])
def test_conv2d_right_answers_pass(answer, capsys):
    exercises.check_conv2d_by_hand(answer)
    assert capsys.readouterr().out.startswith("✅ Correct:")


def test_conv2d_flipped_kernel_gets_the_flip_hint():
    with pytest.raises(AssertionError, match="flipped"):
        exercises.check_conv2d_by_hand(lambda im, k: conv_numpy(im, np.flip(k.numpy(), (0, 1))))


def test_conv2d_padded_output_gets_the_shape_hint():
    def same_padding(image, kernel):
        return F.conv2d(image[None, None], kernel[None, None], padding="same")[0, 0]

    with pytest.raises(AssertionError, match=r"H - kh \+ 1"):
        exercises.check_conv2d_by_hand(same_padding)


def test_conv2d_swapped_kernel_axes_fail_on_the_non_square_case():
    # kernel.T has the wrong shape for the 2x3 kernel: caught by the non-square case
    def transposed(image, kernel):
        return conv_numpy(image.T, kernel.numpy()).T

    with pytest.raises(AssertionError, match="Not yet"):
        exercises.check_conv2d_by_hand(transposed)


def test_conv2d_off_by_one_values_point_at_a_position():
    with pytest.raises(AssertionError, match=r"output\[\d+, \d+\]"):
        exercises.check_conv2d_by_hand(lambda im, k: conv_numpy(im, k.numpy()) + 0.5)


# ------------------------------------------------------------------ chapter 1: edge kernel


@pytest.mark.parametrize(
    "kernel",
    [
        [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
        [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],  # Sobel, the other polarity
        np.array([[0, 0, 0], [1, 1, 1], [-1, -1, -1]], dtype=np.float32),
    ],
)
def test_horizontal_edge_right_answers_pass(kernel, capsys):
    exercises.check_horizontal_edge_kernel(kernel)
    assert capsys.readouterr().out.startswith("✅ Correct:")


@pytest.mark.parametrize(
    "kernel, hint",
    [
        ([[1, 0, -1], [1, 0, -1], [1, 0, -1]], "vertical"),  # the vertical detector
        ([[1, 1, 1], [0, 0, 0], [0, 0, 0]], "sum to 0"),  # responds to flat regions
        (torch.zeros(3, 3), "all zeros"),
        ([1, 0, -1], "2-D"),
    ],
)
def test_horizontal_edge_wrong_answers_fail_with_hint(kernel, hint):
    with pytest.raises(AssertionError, match="Not yet") as err:
        exercises.check_horizontal_edge_kernel(kernel)
    assert hint in str(err.value)


def test_horizontal_edge_non_numeric_input_fails_clearly():
    with pytest.raises(AssertionError, match="tensor"):
        exercises.check_horizontal_edge_kernel("horizontal")
