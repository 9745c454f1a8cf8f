"""The ``atkd-lite`` command line (also ``python -m atkd_lite``): one subcommand per job.

Subcommands::

    atkd-lite datasets
    atkd-lite train-teacher --dataset mnist5k --epochs 12 --output teacher.pt
    atkd-lite distill --method sals --student-size small --per-class 100 --epochs 15
    atkd-lite reproduce --output-dir results/mnist5k-lowdata
    atkd-lite sizes --output-dir results/mnist5k-sizes
    atkd-lite faithfulness --output-dir results/cluttered-faithfulness
    atkd-lite shortcut --output-dir results/decoy-shortcut

Every argument is checked before any work starts. Bad arguments and errors print one line
``atkd-lite COMMAND: error: …`` and exit with status 2 (argparse's convention); Ctrl-C
exits with 130 without a traceback.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]

STUDENT_SIZES = ["tiny", "small", "medium"]


def _int_at_least(minimum: int, kind: str):
    """An argparse ``type`` accepting integers >= ``minimum`` (``kind`` names them)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, "non-negative")


def _list_of(kind):
    """An argparse ``type`` for comma-separated values, e.g. ``0,1,2``."""

    def parse(text: str) -> list:
        items = [t for t in text.replace(" ", "").split(",") if t]
        try:
            if not items:
                raise ValueError
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, e.g. "
                f"{'0,1,2' if kind is int else 'student,fma'}; got {text!r}") from None

    return parse


def _probability_list(text: str) -> list[float]:
    """An argparse ``type`` for comma-separated probabilities in [0, 1], e.g. ``1.0,0.9``."""
    items = [t for t in text.replace(" ", "").split(",") if t]
    try:
        values = [float(t) for t in items]
    except ValueError:
        values = []
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated probabilities in [0, 1], e.g. 1.0,0.9; got {text!r}")
    return values


def _add_common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps or auto (default: auto = cuda → mps → cpu)")
    if seed:
        p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_distill_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="student epochs (default: the profile's or the tuned value)")
    p.add_argument("--alpha", type=float, default=None, help="KD weight (default: tuned)")
    p.add_argument("--beta", type=float, default=None,
                   help="attention-loss weight (default: tuned per method)")
    p.add_argument("--T", type=float, default=None, help="KD temperature (default: tuned)")
    p.add_argument("--first", type=_nonneg_int, default=None, help="ATCam first layers")
    p.add_argument("--last", type=_nonneg_int, default=None, help="ATCam last layers")
    p.add_argument("--attention-form", choices=["l2", "bce"], default=None,
                   help="attention-loss form (default: tuned)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="batch size")


def _add_grid_options(p: argparse.ArgumentParser, methods: str, seeds: str,
                      output_dir: str) -> None:
    p.add_argument("--output-dir", default=output_dir,
                   help=f"where to write results.{{json,csv,md,png}} (default: {output_dir})")
    p.add_argument("--methods", type=_list_of(str), default=None,
                   help=f"comma-separated methods (default: {methods})")
    p.add_argument("--seeds", type=_list_of(int), default=None,
                   help=f"comma-separated seeds (default: {seeds})")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (default: the pretrained teacher, trained once)")
    p.add_argument("--teacher-epochs", type=_positive_int, default=12,
                   help="epochs of the pretrained teacher (default: 12)")
    p.add_argument("--per-class", type=_nonneg_int, default=None,
                   help="training images per class, 0 = the whole split (default: 100)")


def _distill_settings(args) -> dict:
    """The distillation settings given on the command line, validated now."""
    from atkd_lite.engine import DistillConfig

    settings = {k: v for k, v in (("alpha", args.alpha), ("beta", args.beta), ("T", args.T),
                                  ("first", args.first), ("last", args.last),
                                  ("attention_form", args.attention_form), ("lr", args.lr),
                                  ("batch_size", args.batch_size)) if v is not None}
    DistillConfig().replace(**settings).validate()
    return settings


def _check_choices(what: str, values, valid) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise ValueError(f"unknown {what}(s) {', '.join(map(str, bad))}; choose from "
                         f"{', '.join(valid)}")


def _check_dataset(name: str) -> None:
    from atkd_lite.data import DATASETS

    _check_choices("dataset", [name], list(DATASETS))


def _load_teacher(path):
    from atkd_lite.checkpoints import load_checkpoint

    return load_checkpoint(path)[0] if path else None


# ---------------------------------------------------------------------------------------
# commands

def _cmd_datasets(args) -> int:
    from atkd_lite.data import DATASETS

    for name, about in DATASETS.items():
        print(f"{name:15s} {about}")
    return 0


def _cmd_train_teacher(args) -> int:
    import atkd_lite as ak

    _check_dataset(args.dataset)
    device = ak.get_device(args.device)
    train = ak.load_dataset(args.dataset, "train")
    test = ak.load_dataset(args.dataset, "test")
    if args.limit_per_class:
        train = train.per_class(args.limit_per_class, seed=args.seed)
    ak.seed_everything(args.seed)  # the initial weights are part of the run
    model = ak.teacher_cnn(in_channels=train.in_channels, num_classes=train.num_classes)
    print(f"training the teacher ({ak.count_parameters(model):,} parameters) on {train} "
          f"for {args.epochs} epochs on {device}")
    history = ak.train_model(model, train, test, epochs=args.epochs, device=device,
                             seed=args.seed, augment=args.augment,
                             progress=not args.no_progress)
    last = history.last
    print(f"test accuracy {last['test_acc']:.4f} after {args.epochs} epochs "
          f"({sum(history['time_s']):.1f} s training)")
    if args.output:
        ak.save_checkpoint(args.output, model, dataset=args.dataset, epochs=args.epochs,
                           seed=args.seed, test_acc=last["test_acc"], history=history.records,
                           device=str(device))
        print(f"saved {args.output}")
    return 0


def _cmd_distill(args) -> int:
    import atkd_lite as ak
    from atkd_lite.distillers import parse_method

    method = parse_method(args.method)[0]
    _check_dataset(args.dataset)
    settings = _distill_settings(args)
    device = ak.get_device(args.device)
    train = ak.load_dataset(args.dataset, "train")
    test = ak.load_dataset(args.dataset, "test")
    if args.per_class:
        train = train.per_class(args.per_class, seed=0)
    teacher = _load_teacher(args.teacher)
    if teacher is None:
        teacher, _ = ak.pretrained_teacher(args.dataset, epochs=args.teacher_epochs,
                                           device=device, progress=not args.no_progress)
    ak.seed_everything(args.seed)
    student = ak.student_cnn(args.student_size, in_channels=train.in_channels,
                             num_classes=train.num_classes)
    print(f"distilling a {args.student_size} student ({ak.count_parameters(student):,} "
          f"parameters) with {method!r} on {train} on {device}")
    epochs = args.epochs or ak.profile().student_epochs
    result = ak.distill(teacher, student, train, test, method=method, epochs=epochs,
                        augment=args.augment, device=device, seed=args.seed,
                        progress=not args.no_progress, **settings)
    terms = ", ".join(f"{k} {v:.4f}" for k, v in result.history.last.items()
                      if k.startswith("loss"))
    print(f"test accuracy {result.test_acc:.4f} ({terms}; "
          f"{result.time_per_epoch:.2f} s per epoch)")
    if args.output:
        ak.save_checkpoint(args.output, result.student, dataset=args.dataset, method=method,
                           test_acc=result.test_acc, history=result.history.records,
                           distill=result.params)
        print(f"saved {args.output}")
    return 0


def _cmd_reproduce(args) -> int:
    from atkd_lite.distillers import METHODS
    from atkd_lite.experiments import reproduce

    _check_choices("method", args.methods or [], list(METHODS))
    results = reproduce(output_dir=args.output_dir, profile=args.profile, methods=args.methods,
                        teacher=_load_teacher(args.teacher), seeds=args.seeds,
                        epochs=args.epochs, per_class=args.per_class or None,
                        student_size=args.student_size, device=args.device,
                        progress=not args.no_progress, command=args.command_line,
                        **_distill_settings(args))
    print(results.to_markdown())
    print(f"wrote {args.output_dir}")
    return 0


def _cmd_sizes(args) -> int:
    from atkd_lite.distillers import METHODS
    from atkd_lite.experiments.sizes import SIZES, run_sizes

    methods = args.methods or ["student", "fma"]
    _check_choices("method", methods, list(METHODS))
    _check_choices("student size", args.sizes, list(SIZES))
    _check_dataset(args.dataset)
    per_class = 100 if args.per_class is None else args.per_class
    res = run_sizes(dataset=args.dataset, sizes=args.sizes, methods=methods,
                    seeds=args.seeds or [0, 1, 2], per_class=per_class or None,
                    epochs=args.epochs or 30, teacher=_load_teacher(args.teacher),
                    teacher_epochs=args.teacher_epochs, output_dir=args.output_dir,
                    device=args.device, progress=not args.no_progress,
                    command=args.command_line, **_distill_settings(args))
    print(res.to_markdown())
    print(f"wrote {args.output_dir}")
    return 0


def _cmd_faithfulness(args) -> int:
    from atkd_lite.distillers import METHODS
    from atkd_lite.experiments.faithfulness import (
        DEFAULT_METHODS,
        MAP_KINDS,
        faithfulness_markdown,
        run_faithfulness,
    )

    methods = args.methods or list(DEFAULT_METHODS)
    _check_choices("method", methods, list(METHODS))
    _check_choices("map kind", args.kinds, list(MAP_KINDS))
    _check_dataset(args.dataset)
    per_class = 100 if args.per_class is None else args.per_class
    res = run_faithfulness(dataset=args.dataset, methods=methods, seeds=args.seeds or [0, 1, 2],
                           per_class=per_class or None, epochs=args.epochs or 30,
                           student_size=args.student_size, teacher=_load_teacher(args.teacher),
                           teacher_epochs=args.teacher_epochs, kinds=args.kinds,
                           score_n=args.score_n or None, ig_steps=args.ig_steps,
                           output_dir=args.output_dir, device=args.device,
                           progress=not args.no_progress, command=args.command_line,
                           **_distill_settings(args))
    print(faithfulness_markdown(res, "energy"))
    print(faithfulness_markdown(res, "pointing"))
    print(f"wrote {args.output_dir}")
    return 0


def _cmd_shortcut(args) -> int:
    from atkd_lite.data import decoy_mnist
    from atkd_lite.distillers import METHODS
    from atkd_lite.experiments.shortcut import (
        DEFAULT_METHODS,
        REFERENCES,
        run_shortcut,
        shortcut_markdown,
    )

    methods = args.methods or list(DEFAULT_METHODS)
    _check_choices("method", methods, list(METHODS))
    _check_choices("reference", args.references, list(REFERENCES))
    if args.beta is not None:
        raise ValueError("--beta is tuned per method in this experiment; use --no-tune to "
                         "run every method at its default weight instead")
    decoy_mnist("test", swatch=args.swatch)  # a swatch that does not fit: fail now
    res = run_shortcut(rhos=args.rhos, methods=methods, references=args.references,
                       seeds=args.seeds or list(range(10)),
                       per_class=100 if args.per_class is None else args.per_class or None,
                       epochs=args.epochs or 20, swatch=args.swatch,
                       student_size=args.student_size, teacher=_load_teacher(args.teacher),
                       teacher_epochs=args.teacher_epochs, tune=not args.no_tune,
                       tune_seeds=args.tune_seeds, score_n=args.score_n or None,
                       max_teacher_gap=args.max_teacher_gap, output_dir=args.output_dir,
                       device=args.device, progress=not args.no_progress,
                       command=args.command_line, **_distill_settings(args))
    print(shortcut_markdown(res))
    print(f"wrote {args.output_dir}")
    return 0


# ---------------------------------------------------------------------------------------
# the parser

def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``atkd-lite`` command line."""
    parser = argparse.ArgumentParser(
        prog="atkd-lite",
        description="Attention-guided knowledge distillation: train teachers, distil "
                    "students, reproduce the book's experiments.",
        epilog="Datasets: mnist5k (embedded, offline), cluttered (offline), mnist, "
               "fashion-mnist, cifar10 (downloaded into $ATKD_LITE_CACHE).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("datasets", help="list the datasets")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("train-teacher", help="train the default teacher CNN")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k)")
    p.add_argument("--epochs", type=_positive_int, default=12, help="epochs (default: 12)")
    p.add_argument("--augment", type=_nonneg_int, default=2,
                   help="max random shift in pixels, 0 for none (default: 2)")
    p.add_argument("--limit-per-class", type=_positive_int, default=None,
                   help="train on this many images per class (quick runs)")
    p.add_argument("--output", "-o", default=None, help="checkpoint file to write")
    _add_common(p)
    p.set_defaults(func=_cmd_train_teacher)

    p = sub.add_parser("distill", help="distil one student from the teacher (one run)")
    p.add_argument("--method", default="fma",
                   help="student, kd, at, fma, mip, sals, at+kd, fma+kd, mip+kd, sals+kd "
                        "(default: fma)")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k)")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (default: the pretrained teacher, trained once)")
    p.add_argument("--teacher-epochs", type=_positive_int, default=12,
                   help="epochs of the pretrained teacher (default: 12)")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES,
                   help="student size (default: small)")
    p.add_argument("--per-class", type=_positive_int, default=None,
                   help="training images per class (low-data setting)")
    p.add_argument("--augment", type=_nonneg_int, default=0,
                   help="max random shift in pixels (default: 0)")
    p.add_argument("--output", "-o", default=None, help="student checkpoint file to write")
    _add_distill_options(p)
    _add_common(p)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("reproduce",
                       help="every method x several seeds; results table, file and plot")
    _add_grid_options(p, "all", "the profile's", "results/mnist5k-lowdata")
    p.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                   help="settings profile (default: $ATKD_LITE_PROFILE, else by device)")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES)
    _add_distill_options(p)
    _add_common(p, seed=False)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("sizes", help="students of three sizes from one teacher cache")
    _add_grid_options(p, "student,fma", "0,1,2", "results/mnist5k-sizes")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--sizes", type=_list_of(str), default=STUDENT_SIZES,
                   help="comma-separated student sizes (default: tiny,small,medium)")
    _add_distill_options(p)
    _add_common(p, seed=False)
    p.set_defaults(func=_cmd_sizes)

    p = sub.add_parser("faithfulness", help="maps vs ground-truth boxes on cluttered digits")
    _add_grid_options(p, "student,kd,fma,mip,sals", "0,1,2", "results/cluttered-faithfulness")
    p.add_argument("--dataset", default="cluttered")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES)
    p.add_argument("--kinds", type=_list_of(str), default=None,
                   help="comma-separated map kinds (default: all)")
    p.add_argument("--score-n", type=_nonneg_int, default=0,
                   help="test images to score; 0 = all")
    p.add_argument("--ig-steps", type=_positive_int, default=16)
    _add_distill_options(p)
    _add_common(p, seed=False)
    p.set_defaults(func=_cmd_faithfulness)

    p = sub.add_parser("shortcut",
                       help="decoy digits: does the teacher's attention keep the student "
                            "off a shortcut?")
    _add_grid_options(p, ",".join(["student", "kd", "at", "fma", "mip", "sals", "at+kd",
                                   "fma+kd", "mip+kd", "sals+kd"]),
                      "0,1,...,9", "results/decoy-shortcut")
    p.add_argument("--rhos", type=_probability_list, default=[1.0, 0.9],
                   help="comma-separated probabilities that a training swatch follows the "
                        "label (default: 1.0,0.9)")
    p.add_argument("--swatch", type=_positive_int, default=4,
                   help="swatch side in pixels, 1 to 14 (default: 4, as Ross et al.)")
    p.add_argument("--references", type=_list_of(str), default=["rrr", "clean"],
                   help="reference runs: rrr (true-mask penalty), clean (no swatch) "
                        "(default: rrr,clean)")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES)
    p.add_argument("--no-tune", action="store_true",
                   help="use every method's default weight instead of tuning it")
    p.add_argument("--tune-seeds", type=_list_of(int), default=[100],
                   help="seeds of the tuning runs (default: 100)")
    p.add_argument("--score-n", type=_nonneg_int, default=500,
                   help="test images whose maps are scored; 0 = all (default: 500)")
    p.add_argument("--max-teacher-gap", type=float, default=0.05,
                   help="refuse a teacher whose flipped-split accuracy is more than this "
                        "below its clean accuracy (default: 0.05)")
    _add_distill_options(p)
    _add_common(p, seed=False)
    p.set_defaults(func=_cmd_shortcut)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with argv (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args.command_line = " ".join(["atkd-lite", *argv])
    if args.command == "faithfulness" and args.kinds is None:
        from atkd_lite.experiments.faithfulness import MAP_KINDS

        args.kinds = list(MAP_KINDS)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"atkd-lite {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"atkd-lite {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
