"""The ``atkd-lite`` command line (also ``python -m atkd_lite``): one subcommand per job.

Subcommands::

    atkd-lite datasets
    atkd-lite train-teacher --dataset mnist5k --epochs 12 --output teacher.pt
    atkd-lite distill --method sals --student-size small --per-class 100 --epochs 15
    atkd-lite reproduce --output-dir results/mnist5k-lowdata
    atkd-lite sizes --output-dir results/mnist5k-sizes
    atkd-lite faithfulness --output-dir results/cluttered-faithfulness
    atkd-lite shortcut --output-dir results/decoy-shortcut
    atkd-lite shortcut-merge results/part-rho1 results/part-rho0.9 --output-dir results/x
    atkd-lite tune --output-dir results/mnist5k-tuning
    atkd-lite recipe cifar10-wrn --output-dir results/cifar10-wrn

Data parallelism: start the same command with ``torchrun`` (one process per GPU, or per
CPU share with the gloo backend), e.g.
``torchrun --nproc_per_node 2 -m atkd_lite distill --method fma``; ``--batch-size`` is per
process, only rank 0 prints and writes, and the process group is torn down at the end,
also after an error (see :mod:`atkd_lite.distributed`).

Every argument and output path is checked before any work starts (no training is lost to
a typo in ``-o``). Bad arguments and errors print one line ``atkd-lite COMMAND: error: …``
and exit with status 2 (argparse's convention); Ctrl-C exits with 130 and SIGTERM with
143, without a traceback and without half-written files. Set ``ATKD_LITE_TRACEBACK=1``
to see the traceback of an error.

Each experiment's subcommand is defined in its own module of this package
(``atkd_lite.cli.lowdata`` for ``reproduce``, ``atkd_lite.cli.sizes``,
``atkd_lite.cli.faithfulness``, ``atkd_lite.cli.shortcut``, ``atkd_lite.cli.tuning``,
``atkd_lite.cli.recipes``; the one-run commands in ``atkd_lite.cli.training``), from
the options and checks they share (``atkd_lite.cli.options``); this module joins them
into one parser and runs a command with one-line errors and clean signal handling.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from atkd_lite.cli import faithfulness, lowdata, recipes, shortcut, sizes, training, tuning
from atkd_lite.cli.options import MLP_NAMES, STUDENT_SIZES

__all__ = ["COMMANDS", "MLP_NAMES", "STUDENT_SIZES", "build_parser", "main"]

#: the modules that add subcommands, in the order ``--help`` lists them
COMMANDS = (training, lowdata, sizes, faithfulness, shortcut, tuning, recipes)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``atkd-lite`` command line."""
    parser = argparse.ArgumentParser(
        prog="atkd-lite",
        description="Attention-guided knowledge distillation: train teachers, distil "
                    "students, reproduce the book's experiments.",
        epilog="Datasets: mnist5k (embedded, offline), cluttered, digits-rgb (offline), "
               "mnist, fashion-mnist, cifar10, pneumoniamnist, bloodmnist (downloaded into "
               "$ATKD_LITE_CACHE).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_commands(sub)
    return parser


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that every ``finally`` runs (temporary files
    are removed, locks released) before the process ends."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    if isinstance(err, KeyError) and err.args:  # str(KeyError) is the key's repr
        text = f"missing entry {err.args[0]!r}"
    first = text.splitlines()[0] if text else ""
    known = (ValueError, TypeError, OSError, RuntimeError, ArithmeticError)
    return first if isinstance(err, known) and first else f"{type(err).__name__}: {first}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line with argv (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args.command_line = " ".join(["atkd-lite", *argv])
    import contextlib
    import threading

    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    # under torchrun (one process per rank) errors say which rank had them
    ranked = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    who = f"atkd-lite {args.command}"
    if ranked:
        who += f" (rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']})"
    try:
        group = watchdog = contextlib.nullcontext()
        if ranked and hasattr(args, "device"):
            from atkd_lite import distributed

            # join the job before any work; torn down after it, on success and on error
            group = distributed.session(args.device, args.dist_backend)
            # a rank stuck in a collective still ends on SIGTERM or Ctrl-C
            watchdog = distributed.signal_watchdog(who)
        with watchdog, group as device:
            if device is not None:
                args.device = str(device)  # this rank's device (cuda:LOCAL_RANK)
                # ranks started with different arguments would diverge (one trains a
                # teacher while another loads one) and wait for each other forever:
                # every rank compares its arguments first, and all stop together
                distributed.check_same_settings(argv, "command-line arguments")
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"{who}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as err:  # one line, whatever went wrong
        if os.environ.get("ATKD_LITE_TRACEBACK"):
            raise
        message = _one_line(err)
        if ranked and any(w in message for w in ("closed by peer", "Connection reset",
                                                  "remote worker")):
            message = ("another process of this torchrun job stopped (its own error comes "
                       f"first); this one stopped too: {message}")
        print(f"{who}: error: {message}", file=sys.stderr)
        return 2
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
