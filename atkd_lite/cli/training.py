"""``atkd-lite datasets``, ``train-teacher`` and ``distill``: the one-run commands."""

from __future__ import annotations

from atkd_lite.cli.options import (
    STUDENT_SIZES,
    add_common,
    add_distill_options,
    check_dataset,
    check_not_the_teacher,
    distill_settings,
    load_teacher,
    nonneg_int,
    output_file,
    positive_int,
    say,
)


def run_datasets(args) -> int:
    """``atkd-lite datasets``: one line per dataset."""
    from atkd_lite.data import DATASETS

    for name, about in DATASETS.items():
        say(f"{name:15s} {about}")
    return 0


def run_train_teacher(args) -> int:
    """``atkd-lite train-teacher``: train the teacher into the cache or ``--output``."""
    import atkd_lite as ak
    from atkd_lite.checkpoints import teacher_cache_path

    check_dataset(args.dataset)
    device = ak.get_device(args.device)
    output_file(args.output)
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
                say(f"the cached teacher is unusable and will be trained again: {err}")
            else:
                say(f"this teacher is already cached at {path} (test accuracy "
                      f"{meta.get('test_acc', float('nan')):.4f}); nothing to train "
                      "(pass --retrain to train it again)")
                return 0
        say(f"training the teacher on {args.dataset} for {args.epochs} epochs on {device}")
        _, meta = ak.pretrained_teacher(args.dataset, epochs=args.epochs, seed=args.seed,
                                        device=device, progress=not args.no_progress,
                                        retrain=args.retrain, augment=args.augment, **extra)
        say(f"test accuracy {meta['test_acc']:.4f} after {args.epochs} epochs")
        extra = "".join(f", {k}={v}" for k, v in (("seed", args.seed), ("augment", args.augment))
                        if v != {"seed": 0, "augment": 2}[k])
        users = f"pretrained_teacher({args.dataset!r}, epochs={args.epochs}{extra})"
        if not extra:
            data = "" if args.dataset == "mnist5k" else f" --dataset {args.dataset}"
            users = f"`atkd-lite distill{data} --teacher-epochs {args.epochs}` and {users}"
        say(f"saved {path}; {users} will use it")
        return 0
    train = ak.load_dataset(args.dataset, "train")
    test = ak.load_dataset(args.dataset, "test")
    if args.limit_per_class:
        train = train.per_class(args.limit_per_class, seed=args.seed)
    ak.seed_everything(args.seed)  # the initial weights are part of the run
    model = ak.teacher_cnn(in_channels=train.in_channels, num_classes=train.num_classes)
    say(f"training the teacher ({ak.count_parameters(model):,} parameters) on {train} "
          f"for {args.epochs} epochs on {device}")
    history = ak.train_model(model, train, test, epochs=args.epochs, device=device,
                             seed=args.seed, augment=args.augment,
                             progress=not args.no_progress,
                             **({"scale_lr": True} if args.scale_lr else {}))
    last = history.last
    say(f"test accuracy {last['test_acc']:.4f} after {args.epochs} epochs "
          f"({sum(history['time_s']):.1f} s training)")
    ak.save_checkpoint(args.output, model, dataset=args.dataset, epochs=args.epochs,
                       seed=args.seed, test_acc=last["test_acc"], history=history.records,
                       device=str(device), **history.meta)
    say(f"saved {args.output}")
    return 0


def run_distill(args) -> int:
    """``atkd-lite distill``: one student from the teacher; ``--output`` keeps it."""
    import atkd_lite as ak
    from atkd_lite.distillers import parse_method

    method = parse_method(args.method)[0]
    check_dataset(args.dataset)
    settings = distill_settings(args)
    device = ak.get_device(args.device)
    output_file(args.output)
    check_not_the_teacher(args.output, args.teacher)
    train = ak.load_dataset(args.dataset, "train")
    test = ak.load_dataset(args.dataset, "test")
    if args.per_class:
        train = train.per_class(args.per_class, seed=0)
    teacher = load_teacher(args.teacher)
    if teacher is None:
        teacher, _ = ak.pretrained_teacher(args.dataset, epochs=args.teacher_epochs,
                                           device=device, progress=not args.no_progress)
    ak.seed_everything(args.seed)
    student = ak.student_cnn(args.student_size, in_channels=train.in_channels,
                             num_classes=train.num_classes)
    say(f"distilling a {args.student_size} student ({ak.count_parameters(student):,} "
          f"parameters) with {method!r} on {train} on {device}")
    epochs = args.epochs or ak.profile().student_epochs
    result = ak.distill(teacher, student, train, test, method=method, epochs=epochs,
                        augment=args.augment, device=device, seed=args.seed,
                        progress=not args.no_progress, **settings)
    terms = ", ".join(f"{k} {v:.4f}" for k, v in result.history.last.items()
                      if k.startswith("loss"))
    say(f"test accuracy {result.test_acc:.4f} ({terms}; "
          f"{result.time_per_epoch:.2f} s per epoch)")
    if args.output:
        ak.save_checkpoint(args.output, result.student, dataset=args.dataset, method=method,
                           test_acc=result.test_acc, history=result.history.records,
                           distill=result.params)
        say(f"saved {args.output}")
    return 0


def add_commands(sub) -> None:
    """Add this module's subcommands to the parser's ``sub`` (its subparsers)."""
    p = sub.add_parser("datasets", help="list the datasets")
    p.set_defaults(func=run_datasets)

    p = sub.add_parser("train-teacher", help="train the default teacher CNN")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k)")
    p.add_argument("--epochs", type=positive_int, default=12, help="epochs (default: 12)")
    p.add_argument("--augment", type=nonneg_int, default=2,
                   help="max random shift in pixels, 0 for none (default: 2)")
    p.add_argument("--limit-per-class", type=positive_int, default=None,
                   help="train on this many images per class (quick runs)")
    p.add_argument("--output", "-o", default=None,
                   help="checkpoint file to write (default: the cache, where distill and "
                        "pretrained_teacher() find it)")
    p.add_argument("--retrain", action="store_true",
                   help="without --output: train again even if the cache has this teacher")
    p.add_argument("--scale-lr", action="store_true",
                   help="under torchrun: multiply the learning rate by the number of "
                        "processes (linear scaling rule)")
    add_common(p)
    p.set_defaults(func=run_train_teacher)

    p = sub.add_parser("distill", help="distil one student from the teacher (one run)")
    p.add_argument("--method", default="fma",
                   help="a registered method (atkd_lite.methods.METHODS), e.g. student, "
                        "kd, at, fma, mip, sals, fma+kd (default: fma)")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (default: mnist5k)")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (default: the pretrained teacher, trained once)")
    p.add_argument("--teacher-epochs", type=positive_int, default=12,
                   help="epochs of the pretrained teacher (default: 12)")
    p.add_argument("--student-size", default="small", choices=STUDENT_SIZES,
                   help="student size (default: small)")
    p.add_argument("--per-class", type=positive_int, default=None,
                   help="training images per class (low-data setting)")
    p.add_argument("--augment", type=nonneg_int, default=0,
                   help="max random shift in pixels (default: 0)")
    p.add_argument("--output", "-o", default=None, help="student checkpoint file to write")
    add_distill_options(p)
    add_common(p)
    p.set_defaults(func=run_distill)
