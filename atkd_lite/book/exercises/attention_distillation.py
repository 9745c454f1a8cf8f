"""Check of chapter 5's exercise (attention-guided distillation): ATCam's layer selection."""

from __future__ import annotations

from atkd_lite.book.exercises.feedback import hint, passed

__all__ = ["check_keep_layers"]


def check_keep_layers(keep_layers) -> None:
    """Check ``keep_layers(names, first, last)``: ATCam's layer selection rule.

    Keep the first ``first`` and the last ``last`` names, in their original order, a
    name in both ends once; ``first + last >= len(names)`` keeps all; ``first = last =
    0`` raises :class:`ValueError`. The reference is the rule written with indices
    (``i < first or i >= N - last``), not a slice.
    """
    cases = [
        (["c1", "c2", "c3", "c4", "c5", "c6"], 2, 2),
        (["c1", "c2", "c3", "c4", "c5", "c6"], 1, 0),
        (["c1", "c2", "c3", "c4", "c5", "c6"], 0, 1),
        (["c1", "c2", "c3", "c4", "c5", "c6"], 4, 4),
        (["s1", "s2", "s3"], 2, 2),
        (["s1", "s2", "s3"], 1, 1),
        (["only"], 1, 3),
    ]
    for names, first, last in cases:
        want = [n for i, n in enumerate(names) if i < first or i >= len(names) - last]
        got = keep_layers(list(names), first, last)
        hint(isinstance(got, (list, tuple)),
             f"keep_layers(...) should return a list of names, got {type(got).__name__}")
        got = list(got)
        if got == want:
            continue
        call = f"keep_layers({names}, first={first}, last={last})"
        hint(not (last == 0 and got == names),
             f"{call} returned every name: with last=0, names[-last:] is names[-0:], which "
             "is the whole list; handle last=0 separately (or use indices)")
        hint(len(got) == len(set(got)),
             f"{call} returned {got}: a layer that is among both the first and the last "
             "must be kept once")
        hint(sorted(got) != sorted(want),
             f"{call} returned the right layers in the wrong order ({got}); keep the "
             f"forward order {want}")
        hint(False, f"{call} returned {got}, expected {want}")
    raised = False
    try:
        keep_layers(["c1", "c2"], 0, 0)
    except ValueError:
        raised = True
    hint(raised, "keep_layers(names, 0, 0) would keep no layer at all: raise a ValueError "
                  "that says to keep at least one")
    passed("first and last kept in forward order, overlaps once, last=0 handled, and "
           "first=last=0 refused (checked on 7 cases).")
