"""Checks of chapter 8's exercises (shortcuts): painting the decoy swatch, Ross et al.'s
right-reasons penalty.
"""

from __future__ import annotations

import numbers

import torch

from atkd_lite.book.exercises.feedback import hint, passed

__all__ = ["check_add_swatch", "check_rrr_penalty"]


CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def check_add_swatch(add_swatch) -> None:
    """Check ``add_swatch(image, cls, corner, size=4)``: paint the decoy swatch.

    ``image`` is a uint8 tensor (H, W); the answer is a *new* tensor with a ``size``×``size``
    square in ``corner`` (``"top-left"``, ``"top-right"``, ``"bottom-left"`` or
    ``"bottom-right"``) set to ``255 − 25·cls``. Compared with the book's decoy digits
    (:func:`atkd_lite.data.decoy_mnist`) pixel for pixel, and on other sizes and classes
    with the pixels outside the square.
    """
    from atkd_lite.data import decoy_mnist, embedded_mnist

    decoy = decoy_mnist("train", rho=1.0).subset(range(0, 4000, 501))
    plain = embedded_mnist("train").images[0:4000:501, 0]
    for i in range(len(decoy)):
        x0, y0 = decoy.swatch_boxes[i, :2].tolist()
        corner = ("bottom" if y0 else "top") + "-" + ("right" if x0 else "left")
        cls = int(decoy.swatch_classes[i])
        original = plain[i].clone()
        got = add_swatch(original, cls, corner)
        hint(isinstance(got, torch.Tensor) and got.shape == (28, 28),
             f"add_swatch should return a (28, 28) tensor, got {type(got).__name__} "
             f"{tuple(getattr(got, 'shape', ()))}")
        hint(torch.equal(original, plain[i]),
             "add_swatch changed the image it was given; paint a copy (image.clone())")
        want = decoy.images[i, 0]
        if torch.equal(got.to(torch.uint8), want):
            continue
        changed = torch.nonzero(got.to(torch.int64) != plain[i].to(torch.int64))
        hint(len(changed) > 0, f"nothing was painted for class {cls} in the {corner} corner")
        rows, cols = changed[:, 0], changed[:, 1]
        hint(bool(((rows < 4) | (rows >= 24)).all() and ((cols < 4) | (cols >= 24)).all()),
             f"for the {corner} corner, pixels away from the corners changed; the square "
             "spans rows 0-3 (top) or 24-27 (bottom) and columns 0-3 (left) or 24-27 (right)")
        hint(bool((rows < 4).all() == (y0 == 0)),
             f"the square is in the wrong row band for '{corner}': top means rows 0-3, "
             "bottom rows 24-27 (rows are the first index)")
        hint(bool((cols < 4).all() == (x0 == 0)),
             f"the square is in the wrong column band for '{corner}': left means columns "
             "0-3, right columns 24-27 (columns are the second index)")
        shade = int(want[y0, x0])
        hint(False, f"class {cls} has the shade 255 - 25·{cls} = {shade}; the square holds "
                     f"{got[y0, x0].item()}")
    for size, cls, corner in ((1, 0, "top-left"), (6, 9, "bottom-right"), (3, 4, "top-right")):
        image = torch.zeros(28, 28, dtype=torch.uint8)
        got = add_swatch(image, cls, corner, size)
        expect = torch.zeros(28, 28, dtype=torch.int64)
        rows = slice(0, size) if corner.startswith("top") else slice(28 - size, 28)
        cols = slice(0, size) if corner.endswith("left") else slice(28 - size, 28)
        expect[rows, cols] = 255 - 25 * cls
        hint(torch.equal(got.to(torch.int64), expect),
             f"add_swatch(blank, cls={cls}, corner='{corner}', size={size}) should paint a "
             f"{size}×{size} square of {255 - 25 * cls}; use size for the square's side")
    passed("your swatches match the book's decoy digits pixel for pixel, in all four "
           "corners and at other sizes, and the original image is left alone.")


def check_rrr_penalty(rrr_penalty) -> None:
    """Check ``rrr_penalty(grad, mask)``: Ross et al.'s right-reasons penalty.

    ``grad`` is the input gradient ``(B, C, H, W)``, ``mask`` a bool ``(B, H, W)`` that is
    True on the pixels the model must not use; the answer is the mean over images of the
    sum, over the masked pixels and the channels, of the squared gradient. Compared with
    a loop over every pixel, and with cases whose answer is known (empty and full masks).
    """
    gen = torch.Generator().manual_seed(8)
    grad = torch.randn(3, 2, 5, 4, generator=gen)
    mask = torch.rand(3, 5, 4, generator=gen) < 0.3
    want = 0.0
    for b in range(3):
        for c in range(2):
            for i in range(5):
                for j in range(4):
                    if mask[b, i, j]:
                        want += float(grad[b, c, i, j]) ** 2
    want /= 3
    got = rrr_penalty(grad.clone(), mask.clone())
    hint(isinstance(got, (torch.Tensor, numbers.Real)) and torch.as_tensor(got).numel() == 1,
         f"rrr_penalty should return one number (a 0-d tensor), got {type(got).__name__}")
    got = float(got)
    hint(abs(got - 3 * want) > 1e-5,
         "you summed over the images; the penalty is the *mean* over the images")
    total, n_masked = 3 * want, mask.sum().item()
    hint(all(abs(got - total / k) > 1e-5 for k in (n_masked, 2 * n_masked)),
         "divide only by the number of images, not by the number of masked pixels")
    hint(abs(got - want) < 1e-5,
         f"for a random gradient and mask the penalty is {want:.4f}, you got {got:.4f}: square "
         "the gradient, keep only the masked pixels, sum over pixels and channels, then "
         "average over the images")
    none = float(rrr_penalty(grad, torch.zeros(3, 5, 4, dtype=torch.bool)))
    hint(none == 0.0, "with an empty mask nothing is penalised: the answer must be 0")
    full = float(rrr_penalty(-grad, torch.ones(3, 5, 4, dtype=torch.bool)))
    norms = torch.linalg.vector_norm(grad.flatten(1), dim=1).pow(2).mean().item()
    hint(abs(full - norms) < 1e-4, "with a full mask the penalty is the mean squared norm "
                                    "of each image's gradient (negative gradients count too)")
    passed("squared gradient on the masked pixels, summed over pixels and channels, averaged "
           "over the images — as a loop over every pixel computes it.")
