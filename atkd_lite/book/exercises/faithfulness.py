"""Check of chapter 6's exercise (do the maps look at the right place?): the pointing game
by hand.
"""

from __future__ import annotations

import torch

from atkd_lite.book.exercises.feedback import hint, passed

__all__ = ["check_pointing_game_by_hand"]


def check_pointing_game_by_hand(pointing_game_by_hand) -> None:
    """Check ``pointing_game_by_hand(amap, box) -> float`` for one (H, W) map and box.

    ``box`` is ``(x0, y0, x1, y1)``, end-exclusive; the answer is the share of the pixels
    holding the map's largest value that lie inside the box: 1 or 0 for a single peak,
    the expected hit under random tie-breaking for a tie. Compared with hand-placed peaks:
    inside, just outside each edge (end-exclusive!), ties, a constant map.
    """
    h, w = 12, 10
    box = (2, 3, 6, 8)  # columns 2..5, rows 3..7
    cases = []
    for (r, c), inside in [((3, 2), 1.0), ((7, 5), 1.0), ((5, 4), 1.0),
                           ((8, 4), 0.0), ((5, 6), 0.0), ((2, 3), 0.0), ((5, 1), 0.0)]:
        m = torch.rand(h, w, generator=torch.Generator().manual_seed(r * w + c)) * 0.5
        m[r, c] = 1.0
        cases.append((m, inside, f"a peak at row {r}, column {c}"))
    for outside in ((0, 0), (10, 9)):  # the outside peak before / after the inside one
        tie = torch.zeros(h, w)
        tie[4, 3] = tie[outside] = 1.0
        cases.append((tie, 0.5, f"two equal peaks, one outside the box at {outside}"))
    cases.append((torch.ones(h, w), 20 / 120, "a constant map (every pixel is a peak)"))
    for m, want, what in cases:
        got = pointing_game_by_hand(m.clone(), box)
        ok = isinstance(got, (bool, int, float, torch.Tensor)) and abs(float(got) - want) < 1e-6
        hint(ok, f"for {what} and box (x0, y0, x1, y1) = {box} the answer is {want:.3g}, "
                  f"got {got!r}. x runs along columns and y along rows, x1 and y1 are "
                  "end-exclusive, and a tie scores the share of the tied peaks inside.")
    passed("peaks inside, on every edge and just outside the end-exclusive box, ties and "
           f"a constant map: all {len(cases)} cases right.")
