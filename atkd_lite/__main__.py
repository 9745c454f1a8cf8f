"""``python -m atkd_lite`` runs the command-line interface."""

from atkd_lite.cli import main

raise SystemExit(main())
