"""Check of the write-it-yourself distillation loop (chapters 3 and 5): any correct loop
trains the weights ``ak.distill`` trains.
"""

from __future__ import annotations

import torch
from torch import nn

from atkd_lite.book.exercises.feedback import hint, passed

__all__ = ["check_distill_loop", "distill_loop_distance"]


#: a loop's weights may be this far (relative to how far training moved them) from the
#: package's: about three times what reordering one batch's images moved them after eight
#: Adam steps (at most 0.011 for correct loops, in the package's order or a DataLoader's,
#: over 30 orders and two initialisations), and below the mildest real mistake measured
#: (the KL reversed: 0.08 with a weak teacher, 0.24 with the book's; T² dropped and the
#: teacher in train mode: 0.5 to 1.0); ``tests/test_write_it_yourself.py`` checks both
LOOP_TOLERANCE = 0.03


def distill_loop_distance(loop, teacher, train, method: str = "kd", batch_size: int = 64,
                          device="cpu", epochs: int = 8, seed: int = 0) -> float:
    """How far a hand-written distillation loop trains from ``ak.distill(..., method)``.

    ``loop(teacher, student, train, epochs, seed)`` must train ``student`` and return it.
    Both the loop and the package run on **one batch** of ``batch_size`` training images
    (so every epoch is one step on the same images, and the loss, a mean over them, does
    not depend on their order), from the same initial small student, for ``epochs``
    steps. The result is the distance between the two trained weight vectors, relative to
    the distance the package's training moved the weights: ~0 for a correct loop in any
    image order (the package's ``make_batches``, a ``DataLoader`` with ``shuffle=True``),
    of order 0.1 to 1 for a loop that computes another loss or leaves the teacher in
    train mode. The teacher given is not modified (the loop gets a copy).

    Args:
        loop: the learner's function.
        teacher: the trained teacher.
        train: the training :class:`~atkd_lite.ImageSet` (``batch_size`` of its images
            are used).
        method: the package's method the loop writes (``"kd"``, ``"fma"``, ...).
        batch_size: the batch size the loop uses (``P.batch_size``).
        device: where both run.
        epochs: how many steps (8 or more: the one-cycle schedule's shortest run).
        seed: the seed passed to the loop and to ``ak.distill``.

    Returns:
        float: ``|w_loop - w_package| / |w_package - w_initial|``.
    """
    import copy

    import atkd_lite as ak

    hint(callable(loop), f"give your training function itself, got {type(loop).__name__}")
    n = min(int(batch_size), len(train))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:n]
    batch = train.subset(pick.tolist())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        initial = ak.student_cnn("small", in_channels=batch.images.shape[1],
                                 num_classes=train.num_classes)
    frozen = copy.deepcopy(teacher).eval()
    reference = ak.distill(copy.deepcopy(frozen), copy.deepcopy(initial), batch,
                           method=method, epochs=epochs, batch_size=n, seed=seed,
                           device=device, amp=False, channels_last=False,
                           progress=False).student
    mine = loop(copy.deepcopy(frozen), copy.deepcopy(initial).to(device), batch, epochs,
                seed)
    hint(isinstance(mine, nn.Module), "return the trained student (a torch module), "
         f"got {type(mine).__name__}")

    def flat(model):
        return torch.cat([p.detach().double().cpu().flatten() for p in model.parameters()])

    start, ref, got = flat(initial), flat(reference), flat(mine)
    hint(got.shape == ref.shape, "return the student you were given, trained")
    hint(not torch.equal(got, start), "the student's weights did not change: call the "
         "optimiser's step() after backward()")
    return float((got - ref).norm() / (ref - start).norm())


def check_distill_loop(loop, teacher, train, method: str = "kd", batch_size: int = 64,
                       device="cpu", epochs: int = 8, seed: int = 0) -> None:
    """Check a hand-written distillation loop (chapters 3 and 5): any correct loop passes.

    Runs :func:`distill_loop_distance` and accepts a distance up to
    ``LOOP_TOLERANCE`` (0.03): the image order does not matter, a loop that computes
    another loss (its terms, their weights, ``T²``, the direction of the KL), leaves the
    teacher in train mode, forgets the student's ``train()`` or the scheduler, is
    refused. Arguments as :func:`distill_loop_distance`.
    """
    distance = distill_loop_distance(loop, teacher, train, method, batch_size, device,
                                     epochs, seed)
    print(f"relative weight distance from ak.distill(method={method!r}) after {epochs} "
          f"steps on one batch: {distance:.4f}")
    hint(distance <= LOOP_TOLERANCE,
         f"your loop trains other weights than ak.distill(method={method!r}) (distance "
         f"{distance:.2f}, allowed {LOOP_TOLERANCE}). Check the loss (its terms, their "
         "weights, T² and the direction of the KL), the teacher in eval() mode and "
         "without gradients, the student in train() mode, and that the scheduler "
         "steps after the optimiser")
    passed(f"your loop trains what ak.distill(method={method!r}) trains: after "
           f"{epochs} steps on one batch its weights are within {distance:.1%} of the "
           "package's (reordering the images moves them about as much).")
