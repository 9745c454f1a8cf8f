"""The method registry: every method by name, its ``+kd`` variant by one rule, and what
a set of methods needs from the teacher.

A method is registered where it is defined (:func:`register`, one file per method in
:mod:`atkd_lite.methods`); :data:`METHODS` is the one table of names, in the order
the book lists them: each method's own name first, then the ``+kd`` variants.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from atkd_lite.methods.base import DEFAULT_ALPHA, Distiller
from atkd_lite.signals import ATMaps, ExampleMask, Logits

__all__ = ["METHODS", "make_distiller", "parse_method", "register", "signals_for"]

#: method name -> (distiller class, uses KD); filled by :func:`register`
METHODS: dict[str, tuple[type[Distiller], bool]] = {}
# (name, class, name of its +kd variant or None), in registration order
_REGISTERED: list[tuple[str, type[Distiller], str | None]] = []


def register(cls: type[Distiller] | None = None, *, name: str | None = None,
             kd: bool | str = True):
    """Register a :class:`~atkd_lite.methods.base.Distiller` subclass as a method (a
    class decorator): by ``name`` (default: its ``method_name``, else the class name in
    lower case) and, unless ``kd=False``, its variant with Hinton's KD as ``name+kd``
    (or ``kd``'s string). Registering a name again replaces it (re-running a notebook cell).

    Examples::

        >>> from atkd_lite.methods import Distiller, METHODS, register
        >>> @register
        ... class Mine(Distiller):
        ...     method_name = "mine"
        >>> "mine" in METHODS and "mine+kd" in METHODS
        True
    """
    def add(klass: type[Distiller]) -> type[Distiller]:
        if not (isinstance(klass, type) and issubclass(klass, Distiller)):
            raise TypeError(f"register takes a subclass of atkd_lite.methods.Distiller; "
                            f"got {klass!r}")
        base = (name or klass.method_name or klass.__name__.lower()).lower()
        kd_name = None if kd is False else (kd if isinstance(kd, str) else f"{base}+kd")
        _REGISTERED[:] = [r for r in _REGISTERED if r[0] != base]
        _REGISTERED.append((base, klass, kd_name))
        METHODS.clear()
        for n, c, k in _REGISTERED:  # names; a variant named alone ("kd") comes next
            METHODS[n] = (c, False)
            if k is not None and "+" not in k:
                METHODS[k] = (c, True)
        METHODS.update({k: (c, True) for _, c, k in _REGISTERED if k and "+" in k})
        return klass

    return add if cls is None else add(cls)


register(Distiller, name="student", kd="kd")


def parse_method(method) -> tuple[str, type[Distiller], bool]:
    """``(canonical name, distiller class, uses KD)`` of a method such as ``"FMA + KD"``.

    ``method`` is a name from :data:`METHODS`, or a subclass of
    :class:`~atkd_lite.methods.base.Distiller` — your own method, used without
    registering it. A subclass is named by its class attribute ``method_name`` (default:
    the class name) and uses KD when its class attribute ``uses_kd`` is true (default:
    no KD).

    Raises:
        ValueError: an unknown method, listing the valid ones.
        TypeError: a class that is not a Distiller subclass.

    Examples::

        >>> from atkd_lite.distillers import Distiller, parse_method
        >>> parse_method("FMA + KD")[0], parse_method("FMA + KD")[2]
        ('fma+kd', True)
        >>> class Mine(Distiller):
        ...     method_name = "mine"
        >>> parse_method(Mine)
        ('mine', <class 'atkd_lite.methods.registry.Mine'>, False)
    """
    if isinstance(method, type):
        if not issubclass(method, Distiller):
            raise TypeError(f"a method given as a class must subclass "
                            f"atkd_lite.distillers.Distiller; {method.__name__} does not")
        return (str(getattr(method, "method_name", None) or method.__name__), method,
                bool(getattr(method, "uses_kd", False)))
    name = method.lower().replace(" ", "") if isinstance(method, str) else None
    if name not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    cls, use_kd = METHODS[name]
    return name, cls, use_kd


def make_distiller(method, student: nn.Module, teacher: nn.Module, config=None, *,
                   alpha: float | None = None, **kw) -> Distiller:
    """The distiller for ``method`` (see :data:`METHODS`), e.g. ``"fma+kd"``, or for a
    Distiller subclass (see :func:`parse_method`).

    ``alpha`` (else the ``config``'s) is the KD weight for ``kd`` and ``+kd`` methods
    (None: :data:`~atkd_lite.methods.base.DEFAULT_ALPHA`) and is forced to 0 for the
    others; ``config`` (a :class:`~atkd_lite.settings.DistillConfig`) and the other
    keywords go to the distiller.
    """
    _, cls, use_kd = parse_method(method)
    if alpha is None and config is not None:
        alpha = config.alpha
    alpha = (DEFAULT_ALPHA if alpha is None else alpha) if use_kd else 0.0
    return cls(student, teacher, config=config, alpha=alpha, **kw)


def signals_for(methods: Iterable) -> dict:
    """What a teacher cache must hold for ``methods``: ``{"maps": [keys], "at": bool}``,
    the keyword arguments of :meth:`TeacherCache.build <atkd_lite.cache.TeacherCache.build>`.

    Examples::

        >>> signals_for(["student", "fma+kd", "sals", "at"])
        {'maps': ['fma', 'sals'], 'at': True}
    """
    signals = [parse_method(m)[1].signal for m in methods]
    maps = sorted({s.key for s in signals
                   if s is not None and not isinstance(s, (ATMaps, ExampleMask, Logits))})
    return {"maps": maps, "at": any(isinstance(s, ATMaps) for s in signals)}
