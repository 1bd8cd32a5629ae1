"""``python -m emberserve.archiver``: same as the ``emberserve-archiver`` command."""

from emberserve.archiver.cli import main

raise SystemExit(main())
