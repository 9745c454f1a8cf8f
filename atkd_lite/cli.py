"""The ``atkd-lite`` command line (also ``python -m atkd_lite``).

Subcommands::

    atkd-lite train-teacher --dataset mnist5k --epochs 12 --output teacher.pt
    atkd-lite datasets
    atkd-lite distill --method sals --student-size small --per-class 100 --epochs 15
    atkd-lite reproduce --output-dir results/mnist5k-lowdata

Bad arguments print a one-line error and exit with status 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


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


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps or auto (default: auto = cuda → mps → cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _cmd_datasets(args) -> int:
    from atkd_lite.data import DATASETS

    for name, about in DATASETS.items():
        print(f"{name:15s} {about}")
    return 0


def _cmd_train_teacher(args) -> int:
    import atkd_lite as ak
    from atkd_lite.data import DATASETS

    if args.dataset not in DATASETS:
        args.parser.error(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
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


def _check_methods(parser, methods) -> None:
    from atkd_lite.distill import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")


def _distill_settings(args) -> dict:
    return {k: v for k, v in (("alpha", args.alpha), ("beta", args.beta), ("T", args.T),
                              ("first", args.first), ("last", args.last),
                              ("attention_form", args.attention_form), ("lr", args.lr),
                              ("batch_size", args.batch_size)) if v is not None}


def _cmd_distill(args) -> int:
    import atkd_lite as ak
    from atkd_lite.data import DATASETS
    from atkd_lite.distill import distill

    _check_methods(args.parser, [args.method])
    if args.dataset not in DATASETS:
        args.parser.error(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    device = ak.get_device(args.device)
    train = ak.load_dataset(args.dataset, "train")
    test = ak.load_dataset(args.dataset, "test")
    if args.per_class:
        train = train.per_class(args.per_class, seed=0)
    if args.teacher:
        teacher, meta = ak.load_checkpoint(args.teacher)
    else:
        teacher, meta = ak.pretrained_teacher(args.dataset, epochs=args.teacher_epochs,
                                              device=device, progress=not args.no_progress)
    ak.seed_everything(args.seed)
    student = ak.student_cnn(args.student_size, in_channels=train.in_channels,
                             num_classes=train.num_classes)
    print(f"distilling a {args.student_size} student ({ak.count_parameters(student):,} "
          f"parameters) with {args.method!r} on {train} on {device}")
    epochs = args.epochs or ak.profile().student_epochs
    result = distill(teacher, student, train, test, method=args.method, epochs=epochs,
                     augment=args.augment, device=device, seed=args.seed,
                     progress=not args.no_progress, **_distill_settings(args))
    last = result.history.last
    terms = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k.startswith("loss"))
    print(f"test accuracy {result.test_acc:.4f} ({terms}; "
          f"{result.time_per_epoch:.2f} s per epoch)")
    if args.output:
        ak.save_checkpoint(args.output, result.student, dataset=args.dataset,
                           method=args.method, test_acc=result.test_acc,
                           history=result.history.records, distill=result.params)
        print(f"saved {args.output}")
    return 0


def _cmd_reproduce(args) -> int:
    from atkd_lite.experiments import ALL_METHODS, reproduce

    methods = args.methods.split(",") if args.methods else list(ALL_METHODS)
    _check_methods(args.parser, methods)
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        args.parser.error(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {args.seeds!r}")
    command = " ".join(["atkd-lite", *args.argv])
    teacher = None
    if args.teacher:
        import atkd_lite as ak

        teacher, _ = ak.load_checkpoint(args.teacher)
    results = reproduce(output_dir=args.output_dir, profile=args.profile, methods=methods,
                        teacher=teacher,
                        seeds=seeds, epochs=args.epochs, per_class=args.per_class,
                        student_size=args.student_size, device=args.device,
                        progress=not args.no_progress, command=command,
                        **_distill_settings(args))
    print(results.to_markdown())
    print(f"wrote {', '.join(f'{args.output_dir}/{f}' for f in ('results.json', 'results.csv', 'results.md', 'results.png'))}")
    return 0


def _add_distill_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student-size", default="small", choices=["tiny", "small", "medium"],
                   help="student size (default: small)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="student epochs (default: the profile's)")
    p.add_argument("--per-class", type=_positive_int, default=None,
                   help="training images per class (low-data setting)")
    p.add_argument("--alpha", type=float, default=None, help="KD weight (default: tuned)")
    p.add_argument("--beta", type=float, default=None,
                   help="attention-loss weight (default: tuned)")
    p.add_argument("--T", type=float, default=None, help="KD temperature (default: tuned)")
    p.add_argument("--first", type=_nonneg_int, default=None, help="ATCam first layers")
    p.add_argument("--last", type=_nonneg_int, default=None, help="ATCam last layers")
    p.add_argument("--attention-form", choices=["l2", "bce"], default=None,
                   help="attention-loss form (default: tuned)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="batch size")


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
    p.add_argument("--augment", type=int, default=2,
                   help="max random shift in pixels, 0 for none (default: 2)")
    p.add_argument("--limit-per-class", type=_positive_int, default=None,
                   help="train on this many images per class (quick runs)")
    p.add_argument("--output", "-o", default=None, help="checkpoint file to write")
    _add_common(p)
    p.set_defaults(func=_cmd_train_teacher, parser=p)

    p = sub.add_parser("distill", help="distil one student from the teacher (one run)")
    p.add_argument("--method", default="fma",
                   help="student, kd, at, fma, mip, sals, at+kd, fma+kd, mip+kd, sals+kd "
                        "(default: fma)")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k)")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (default: the pretrained teacher, trained once)")
    p.add_argument("--teacher-epochs", type=_positive_int, default=12,
                   help="epochs of the pretrained teacher (default: 12)")
    p.add_argument("--augment", type=_nonneg_int, default=0,
                   help="max random shift in pixels (default: 0)")
    p.add_argument("--output", "-o", default=None, help="student checkpoint file to write")
    _add_distill_options(p)
    _add_common(p)
    p.set_defaults(func=_cmd_distill, parser=p)

    p = sub.add_parser("reproduce",
                       help="every method x several seeds; results table, file and plot")
    p.add_argument("--output-dir", default="results/mnist5k-lowdata",
                   help="where to write results.{json,csv,md,png} "
                        "(default: results/mnist5k-lowdata)")
    p.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                   help="settings profile (default: $ATKD_LITE_PROFILE, else by device)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: profile's)")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (default: the pretrained teacher, trained once)")
    _add_distill_options(p)
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps or auto (default: auto = cuda → mps → cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_reproduce, parser=p)

    for name, (_, about) in DELEGATED.items():  # listed in --help; run by main()
        sub.add_parser(name, help=about, add_help=False)
    return parser


#: subcommands whose own parsers live with their experiment (``atkd-lite NAME --help``)
DELEGATED = {
    "faithfulness": ("atkd_lite.faithfulness", "maps vs ground-truth boxes on cluttered digits"),
    "sizes": ("atkd_lite.efficiency", "students of three sizes from one teacher cache"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line with argv (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        return int(importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as err:
        print(f"atkd-lite {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
