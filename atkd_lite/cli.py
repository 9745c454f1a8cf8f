"""The ``atkd-lite`` command line (also ``python -m atkd_lite``).

Subcommands::

    atkd-lite train-teacher --dataset mnist5k --epochs 12 --output teacher.pt
    atkd-lite datasets

Bad arguments print a one-line error and exit with status 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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


def build_parser() -> argparse.ArgumentParser:
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

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
