"""``python -m emberserve`` is the ``emberserve`` command."""

from emberserve.cli import main

raise SystemExit(main())
