"""``python -m atkd_lite.cli``, the same as ``python -m atkd_lite`` and ``atkd-lite``."""

from atkd_lite.cli import main

raise SystemExit(main())
