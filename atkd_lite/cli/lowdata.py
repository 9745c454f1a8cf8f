"""``atkd-lite reproduce``: the low-data grid (:mod:`atkd_lite.experiments.lowdata`)."""

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


def run_reproduce(args) -> int:
    """``atkd-lite reproduce``: the low-data grid with the profile's settings."""
    from atkd_lite.experiments import reproduce
    from atkd_lite.experiments.lowdata import CONTROLS

    if args.controls is not None and args.no_controls:
        raise ValueError("argument --controls: not with --no-controls; give one of them")
    check_choices("control", args.controls or [], list(CONTROLS))
    settings, teacher = prepare_grid(args, args.methods or [], dataset=False)
    controls = args.controls if args.controls is not None else not args.no_controls
    results = reproduce(output_dir=args.output_dir, profile=args.profile, methods=args.methods,
                        teacher=teacher, seeds=args.seeds,
                        epochs=args.epochs, per_class=args.per_class or None,
                        student_size=args.student_size, device=args.device,
                        progress=not args.no_progress, command=args.command_line,
                        controls=controls, **settings)
    say(results.to_markdown())
    say(f"wrote {args.output_dir}")
    return 0


def add_commands(sub) -> None:
    """Add this module's subcommands to the parser's ``sub`` (its subparsers)."""
    p = sub.add_parser("reproduce",
                       help="every method x several seeds; results table, file and plot")
    add_grid_options(p, "all", "the profile's", "results/mnist5k-lowdata")
    p.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                   help="settings profile (default: $ATKD_LITE_PROFILE, else by device)")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES)
    p.add_argument("--no-controls", action="store_true",
                   help="skip the controls (label smoothing, transfer set, small teacher, "
                        "shuffled and untrained teacher maps, the teacher's augmentation "
                        "alone, the input's map)")
    p.add_argument("--controls", type=list_of(str), default=None,
                   help="run only these controls, comma-separated (default: all; "
                        "atkd_lite.experiments.lowdata.CONTROLS lists them)")
    add_distill_options(p)
    add_common(p, seed=False)
    p.set_defaults(func=run_reproduce)
