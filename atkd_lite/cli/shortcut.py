"""``atkd-lite shortcut`` and ``shortcut-merge``: the decoy-digits grid and the join of
its parts (:mod:`atkd_lite.experiments.shortcut`)."""

from __future__ import annotations

import os

from atkd_lite.cli.options import (
    MLP_NAMES,
    STUDENT_SIZES,
    add_common,
    add_distill_options,
    add_grid_options,
    check_choices,
    claim_output_dir,
    list_of,
    nonneg_int,
    positive_int,
    prepare_grid,
    probability_list,
    say,
)


def run_shortcut_command(args) -> int:
    """``atkd-lite shortcut``: the decoy-digits grid."""
    from atkd_lite.data import decoy_mnist
    from atkd_lite.experiments.shortcut import (
        DEFAULT_METHODS,
        REFERENCES,
        run_shortcut,
        shortcut_markdown,
    )

    methods = args.methods or list(DEFAULT_METHODS)
    references = list(REFERENCES) if args.references is None else args.references
    check_choices("reference", references, list(REFERENCES))
    if args.beta is not None:
        raise ValueError("--beta is tuned per method in this experiment; use --no-tune to "
                         "run every method at its default weight instead")
    decoy_mnist("test", swatch=args.swatch)  # a swatch that does not fit: fail now
    settings, teacher = prepare_grid(args, methods, dataset=False)
    res = run_shortcut(rhos=args.rhos, methods=methods, references=references,
                       seeds=args.seeds or list(range(10)),
                       per_class=100 if args.per_class is None else args.per_class or None,
                       epochs=args.epochs or 20, swatch=args.swatch,
                       student_size=args.student_size, teacher=teacher,
                       teacher_epochs=args.teacher_epochs, tune=not args.no_tune,
                       tune_seeds=args.tune_seeds, score_n=args.score_n or None,
                       max_teacher_gap=args.max_teacher_gap, output_dir=args.output_dir,
                       device=args.device, progress=not args.no_progress,
                       command=args.command_line, select_on=args.select_on,
                       controls=args.controls, **settings)
    say(shortcut_markdown(res))
    return 0


def run_merge(args) -> int:
    """``atkd-lite shortcut-merge``: parts of one shortcut grid joined into one."""
    from atkd_lite.experiments.shortcut import load_shortcut, merge_shortcut, shortcut_markdown

    parts = [load_shortcut(path) for path in args.parts]  # every part readable: then write
    out = os.path.realpath(args.output_dir)
    for path in args.parts:
        folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
        if os.path.realpath(folder) == out:
            raise ValueError(f"argument --output-dir: {args.output_dir} holds the part "
                             f"{path}; writing the merged grid there would replace it: "
                             "choose a new folder")
    claim_output_dir(args.output_dir)
    res = merge_shortcut(parts, output_dir=args.output_dir)
    say(shortcut_markdown(res))
    say(f"wrote {args.output_dir}")
    return 0


def add_commands(sub) -> None:
    """Add this module's subcommands to the parser's ``sub`` (its subparsers)."""
    p = sub.add_parser("shortcut",
                       help="decoy digits: does the teacher's attention keep the student "
                            "off a shortcut?")
    add_grid_options(p, "every method with a teacher and its +kd variant",
                      "0,1,...,9", "results/decoy-shortcut")
    p.add_argument("--rhos", type=probability_list, default=[1.0, 0.9],
                   help="comma-separated probabilities that a training swatch follows the "
                        "label (default: 1.0,0.9)")
    p.add_argument("--swatch", type=positive_int, default=4,
                   help="swatch side in pixels, 1 to 14 (default: 4, as Ross et al.)")
    p.add_argument("--references", type=list_of(str), default=None,
                   help="reference runs: rrr (true-mask penalty), clean (no swatch) "
                        "(default: rrr,clean)")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES + MLP_NAMES,
                   help="the student: a CNN size, or an MLP (mlp-512x2: the testbed where "
                        "the shortcut bites; give it --methods from MLP_METHODS, e.g. "
                        "student,kd,sals,tmask, and --lr 1e-3)")
    p.add_argument("--controls", nargs="?", const=True, default=False, type=list_of(str),
                   help="also run the controls of the teacher's-map-as-mask question: all "
                        "of them (rrr-wrong, rrr-all, tmask-shuffled, rrr-centre), or a "
                        "comma-separated list; each needs the method whose weight it takes "
                        "(tmask, rrr)")
    p.add_argument("--no-tune", action="store_true",
                   help="use every method's default weight instead of tuning it")
    p.add_argument("--tune-seeds", type=list_of(int), default=[100],
                   help="seeds of the tuning runs (default: 100)")
    p.add_argument("--select-on", choices=["val", "val_random"], default="val",
                   help="choose each weight on the training distribution's validation "
                        "split (val, as a practitioner) or on random shades (val_random: "
                        "an oracle; default: val)")
    p.add_argument("--score-n", type=nonneg_int, default=500,
                   help="test images whose maps are scored; 0 = all (default: 500)")
    p.add_argument("--max-teacher-gap", type=float, default=0.05,
                   help="refuse a teacher whose flipped-split accuracy is more than this "
                        "below its clean accuracy (default: 0.05)")
    add_distill_options(p)
    add_common(p, seed=False)
    p.set_defaults(func=run_shortcut_command)

    p = sub.add_parser("shortcut-merge",
                       help="join parts of one shortcut grid run side by side (e.g. one "
                            "rho per core)",
                       description="Join the results of `atkd-lite shortcut` commands that "
                                   "ran parts of one grid (e.g. --rhos 1 --references rrr "
                                   "and --rhos 0.9 --references rrr,clean, at the same "
                                   "commit) into one grid, as if one command had run it.")
    p.add_argument("parts", nargs="+", help="results folders of the parts, in rho order")
    p.add_argument("--output-dir", required=True, help="where to write the merged results")
    p.set_defaults(func=run_merge)
