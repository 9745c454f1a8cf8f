"""Fingerprints of every method's training, to show that a refactor changes no number.

Each method (online and from a teacher cache) trains a tiny, seeded student for a few
steps on 64 embedded digits on the CPU, and the script prints one line per run: the
SHA-256 of the trained weights and the last losses. It also prints the digest of a teacher
cache. Run it before and after a change (same machine, same torch, one thread) and compare
the two outputs: every line must be equal::

    python tools/method_fingerprints.py > before.txt      # on the old commit
    python tools/method_fingerprints.py > after.txt       # on the new one
    diff before.txt after.txt && echo "no number changed"
"""

from __future__ import annotations

import torch

import atkd_lite as ak
from atkd_lite.cache import TeacherCache
from atkd_lite.data import decoy_mnist
from atkd_lite.distillers import METHODS, make_distiller  # noqa: F401 (public names)
from atkd_lite.files import tensor_digest

ALL = ("student", "kd", "at", "fma", "mip", "sals", "at+kd", "fma+kd", "mip+kd", "sals+kd")


def _run(method, teacher, train, test, cache=None, **kw) -> str:
    ak.seed_everything(0)
    student = ak.student_cnn("tiny", in_channels=train.in_channels)
    res = ak.distill(teacher, student, train, test, method=method, epochs=2, batch_size=16,
                     device="cpu", progress=False, cache=cache, **kw)
    last = {k: round(v, 10) for k, v in res.history.last.items()
            if k.startswith("loss") or k == "test_acc"}
    return f"{tensor_digest(res.student.state_dict())[:16]} {last}"


def main() -> None:
    torch.set_num_threads(1)
    ak.seed_everything(1)
    teacher = ak.teacher_cnn().eval()
    train = ak.load_dataset("mnist5k", "train").subset(range(64))
    test = ak.load_dataset("mnist5k", "test").subset(range(32))
    cache = TeacherCache.build(teacher, train, progress=False, device="cpu")
    print("cache", tensor_digest(cache._tensors())[:16])
    for method in ALL:
        print(method, "online", _run(method, teacher, train, test))
        print(method, "cached", _run(method, teacher, train, test, cache=cache))
    layers = {"teacher_layers": ["features.s1c2", "features.s3c1"]}
    print("fma layers", _run("fma", teacher, train, test, **layers))
    decoy = decoy_mnist("train").subset(range(64))
    from atkd_lite.experiments.shortcut import RRRDistiller

    print("rrr", _run(RRRDistiller.for_data(decoy), teacher, decoy, test))


if __name__ == "__main__":
    main()
