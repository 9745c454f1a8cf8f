"""What the subcommands share: argparse types, option groups, and the checks every
command makes before any work (settings, choices, seeds, output paths).

Nothing here imports torch: ``atkd-lite --help`` stays quick.
"""

from __future__ import annotations

import argparse
import os

STUDENT_SIZES = ["tiny", "small", "medium"]
MLP_NAMES = ["mlp-512x2", "mlp-256"]


def int_at_least(minimum: int, kind: str):
    """An argparse ``type`` accepting integers >= ``minimum`` (``kind`` names them)."""

    def parse(text: str) -> int:
        """``text`` as an integer of at least ``minimum``, or an argparse error."""
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
        return value

    return parse


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 1."""
    return int_at_least(1, "positive")(text)


def nonneg_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 0."""
    return int_at_least(0, "non-negative")(text)


def list_of(kind):
    """An argparse ``type`` for comma-separated values, e.g. ``0,1,2``."""

    def parse(text: str) -> list:
        """``text`` split at commas, each item converted by ``kind``, or an argparse
        error."""
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


def probability_list(text: str) -> list[float]:
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


def add_common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """The options every command takes: ``--device``, ``--dist-backend``, ``--seed`` (when
    ``seed``) and ``--no-progress``."""
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps or auto (default: auto = cuda → mps → cpu)")
    p.add_argument("--dist-backend", choices=["auto", "nccl", "gloo"], default="auto",
                   help="under torchrun: the process-group backend (default: auto = nccl "
                        "on CUDA, gloo on the CPU)")
    if seed:
        p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_distill_options(p: argparse.ArgumentParser) -> None:
    """The distillation settings a command may override (epochs, weights, layers, form,
    learning rate, batch size), each ``None`` unless given."""
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="student epochs (default: the profile's or the tuned value)")
    p.add_argument("--alpha", type=float, default=None, help="KD weight (default: tuned)")
    p.add_argument("--beta", type=float, default=None,
                   help="attention-loss weight (default: tuned per method)")
    p.add_argument("--T", type=float, default=None, help="KD temperature (default: tuned)")
    p.add_argument("--first", type=nonneg_int, default=None, help="ATCam first layers")
    p.add_argument("--last", type=nonneg_int, default=None, help="ATCam last layers")
    p.add_argument("--attention-form", choices=["l2", "bce"], default=None,
                   help="attention-loss form (default: tuned)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="batch size (per process under torchrun)")
    p.add_argument("--scale-lr", action="store_true",
                   help="under torchrun: multiply the learning rate by the number of "
                        "processes (linear scaling rule)")


def add_grid_options(p: argparse.ArgumentParser, methods: str, seeds: str,
                      output_dir: str) -> None:
    """The options of a grid command (output folder, methods, seeds, teacher, digits a
    class), with its defaults named in the help."""
    p.add_argument("--output-dir", default=output_dir,
                   help=f"where to write results.{{json,csv,md,png}} (default: {output_dir})")
    p.add_argument("--methods", type=list_of(str), default=None,
                   help=f"comma-separated methods (default: {methods})")
    p.add_argument("--seeds", type=list_of(int), default=None,
                   help=f"comma-separated seeds (default: {seeds})")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (default: the pretrained teacher, trained once)")
    p.add_argument("--teacher-epochs", type=positive_int, default=12,
                   help="epochs of the pretrained teacher (default: 12)")
    p.add_argument("--per-class", type=nonneg_int, default=None,
                   help="training images per class, 0 = the whole split (default: 100)")


def distill_settings(args) -> dict:
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


def check_choices(what: str, values, valid) -> None:
    """Refuse any of ``values`` not in ``valid``, naming them and the choices."""
    bad = [v for v in values if v not in valid]
    if bad:
        raise ValueError(f"unknown {what}(s) {', '.join(map(str, bad))}; choose from "
                         f"{', '.join(valid)}")


def check_dataset(name: str) -> None:
    """Refuse a dataset name that :data:`atkd_lite.data.DATASETS` does not know."""
    from atkd_lite.data import DATASETS

    check_choices("dataset", [name], list(DATASETS))


def load_teacher(path):
    """The teacher of a ``--teacher`` checkpoint (verified on loading), or None."""
    from atkd_lite.checkpoints import load_checkpoint

    return load_checkpoint(path)[0] if path else None


def check_seeds(seeds) -> None:
    """Refuse negative or repeated ``--seeds`` (paired seeds must differ)."""
    bad = [s for s in seeds or [] if s < 0]
    if bad:
        raise ValueError(f"argument --seeds: seeds must be non-negative integers, got {bad}")
    repeated = sorted({s for s in seeds or [] if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(f"argument --seeds: seed(s) {repeated} given twice; a repeated seed "
                         "repeats the same run (paired seeds must differ)")


def check_not_the_teacher(output, teacher) -> None:
    """Refuse to write the student over the teacher checkpoint it was distilled from."""
    if output and teacher and os.path.realpath(output) == os.path.realpath(teacher):
        raise ValueError(f"argument -o/--output: {output} is the teacher checkpoint "
                         "(--teacher); writing the student there would replace the teacher: "
                         "choose another file")


def output_file(path):
    """``--output``: checked now, before any training (None passes)."""
    from atkd_lite.files import check_output_file

    return None if path is None else check_output_file(path, "argument --output")


def claim_output_dir(path):
    """``--output-dir``: checked and claimed for this process now, before any training."""
    from atkd_lite.experiments.results import claim_output_dir
    from atkd_lite.files import check_output_dir

    check_output_dir(path, "argument --output-dir")
    return claim_output_dir(path)


def say(*args) -> None:
    """Print on the main process only: under torchrun every process runs the command."""
    if os.environ.get("RANK", "0") == "0":
        print(*args, flush=True)


def prepare_grid(args, methods, dataset: bool = True):
    """Every check of a grid command, before any work: methods, dataset, seeds, settings,
    device, teacher checkpoint, output folder. Returns ``(settings, teacher)``."""
    from atkd_lite.device import get_device
    from atkd_lite.methods import METHODS

    check_choices("method", methods, list(METHODS))
    if dataset:
        check_dataset(args.dataset)
    check_seeds(args.seeds)
    settings = distill_settings(args)
    get_device(args.device)
    teacher = load_teacher(args.teacher)
    claim_output_dir(args.output_dir)
    return settings, teacher
