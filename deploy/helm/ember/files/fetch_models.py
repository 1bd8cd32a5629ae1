"""Download model archives into Ember's model store: the ember chart's init container.

Usage: ``python3 fetch_models.py STORE URL [URL ...]``

Each URL names a ``.mar`` archive (``https://host/path/digits.mar``); it is saved as
``STORE/digits.mar``. An archive is written to a hidden temporary file first and renamed when
complete, so the server never sees half an archive, and one that is already in the store is kept
(a restarted pod keeps its emptyDir). Transient failures (timeouts, refused connections, HTTP
408, 429 and 5xx) are retried with a growing pause; the script exits non-zero when an archive
cannot be fetched, which fails the pod's start visibly.

Only the standard library is used: it runs with the image's Python, before the server starts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

ATTEMPTS = 4
TIMEOUT_S = 60
SCHEMES = ("https", "http", "file")


def archive_name(url: str) -> str:
    """The file name an archive URL is stored under; raises ValueError for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url}: only {', '.join(SCHEMES)} URLs are fetched")
    name = PurePosixPath(urllib.parse.unquote(parts.path)).name
    if not name.endswith(".mar") or name.startswith(".") or len(name) <= len(".mar"):
        raise ValueError(f"{url}: the path must end in <name>.mar")
    return name


def permanent(url: str, exc: Exception) -> bool:
    """Whether trying again cannot help: a local file, or an HTTP answer other than 408/429/5xx."""
    if urllib.parse.urlsplit(url).scheme == "file":
        return True
    return isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code not in (408, 429)


def fetch(url: str, store: Path) -> Path:
    """Download ``url`` into ``store`` (atomically) unless it is there already."""
    target = store / archive_name(url)
    if target.exists():
        print(f"{target.name}: already in the store, kept", flush=True)
        return target
    for attempt in range(1, ATTEMPTS + 1):
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=store)
        try:
            # archive_name() let through only the schemes in SCHEMES.
            request = urllib.request.Request(url, headers={"User-Agent": "ember-fetch-models"})  # noqa: S310
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
                shutil.copyfileobj(response, out, 1 << 20)
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        except (OSError, urllib.error.URLError) as exc:
            Path(partial).unlink(missing_ok=True)
            if attempt == ATTEMPTS or permanent(url, exc):
                raise RuntimeError(f"{url}: {exc}") from exc
            pause = 2**attempt
            print(f"{url}: {exc}; retrying in {pause} s", file=sys.stderr, flush=True)
            time.sleep(pause)
        else:
            print(f"{target.name}: {target.stat().st_size} bytes from {url}", flush=True)
            return target
    raise AssertionError("unreachable")


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    store = Path(argv[0])
    store.mkdir(parents=True, exist_ok=True)
    try:
        names = [archive_name(url) for url in argv[1:]]
        if len(set(names)) != len(names):
            raise ValueError("two URLs name the same archive file")
        for url in argv[1:]:
            fetch(url, store)
    except (ValueError, RuntimeError) as exc:
        print(f"fetch_models: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
