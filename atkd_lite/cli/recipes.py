"""``atkd-lite recipe``: a whole recipe on colour or medical data
(:mod:`atkd_lite.experiments.recipes`)."""

from __future__ import annotations

from atkd_lite.cli.options import (
    add_common,
    check_choices,
    check_seeds,
    claim_output_dir,
    list_of,
    positive_int,
    say,
)


def run_recipe_command(args) -> int:
    """``atkd-lite recipe``: a whole recipe (teacher, grid, report)."""
    from atkd_lite.device import get_device
    from atkd_lite.experiments.recipes import RECIPES, run_recipe
    from atkd_lite.methods import METHODS

    check_choices("recipe", [args.name], list(RECIPES))
    check_choices("method", args.methods or [], list(METHODS))
    check_seeds(args.seeds)
    get_device(args.device)
    claim_output_dir(args.output_dir)
    changes = {k: v for k, v in (("teacher_epochs", args.teacher_epochs),
                                 ("student_epochs", args.epochs)) if v is not None}
    res = run_recipe(args.name, methods=args.methods, seeds=args.seeds, root=args.root,
                     output_dir=args.output_dir, device=args.device,
                     progress=not args.no_progress, command=args.command_line, **changes)
    say(res.to_markdown())
    say(f"wrote {args.output_dir}")
    return 0


def add_commands(sub) -> None:
    """Add this module's subcommands to the parser's ``sub`` (its subparsers)."""
    p = sub.add_parser("recipe", help="colour and medical data: a whole recipe (GPU)")
    p.add_argument("name", help="cifar10-wrn, bloodmnist or pneumoniamnist")
    p.add_argument("--output-dir", required=True,
                   help="where to write results.{json,csv,md,png} and teacher.pt (runs "
                        "already there are kept: an interrupted run resumes)")
    p.add_argument("--methods", type=list_of(str), default=None,
                   help="comma-separated methods (default: the recipe's)")
    p.add_argument("--seeds", type=list_of(int), default=None,
                   help="comma-separated seeds (default: the recipe's)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="student epochs (default: the recipe's)")
    p.add_argument("--teacher-epochs", type=positive_int, default=None,
                   help="teacher epochs (default: the recipe's)")
    p.add_argument("--root", default=None,
                   help="data folder (default: $ATKD_LITE_CACHE, where downloads go)")
    add_common(p, seed=False)
    p.set_defaults(func=run_recipe_command)
