"""``atkd-lite sizes``: students of several sizes from one teacher cache
(:mod:`atkd_lite.experiments.sizes`)."""

from __future__ import annotations

from atkd_lite.cli.options import (
    STUDENT_SIZES,
    add_common,
    add_distill_options,
    add_grid_options,
    check_choices,
    list_of,
    prepare_grid,
    say,
)


def run_sizes_command(args) -> int:
    """``atkd-lite sizes``: students of several sizes from one teacher cache."""
    from atkd_lite.experiments.sizes import SIZES, run_sizes

    methods = args.methods or ["student", "fma"]
    check_choices("student size", args.sizes, list(SIZES))
    settings, teacher = prepare_grid(args, methods)
    per_class = 100 if args.per_class is None else args.per_class
    res = run_sizes(dataset=args.dataset, sizes=args.sizes, methods=methods,
                    seeds=args.seeds or [0, 1, 2], per_class=per_class or None,
                    epochs=args.epochs or 30, teacher=teacher,
                    teacher_epochs=args.teacher_epochs, output_dir=args.output_dir,
                    device=args.device, progress=not args.no_progress,
                    command=args.command_line, **settings)
    say(res.to_markdown())
    say(f"wrote {args.output_dir}")
    return 0


def add_commands(sub) -> None:
    """Add this module's subcommands to the parser's ``sub`` (its subparsers)."""
    p = sub.add_parser("sizes", help="students of three sizes from one teacher cache")
    add_grid_options(p, "student,fma", "0,1,2", "results/mnist5k-sizes")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--sizes", type=list_of(str), default=STUDENT_SIZES,
                   help="comma-separated student sizes (default: tiny,small,medium)")
    add_distill_options(p)
    add_common(p, seed=False)
    p.set_defaults(func=run_sizes_command)
