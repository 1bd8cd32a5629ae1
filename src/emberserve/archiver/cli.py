"""``emberserve-archiver``: torch-model-archiver 0.12's command line, flag for flag.

Existing build scripts keep working with the name swapped::

    emberserve-archiver --model-name mnist --version 1.0 --serialized-file mnist.pt \\
        --model-file mnist.py --handler mnist_handler.py --extra-files index_to_name.json

Errors print ``ERROR - <message>`` on stderr, with torch-model-archiver's texts, and exit 1
(without its Python traceback); bad or missing flags exit 2 with argparse's usage message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from emberserve.archive.manifest import MODEL_NAME_PATTERN, RUNTIMES
from emberserve.archiver.build import ARCHIVE_FORMATS, ArchiverError, build_archive

_DESCRIPTION = """\
Package a model's files into an archive that Ember and TorchServe can serve.

Flags, defaults, output files and MANIFEST.json are those of torch-model-archiver 0.12."""

_EPILOG = """\
examples:
  emberserve-archiver --model-name noop --version 1.0 --handler noop_handler.py
  emberserve-archiver --model-name mlp --version 2.0 --serialized-file mlp.pt \\
      --model-file model.py --handler handler.py --extra-files index_to_name.json,assets/ \\
      --config-file model-config.yaml --export-path model_store --force"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="emberserve-archiver",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "--model-name",
        required=True,
        metavar="MODEL_NAME",
        help="name of the model; the archive is written as <model-name>.mar (or .tar.gz,\n"
        f"or a <model-name>/ directory). Must match {MODEL_NAME_PATTERN.pattern}",
    )
    parser.add_argument(
        "--serialized-file",
        metavar="FILE",
        help="weights: a state_dict .pt/.pth for eager mode (with --model-file),\n"
        "a TorchScript .pt, an .onnx file, ...",
    )
    parser.add_argument(
        "--model-file",
        metavar="FILE",
        help="Python file defining the model class (eager mode); it must define\n"
        "exactly one class extending torch.nn.Module",
    )
    parser.add_argument(
        "--handler",
        required=True,
        metavar="HANDLER",
        help="a built-in handler name (image_classifier, text_classifier, object_detector,\n"
        "image_segmenter, base_handler), a handler .py file, or path/module:function",
    )
    parser.add_argument(
        "--extra-files",
        metavar="FILES",
        help="comma-separated files, directories (their content is added) or globs",
    )
    parser.add_argument(
        "--runtime",
        default="python",
        choices=list(RUNTIMES),
        help='language the inference code runs in (default: "python")',
    )
    parser.add_argument(
        "--export-path",
        metavar="DIR",
        default=None,
        help="directory to write the archive to (default: the current directory)",
    )
    parser.add_argument(
        "--archive-format",
        default="default",
        choices=list(ARCHIVE_FORMATS),
        help='"default": <model-name>.mar, a deflated zip\n'
        '"zip-store": <model-name>.mar, a stored (uncompressed) zip: faster to build\n'
        '"tgz": <model-name>.tar.gz, for platforms that expect .tar.gz model artifacts\n'
        '"no-archive": a plain <export-path>/<model-name>/ directory with MAR-INF/MANIFEST.json',
    )
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="overwrite an existing archive of the same name in the export path",
    )
    parser.add_argument(
        "-v", "--version", required=True, metavar="VERSION", help="the model's version, e.g. 1.0"
    )
    parser.add_argument(
        "-r",
        "--requirements-file",
        metavar="FILE",
        help="requirements.txt with the model's own Python dependencies",
    )
    parser.add_argument(
        "-c",
        "--config-file",
        metavar="FILE",
        help="model-config.yaml: per-model settings (workers, batching, timeouts, handler options)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the archiver; returns the process exit code (0 success, 1 archiving error, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has printed why
        return exc.code if isinstance(exc.code, int) else 2

    # Warnings ("Overwriting ...") go to stderr in torch-model-archiver's format, for this run only.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
    archiver_logger = logging.getLogger("emberserve.archiver")
    archiver_logger.addHandler(handler)
    try:
        build_archive(
            args.model_name,
            args.version,
            args.handler,
            serialized_file=args.serialized_file,
            model_file=args.model_file,
            extra_files=args.extra_files,
            runtime=args.runtime,
            requirements_file=args.requirements_file,
            config_file=args.config_file,
            archive_format=args.archive_format,
            export_path=args.export_path,
            force=args.force,
        )
    except ArchiverError as exc:
        print(f"ERROR - {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ERROR - {exc}", file=sys.stderr)
        return 1
    finally:
        archiver_logger.removeHandler(handler)
    return 0
