"""Check of chapter 7's exercise (efficiency): the bytes a teacher cache holds."""

from __future__ import annotations

import numbers

from atkd_lite.book.exercises.feedback import hint, passed

__all__ = ["check_cache_bytes"]


def check_cache_bytes(cache_bytes) -> None:
    """Check ``cache_bytes(n_images, height, width, n_classes, n_map_kinds) -> int``.

    Compared with the bytes a real :class:`~atkd_lite.cache.TeacherCache` holds (logits
    in float16, maps in uint8, no AT vectors) for a few small data sets.
    """
    from atkd_lite.cache import TeacherCache
    from atkd_lite.data import load_dataset
    from atkd_lite.models import student_cnn

    net = student_cnn("tiny").eval()
    for n_per_class, kinds in ((1, ["fma"]), (2, ["fma", "mip"])):
        data = load_dataset("mnist5k", "val").per_class(n_per_class)
        real = TeacherCache.build(net, data, maps=kinds, at=False, device="cpu",
                                  progress=False).nbytes()
        h, w = data.image_size
        got = cache_bytes(len(data), h, w, data.num_classes, len(kinds))
        hint(isinstance(got, numbers.Real) and got == real,
             f"for {len(data)} images of {h}×{w}, 10 classes and {len(kinds)} map kind(s) "
             f"the cache holds {real:,} bytes, you said {got!r}. Logits take 2 bytes each "
             f"(float16), map pixels 1 byte each (uint8).")
    passed("logits at 2 bytes per class and maps at 1 byte per pixel match what "
           "TeacherCache holds.")
