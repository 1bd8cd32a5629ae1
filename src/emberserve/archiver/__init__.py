"""A torch-model-archiver 0.12 compatible archiver: the ``emberserve-archiver`` command.

:func:`build_archive` is the library entry point; :func:`emberserve.archiver.cli.main` the
command line. Both write exactly what torch-model-archiver writes for the same inputs.
"""

from emberserve.archiver.build import ARCHIVE_FORMATS, ArchiverError, archive_path, build_archive

__all__ = ["ARCHIVE_FORMATS", "ArchiverError", "archive_path", "build_archive"]
