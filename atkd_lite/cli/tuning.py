"""``atkd-lite tune``: every method's weight chosen on the validation split
(:mod:`atkd_lite.experiments.tuning`)."""

from __future__ import annotations

from atkd_lite.cli.options import (
    add_common,
    check_choices,
    check_seeds,
    claim_output_dir,
    list_of,
    nonneg_int,
    positive_int,
)


def run_tune(args) -> int:
    """``atkd-lite tune``: every method's weight chosen on the validation split."""
    from atkd_lite.device import get_device
    from atkd_lite.experiments.tuning import SEARCHES, tune, tuning_markdown

    searches = args.searches or list(SEARCHES)
    check_choices("search", searches, list(SEARCHES))
    check_seeds(args.seeds)
    get_device(args.device)
    claim_output_dir(args.output_dir)
    res = tune(searches=searches, seeds=args.seeds or [0, 1, 2], epochs=args.epochs or 30,
               extend=args.extend, teacher_epochs=args.teacher_epochs,
               output_dir=args.output_dir, device=args.device, progress=not args.no_progress,
               command=args.command_line)
    print(tuning_markdown(res))
    print(f"wrote {args.output_dir}")
    return 0


def add_commands(sub) -> None:
    """Add this module's subcommands to the parser's ``sub`` (its subparsers)."""
    p = sub.add_parser("tune", help="choose every method's weight on the validation split")
    p.add_argument("--output-dir", default="results/mnist5k-tuning")
    p.add_argument("--searches", type=list_of(str), default=None,
                   help="comma-separated searches: kd, ls, at, fma, mip, sals (default: all)")
    p.add_argument("--seeds", type=list_of(int), default=None, help="default: 0,1,2")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 30")
    p.add_argument("--extend", type=nonneg_int, default=3,
                   help="extensions of a grid whose best value is at its edge (default: 3)")
    p.add_argument("--teacher-epochs", type=positive_int, default=12)
    add_common(p, seed=False)
    p.set_defaults(func=run_tune)
