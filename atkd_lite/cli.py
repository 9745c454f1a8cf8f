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
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

__all__ = ["build_parser", "main"]

STUDENT_SIZES = ["tiny", "small", "medium"]
MLP_NAMES = ["mlp-512x2", "mlp-256"]


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
    p.add_argument("--dist-backend", choices=["auto", "nccl", "gloo"], default="auto",
                   help="under torchrun: the process-group backend (default: auto = nccl "
                        "on CUDA, gloo on the CPU)")
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
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="batch size (per process under torchrun)")
    p.add_argument("--scale-lr", action="store_true",
                   help="under torchrun: multiply the learning rate by the number of "
                        "processes (linear scaling rule)")


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
    if args.scale_lr:
        settings["scale_lr"] = True
    try:
        DistillConfig().replace(**settings).validate()
    except ValueError as err:  # name the option as it is typed
        name = str(err).split()[0]
        option = "--" + name.replace("_", "-") if name in settings else None
        raise ValueError(f"argument {option}: {err}" if option else str(err)) from None
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


def _check_seeds(seeds) -> None:
    bad = [s for s in seeds or [] if s < 0]
    if bad:
        raise ValueError(f"argument --seeds: seeds must be non-negative integers, got {bad}")
    repeated = sorted({s for s in seeds or [] if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(f"argument --seeds: seed(s) {repeated} given twice; a repeated seed "
                         "repeats the same run (paired seeds must differ)")


def _check_not_the_teacher(output, teacher) -> None:
    """Refuse to write the student over the teacher checkpoint it was distilled from."""
    if output and teacher and os.path.realpath(output) == os.path.realpath(teacher):
        raise ValueError(f"argument -o/--output: {output} is the teacher checkpoint "
                         "(--teacher); writing the student there would replace the teacher: "
                         "choose another file")


def _output_file(path):
    """``--output``: checked now, before any training (None passes)."""
    from atkd_lite.files import check_output_file

    return None if path is None else check_output_file(path, "argument --output")


def _claim_output_dir(path):
    """``--output-dir``: checked and claimed for this process now, before any training."""
    from atkd_lite.experiments.results import claim_output_dir
    from atkd_lite.files import check_output_dir

    check_output_dir(path, "argument --output-dir")
    return claim_output_dir(path)


def _say(*args) -> None:
    """Print on the main process only: under torchrun every process runs the command."""
    if os.environ.get("RANK", "0") == "0":
        print(*args, flush=True)


# ---------------------------------------------------------------------------------------
# commands

def _cmd_datasets(args) -> int:
    from atkd_lite.data import DATASETS

    for name, about in DATASETS.items():
        _say(f"{name:15s} {about}")
    return 0


def _cmd_train_teacher(args) -> int:
    import atkd_lite as ak
    from atkd_lite.checkpoints import teacher_cache_path

    _check_dataset(args.dataset)
    device = ak.get_device(args.device)
    _output_file(args.output)
    if args.output is None:
        # no -o: the teacher goes where pretrained_teacher() (and distill) look for it
        if args.limit_per_class:
            raise ValueError("argument --limit-per-class: a teacher trained on a subset is "
                             "not the default teacher, so it is not cached; give --output "
                             "FILE to keep it")
        extra = {"scale_lr": True} if args.scale_lr else {}
        path = teacher_cache_path(args.dataset, args.epochs, args.seed, augment=args.augment,
                                  **extra)
        if path.exists() and not args.retrain:
            from atkd_lite.checkpoints import CheckpointError, load_checkpoint

            try:
                _, meta = load_checkpoint(path)
            except CheckpointError as err:
                _say(f"the cached teacher is unusable and will be trained again: {err}")
            else:
                _say(f"this teacher is already cached at {path} (test accuracy "
                      f"{meta.get('test_acc', float('nan')):.4f}); nothing to train "
                      "(pass --retrain to train it again)")
                return 0
        _say(f"training the teacher on {args.dataset} for {args.epochs} epochs on {device}")
        _, meta = ak.pretrained_teacher(args.dataset, epochs=args.epochs, seed=args.seed,
                                        device=device, progress=not args.no_progress,
                                        retrain=args.retrain, augment=args.augment, **extra)
        _say(f"test accuracy {meta['test_acc']:.4f} after {args.epochs} epochs")
        extra = "".join(f", {k}={v}" for k, v in (("seed", args.seed), ("augment", args.augment))
                        if v != {"seed": 0, "augment": 2}[k])
        users = f"pretrained_teacher({args.dataset!r}, epochs={args.epochs}{extra})"
        if not extra:
            data = "" if args.dataset == "mnist5k" else f" --dataset {args.dataset}"
            users = f"`atkd-lite distill{data} --teacher-epochs {args.epochs}` and {users}"
        _say(f"saved {path}; {users} will use it")
        return 0
    train = ak.load_dataset(args.dataset, "train")
    test = ak.load_dataset(args.dataset, "test")
    if args.limit_per_class:
        train = train.per_class(args.limit_per_class, seed=args.seed)
    ak.seed_everything(args.seed)  # the initial weights are part of the run
    model = ak.teacher_cnn(in_channels=train.in_channels, num_classes=train.num_classes)
    _say(f"training the teacher ({ak.count_parameters(model):,} parameters) on {train} "
          f"for {args.epochs} epochs on {device}")
    history = ak.train_model(model, train, test, epochs=args.epochs, device=device,
                             seed=args.seed, augment=args.augment,
                             progress=not args.no_progress,
                             **({"scale_lr": True} if args.scale_lr else {}))
    last = history.last
    _say(f"test accuracy {last['test_acc']:.4f} after {args.epochs} epochs "
          f"({sum(history['time_s']):.1f} s training)")
    ak.save_checkpoint(args.output, model, dataset=args.dataset, epochs=args.epochs,
                       seed=args.seed, test_acc=last["test_acc"], history=history.records,
                       device=str(device), **history.meta)
    _say(f"saved {args.output}")
    return 0


def _cmd_distill(args) -> int:
    import atkd_lite as ak
    from atkd_lite.distillers import parse_method

    method = parse_method(args.method)[0]
    _check_dataset(args.dataset)
    settings = _distill_settings(args)
    device = ak.get_device(args.device)
    _output_file(args.output)
    _check_not_the_teacher(args.output, args.teacher)
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
    _say(f"distilling a {args.student_size} student ({ak.count_parameters(student):,} "
          f"parameters) with {method!r} on {train} on {device}")
    epochs = args.epochs or ak.profile().student_epochs
    result = ak.distill(teacher, student, train, test, method=method, epochs=epochs,
                        augment=args.augment, device=device, seed=args.seed,
                        progress=not args.no_progress, **settings)
    terms = ", ".join(f"{k} {v:.4f}" for k, v in result.history.last.items()
                      if k.startswith("loss"))
    _say(f"test accuracy {result.test_acc:.4f} ({terms}; "
          f"{result.time_per_epoch:.2f} s per epoch)")
    if args.output:
        ak.save_checkpoint(args.output, result.student, dataset=args.dataset, method=method,
                           test_acc=result.test_acc, history=result.history.records,
                           distill=result.params)
        _say(f"saved {args.output}")
    return 0


def _prepare_grid(args, methods, dataset: bool = True):
    """Every check of a grid command, before any work: methods, dataset, seeds, settings,
    device, teacher checkpoint, output folder. Returns ``(settings, teacher)``."""
    from atkd_lite.device import get_device
    from atkd_lite.methods import METHODS

    _check_choices("method", methods, list(METHODS))
    if dataset:
        _check_dataset(args.dataset)
    _check_seeds(args.seeds)
    settings = _distill_settings(args)
    get_device(args.device)
    teacher = _load_teacher(args.teacher)
    _claim_output_dir(args.output_dir)
    return settings, teacher


def _cmd_reproduce(args) -> int:
    from atkd_lite.experiments import reproduce

    settings, teacher = _prepare_grid(args, args.methods or [], dataset=False)
    results = reproduce(output_dir=args.output_dir, profile=args.profile, methods=args.methods,
                        teacher=teacher, seeds=args.seeds,
                        epochs=args.epochs, per_class=args.per_class or None,
                        student_size=args.student_size, device=args.device,
                        progress=not args.no_progress, command=args.command_line,
                        controls=not args.no_controls, **settings)
    _say(results.to_markdown())
    _say(f"wrote {args.output_dir}")
    return 0


def _cmd_sizes(args) -> int:
    from atkd_lite.experiments.sizes import SIZES, run_sizes

    methods = args.methods or ["student", "fma"]
    _check_choices("student size", args.sizes, list(SIZES))
    settings, teacher = _prepare_grid(args, methods)
    per_class = 100 if args.per_class is None else args.per_class
    res = run_sizes(dataset=args.dataset, sizes=args.sizes, methods=methods,
                    seeds=args.seeds or [0, 1, 2], per_class=per_class or None,
                    epochs=args.epochs or 30, teacher=teacher,
                    teacher_epochs=args.teacher_epochs, output_dir=args.output_dir,
                    device=args.device, progress=not args.no_progress,
                    command=args.command_line, **settings)
    _say(res.to_markdown())
    _say(f"wrote {args.output_dir}")
    return 0


def _cmd_faithfulness(args) -> int:
    from atkd_lite.experiments.faithfulness import (
        DEFAULT_METHODS,
        MAP_KINDS,
        faithfulness_markdown,
        run_faithfulness,
    )

    methods = args.methods or list(DEFAULT_METHODS)
    _check_choices("map kind", args.kinds, list(MAP_KINDS))
    settings, teacher = _prepare_grid(args, methods)
    per_class = 100 if args.per_class is None else args.per_class
    res = run_faithfulness(dataset=args.dataset, methods=methods, seeds=args.seeds or [0, 1, 2],
                           per_class=per_class or None, epochs=args.epochs or 30,
                           student_size=args.student_size, teacher=teacher,
                           teacher_epochs=args.teacher_epochs, kinds=args.kinds,
                           score_n=args.score_n or None, ig_steps=args.ig_steps,
                           output_dir=args.output_dir, device=args.device,
                           progress=not args.no_progress, command=args.command_line,
                           **settings)
    _say(faithfulness_markdown(res, "energy"))
    _say(faithfulness_markdown(res, "pointing"))
    _say(f"wrote {args.output_dir}")
    return 0


def _cmd_tune(args) -> int:
    from atkd_lite.device import get_device
    from atkd_lite.experiments.tuning import SEARCHES, tune, tuning_markdown

    searches = args.searches or list(SEARCHES)
    _check_choices("search", searches, list(SEARCHES))
    _check_seeds(args.seeds)
    get_device(args.device)
    _claim_output_dir(args.output_dir)
    res = tune(searches=searches, seeds=args.seeds or [0, 1, 2], epochs=args.epochs or 30,
               extend=args.extend, teacher_epochs=args.teacher_epochs,
               output_dir=args.output_dir, device=args.device, progress=not args.no_progress,
               command=args.command_line)
    print(tuning_markdown(res))
    print(f"wrote {args.output_dir}")
    return 0


def _cmd_shortcut(args) -> int:
    from atkd_lite.data import decoy_mnist
    from atkd_lite.experiments.shortcut import (
        DEFAULT_METHODS,
        REFERENCES,
        run_shortcut,
        shortcut_markdown,
    )

    methods = args.methods or list(DEFAULT_METHODS)
    references = list(REFERENCES) if args.references is None else args.references
    _check_choices("reference", references, list(REFERENCES))
    if args.beta is not None:
        raise ValueError("--beta is tuned per method in this experiment; use --no-tune to "
                         "run every method at its default weight instead")
    decoy_mnist("test", swatch=args.swatch)  # a swatch that does not fit: fail now
    settings, teacher = _prepare_grid(args, methods, dataset=False)
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
    _say(shortcut_markdown(res))
    return 0


def _cmd_shortcut_merge(args) -> int:
    from atkd_lite.experiments.shortcut import load_shortcut, merge_shortcut, shortcut_markdown

    parts = [load_shortcut(path) for path in args.parts]  # every part readable: then write
    out = os.path.realpath(args.output_dir)
    for path in args.parts:
        folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
        if os.path.realpath(folder) == out:
            raise ValueError(f"argument --output-dir: {args.output_dir} holds the part "
                             f"{path}; writing the merged grid there would replace it: "
                             "choose a new folder")
    _claim_output_dir(args.output_dir)
    res = merge_shortcut(parts, output_dir=args.output_dir)
    _say(shortcut_markdown(res))
    _say(f"wrote {args.output_dir}")
    return 0


def _cmd_recipe(args) -> int:
    from atkd_lite.device import get_device
    from atkd_lite.experiments.recipes import RECIPES, run_recipe
    from atkd_lite.methods import METHODS

    _check_choices("recipe", [args.name], list(RECIPES))
    _check_choices("method", args.methods or [], list(METHODS))
    _check_seeds(args.seeds)
    get_device(args.device)
    _claim_output_dir(args.output_dir)
    changes = {k: v for k, v in (("teacher_epochs", args.teacher_epochs),
                                 ("student_epochs", args.epochs)) if v is not None}
    res = run_recipe(args.name, methods=args.methods, seeds=args.seeds, root=args.root,
                     output_dir=args.output_dir, device=args.device,
                     progress=not args.no_progress, command=args.command_line, **changes)
    _say(res.to_markdown())
    _say(f"wrote {args.output_dir}")
    return 0


# ---------------------------------------------------------------------------------------
# the parser

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

    p = sub.add_parser("datasets", help="list the datasets")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("train-teacher", help="train the default teacher CNN")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k)")
    p.add_argument("--epochs", type=_positive_int, default=12, help="epochs (default: 12)")
    p.add_argument("--augment", type=_nonneg_int, default=2,
                   help="max random shift in pixels, 0 for none (default: 2)")
    p.add_argument("--limit-per-class", type=_positive_int, default=None,
                   help="train on this many images per class (quick runs)")
    p.add_argument("--output", "-o", default=None,
                   help="checkpoint file to write (default: the cache, where distill and "
                        "pretrained_teacher() find it)")
    p.add_argument("--retrain", action="store_true",
                   help="without --output: train again even if the cache has this teacher")
    p.add_argument("--scale-lr", action="store_true",
                   help="under torchrun: multiply the learning rate by the number of "
                        "processes (linear scaling rule)")
    _add_common(p)
    p.set_defaults(func=_cmd_train_teacher)

    p = sub.add_parser("distill", help="distil one student from the teacher (one run)")
    p.add_argument("--method", default="fma",
                   help="a registered method (atkd_lite.methods.METHODS), e.g. student, "
                        "kd, at, fma, mip, sals, fma+kd (default: fma)")
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
    p.add_argument("--no-controls", action="store_true",
                   help="skip the controls (label smoothing, transfer set, small teacher, "
                        "shuffled and untrained teacher maps)")
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
    _add_grid_options(p, "every method with a teacher and its +kd variant",
                      "0,1,...,9", "results/decoy-shortcut")
    p.add_argument("--rhos", type=_probability_list, default=[1.0, 0.9],
                   help="comma-separated probabilities that a training swatch follows the "
                        "label (default: 1.0,0.9)")
    p.add_argument("--swatch", type=_positive_int, default=4,
                   help="swatch side in pixels, 1 to 14 (default: 4, as Ross et al.)")
    p.add_argument("--references", type=_list_of(str), default=None,
                   help="reference runs: rrr (true-mask penalty), clean (no swatch) "
                        "(default: rrr,clean)")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES + MLP_NAMES,
                   help="the student: a CNN size, or an MLP (mlp-512x2: the testbed where "
                        "the shortcut bites; give it --methods from MLP_METHODS, e.g. "
                        "student,kd,sals,tmask, and --lr 1e-3)")
    p.add_argument("--controls", nargs="?", const=True, default=False, type=_list_of(str),
                   help="also run the controls of the teacher's-map-as-mask question: all "
                        "of them (rrr-wrong, rrr-all, tmask-shuffled, rrr-centre), or a "
                        "comma-separated list; each needs the method whose weight it takes "
                        "(tmask, rrr)")
    p.add_argument("--no-tune", action="store_true",
                   help="use every method's default weight instead of tuning it")
    p.add_argument("--tune-seeds", type=_list_of(int), default=[100],
                   help="seeds of the tuning runs (default: 100)")
    p.add_argument("--select-on", choices=["val", "val_random"], default="val",
                   help="choose each weight on the training distribution's validation "
                        "split (val, as a practitioner) or on random shades (val_random: "
                        "an oracle; default: val)")
    p.add_argument("--score-n", type=_nonneg_int, default=500,
                   help="test images whose maps are scored; 0 = all (default: 500)")
    p.add_argument("--max-teacher-gap", type=float, default=0.05,
                   help="refuse a teacher whose flipped-split accuracy is more than this "
                        "below its clean accuracy (default: 0.05)")
    _add_distill_options(p)
    _add_common(p, seed=False)
    p.set_defaults(func=_cmd_shortcut)

    p = sub.add_parser("shortcut-merge",
                       help="join parts of one shortcut grid run side by side (e.g. one "
                            "rho per core)",
                       description="Join the results of `atkd-lite shortcut` commands that "
                                   "ran parts of one grid (e.g. --rhos 1 --references rrr "
                                   "and --rhos 0.9 --references rrr,clean, at the same "
                                   "commit) into one grid, as if one command had run it.")
    p.add_argument("parts", nargs="+", help="results folders of the parts, in rho order")
    p.add_argument("--output-dir", required=True, help="where to write the merged results")
    p.set_defaults(func=_cmd_shortcut_merge)

    p = sub.add_parser("tune", help="choose every method's weight on the validation split")
    p.add_argument("--output-dir", default="results/mnist5k-tuning")
    p.add_argument("--searches", type=_list_of(str), default=None,
                   help="comma-separated searches: kd, ls, at, fma, mip, sals (default: all)")
    p.add_argument("--seeds", type=_list_of(int), default=None, help="default: 0,1,2")
    p.add_argument("--epochs", type=_positive_int, default=None, help="default: 30")
    p.add_argument("--extend", type=_nonneg_int, default=3,
                   help="extensions of a grid whose best value is at its edge (default: 3)")
    p.add_argument("--teacher-epochs", type=_positive_int, default=12)
    _add_common(p, seed=False)
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("recipe", help="colour and medical data: a whole recipe (GPU)")
    p.add_argument("name", help="cifar10-wrn, bloodmnist or pneumoniamnist")
    p.add_argument("--output-dir", required=True,
                   help="where to write results.{json,csv,md,png} and teacher.pt (runs "
                        "already there are kept: an interrupted run resumes)")
    p.add_argument("--methods", type=_list_of(str), default=None,
                   help="comma-separated methods (default: the recipe's)")
    p.add_argument("--seeds", type=_list_of(int), default=None,
                   help="comma-separated seeds (default: the recipe's)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="student epochs (default: the recipe's)")
    p.add_argument("--teacher-epochs", type=_positive_int, default=None,
                   help="teacher epochs (default: the recipe's)")
    p.add_argument("--root", default=None,
                   help="data folder (default: $ATKD_LITE_CACHE, where downloads go)")
    _add_common(p, seed=False)
    p.set_defaults(func=_cmd_recipe)
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
    if args.command == "faithfulness" and args.kinds is None:
        from atkd_lite.experiments.faithfulness import MAP_KINDS

        args.kinds = list(MAP_KINDS)
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
