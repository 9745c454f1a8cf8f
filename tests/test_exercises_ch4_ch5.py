"""Exercise checks of the chapters "Attention maps" and "Attention-guided distillation".

A right answer passes, typical wrong answers fail with their hint, and an unsolved stub's
NotImplementedError propagates. The right answers here are written independently of the
package (plain tensor arithmetic), so the check's reference is tested too.
"""

import pytest
import torch

from atkd_lite.book import exercises


def _norm(m):
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    return torch.where(span > 1e-9, (m - lo) / span.clamp_min(1e-9), torch.zeros_like(m))


def fma_right(layer_maps):
    return _norm(torch.stack(layer_maps).mean(0))


def fma_sum(layer_maps):  # the sum differs from the mean by a factor: same after norm
    return _norm(sum(layer_maps))


def mip_right(layer_maps):
    return _norm(torch.stack(layer_maps).amax(0))


def mip_numpy(layer_maps):
    import numpy as np

    m = np.max(np.stack([t.numpy() for t in layer_maps]), axis=0)
    lo, hi = m.min(axis=(1, 2), keepdims=True), m.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    return np.where(span > 1e-9, (m - lo) / np.maximum(span, 1e-9), 0.0)


@pytest.mark.parametrize("answer", [fma_right, fma_sum])
def test_fma_right_answers_pass(answer, capsys):
    exercises.check_fma_combination(answer)
    assert capsys.readouterr().out.startswith("✅ Correct")


@pytest.mark.parametrize("answer", [mip_right, mip_numpy])
def test_mip_right_answers_pass(answer, capsys):
    exercises.check_mip_combination(answer)
    assert capsys.readouterr().out.startswith("✅ Correct")


def naive_division(layer_maps):
    m = torch.stack(layer_maps).mean(0)
    lo = m.amin(dim=(1, 2), keepdim=True)
    return (m - lo) / (m.amax(dim=(1, 2), keepdim=True) - lo)


@pytest.mark.parametrize("wrong, hint", [
    (lambda ms: torch.stack(ms).mean(0), "normalise it again"),
    (lambda ms: torch.stack(ms).mean(1), "shaped"),
    (naive_division, "NaN"),
    (lambda ms: (lambda m: (m - m.min()) / (m.max() - m.min()))(torch.stack(ms).mean(0)),
     "whole batch"),
    (mip_right, "that is the maximum"),
    (lambda ms: _norm(torch.stack(ms).median(0).values), "differs"),
])
def test_fma_wrong_answers_fail_with_hint(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        exercises.check_fma_combination(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda ms: torch.stack(ms).amax(0), "normalise it again"),
    (fma_right, "that is the mean"),
])
def test_mip_wrong_answers_fail_with_hint(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        exercises.check_mip_combination(wrong)


def keep_right(names, first, last):
    if first == 0 and last == 0:
        raise ValueError("keep at least one layer")
    n = len(names)
    head = names[:first]
    tail = names[max(first, n - last):] if last else []
    return head + tail


def test_keep_layers_right_answer_passes(capsys):
    exercises.check_keep_layers(keep_right)
    assert capsys.readouterr().out.startswith("✅ Correct")


def slice_bug(names, first, last):
    if first == last == 0:
        raise ValueError
    return list(dict.fromkeys(names[:first] + names[-last:]))


def duplicates(names, first, last):
    if first == last == 0:
        raise ValueError
    return names[:first] + (names[len(names) - last:] if last else [])


def reversed_order(names, first, last):
    return list(reversed(keep_right(names, first, last)))


@pytest.mark.parametrize("wrong, hint", [
    (slice_bug, "names\\[-0:\\]"),
    (duplicates, "kept once"),
    (reversed_order, "wrong order"),
    (lambda names, first, last: keep_right(names, first, last) if first or last else [],
     "ValueError"),
    (lambda names, first, last: names[:first], "expected"),
])
def test_keep_layers_wrong_answers_fail_with_hint(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        exercises.check_keep_layers(wrong)


@pytest.mark.parametrize("check", [exercises.check_fma_combination,
                                   exercises.check_mip_combination,
                                   exercises.check_keep_layers])
def test_stub_not_implemented_propagates(check):
    def stub(*args):
        raise NotImplementedError("write your solution here")

    with pytest.raises(NotImplementedError):
        check(stub)
