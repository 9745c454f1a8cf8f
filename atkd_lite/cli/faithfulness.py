"""``atkd-lite faithfulness``: maps against ground-truth boxes on cluttered digits
(:mod:`atkd_lite.experiments.faithfulness`)."""

from __future__ import annotations

from atkd_lite.cli.options import (
    STUDENT_SIZES,
    add_common,
    add_distill_options,
    add_grid_options,
    check_choices,
    list_of,
    nonneg_int,
    positive_int,
    prepare_grid,
    say,
)


def run_faithfulness_command(args) -> int:
    """``atkd-lite faithfulness``: the maps scored against the digits' boxes."""
    from atkd_lite.experiments.faithfulness import (
        DEFAULT_METHODS,
        MAP_KINDS,
        faithfulness_markdown,
        run_faithfulness,
    )

    methods = args.methods or list(DEFAULT_METHODS)
    kinds = args.kinds or list(MAP_KINDS)
    check_choices("map kind", kinds, list(MAP_KINDS))
    settings, teacher = prepare_grid(args, methods)
    per_class = 100 if args.per_class is None else args.per_class
    res = run_faithfulness(dataset=args.dataset, methods=methods, seeds=args.seeds or [0, 1, 2],
                           per_class=per_class or None, epochs=args.epochs or 30,
                           student_size=args.student_size, teacher=teacher,
                           teacher_epochs=args.teacher_epochs, kinds=kinds,
                           score_n=args.score_n or None, ig_steps=args.ig_steps,
                           output_dir=args.output_dir, device=args.device,
                           progress=not args.no_progress, command=args.command_line,
                           **settings)
    say(faithfulness_markdown(res, "energy"))
    say(faithfulness_markdown(res, "pointing"))
    say(f"wrote {args.output_dir}")
    return 0


def add_commands(sub) -> None:
    """Add this module's subcommands to the parser's ``sub`` (its subparsers)."""
    p = sub.add_parser("faithfulness", help="maps vs ground-truth boxes on cluttered digits")
    add_grid_options(p, "student,kd,fma,mip,sals", "0,1,2", "results/cluttered-faithfulness")
    p.add_argument("--dataset", default="cluttered")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES)
    p.add_argument("--kinds", type=list_of(str), default=None,
                   help="comma-separated map kinds (default: all)")
    p.add_argument("--score-n", type=nonneg_int, default=0,
                   help="test images to score; 0 = all")
    p.add_argument("--ig-steps", type=positive_int, default=16)
    add_distill_options(p)
    add_common(p, seed=False)
    p.set_defaults(func=run_faithfulness_command)
