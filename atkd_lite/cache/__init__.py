"""The teacher cache: the teacher's logits and attention maps, computed once per dataset.

The teacher never changes during distillation, and without random augmentation every
image is the same in every epoch, so everything the teacher contributes — its logits, its
FMA/MIP/SALS maps, its AT vectors — can be computed once and looked up by dataset index.
That is the paper's "reuse the teacher's attention for students of several sizes": one
cache serves every student, method and seed trained on the same images.

Storage is compact: maps in [0, 1] as ``uint8`` (error <= 1/510) or ``float16``; logits
and AT vectors as ``float16``. A cache lives on the device (fast lookups in the training
loop) or in a file that :meth:`TeacherCache.load <atkd_lite.cache.store.TeacherCache.load>`
memory-maps. Each cache records what it was built for — the dataset (name, length, a
fingerprint of its pixels and labels), the teacher, ``first``/``last``/``p``/size and the
map kinds — and refuses a mismatch with a clear error rather than silently training on
the wrong targets.

Defined in the book's chapter "Attention-guided distillation". The package's modules:
:mod:`~atkd_lite.cache.fingerprints` (what a cache records and checks),
:mod:`~atkd_lite.cache.build` (running the teacher over the data),
:mod:`~atkd_lite.cache.lookups` (reading rows by dataset index),
:mod:`~atkd_lite.cache.sharded` (the shard files) and :mod:`~atkd_lite.cache.store`
(:class:`~atkd_lite.cache.store.TeacherCache` and
:class:`~atkd_lite.cache.store.ShardedTeacherCache`); every name is importable from
``atkd_lite.cache``.

Examples::

    >>> import atkd_lite as ak
    >>> from atkd_lite.cache import TeacherCache
    >>> train = ak.load_dataset("mnist5k", "train").per_class(5)
    >>> teacher = ak.teacher_cnn().eval()
    >>> cache = TeacherCache.build(teacher, train, maps=("fma", "sals"), progress=False)
    >>> import torch
    >>> cache.maps("fma", torch.arange(3)).shape
    torch.Size([3, 28, 28])
"""

from __future__ import annotations

from atkd_lite.cache.build import compute_teacher_signals  # noqa: F401
from atkd_lite.cache.fingerprints import (  # noqa: F401
    CACHE_FORMAT,
    MAP_DTYPES,
    MAP_KINDS,
    META_TYPES,
    CacheMismatchError,
    check_meta,
    dataset_fingerprint,
    dataset_name,
    dequantise,
    model_fingerprint,
    quantise,
    structure_problem,
)
from atkd_lite.cache.lookups import CacheLookups  # noqa: F401
from atkd_lite.cache.sharded import (  # noqa: F401
    SHARDED_FORMAT,
    SHARDED_MANIFEST,
    ShardedRows,
    read_shards,
    write_sharded_cache,
    write_shards,
)
from atkd_lite.cache.store import (  # noqa: F401
    ShardedTeacherCache,
    TeacherCache,
    load_cache_file,
    save_cache,
)

__all__ = ["CACHE_FORMAT", "MAP_KINDS", "SHARDED_FORMAT", "CacheMismatchError",
           "ShardedRows", "ShardedTeacherCache", "TeacherCache", "dataset_fingerprint",
           "model_fingerprint"]

# every public name of the modules is importable from here (``__all__`` keeps the names it
# had before the split); the helpers that were private then keep their first names too
_MAP_DTYPES = MAP_DTYPES
_META_TYPES = META_TYPES
_name = dataset_name
_quantise = quantise
_dequantise = dequantise
_structure_problem = structure_problem

