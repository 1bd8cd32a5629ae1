"""The environment a worker process starts with.

TorchServe hands each worker the frontend's environment minus every variable whose *name* fully
matches ``blacklist_env_vars`` (a Java regex, ``matches()`` semantics), plus its backend settings
such as ``TS_DECODE_INPUT_REQUEST``. Ember does the same and additionally never passes its own
secrets (API tokens, key-file paths…): callers name them, and any variable whose value contains a
secret value is dropped too, so a token copied into another variable cannot leak (SECURITY.md D2,
Z11).

Example::

    >>> env = build_worker_env(
    ...     {"HOME": "/home/u", "AWS_SECRET": "x", "EMBER_TOKEN": "t0k3n", "COPY": "Bearer t0k3n"},
    ...     blacklist=r"AWS_.*",
    ...     secret_names=["EMBER_TOKEN"],
    ...     secret_values=["t0k3n"],
    ...     decode_input_request=True,
    ... )
    >>> sorted(name for name in env if name != "PYTHONPATH")
    ['HOME', 'TS_DECODE_INPUT_REQUEST']
    >>> env["TS_DECODE_INPUT_REQUEST"]
    'true'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import emberserve

#: Directory holding the ``emberserve`` package (``src/`` in a checkout, site-packages when installed).
PACKAGE_ROOT = str(Path(emberserve.__file__).resolve().parent.parent)


def build_worker_env(
    base: Mapping[str, str],
    *,
    blacklist: str | re.Pattern[str] | None = None,
    secret_names: Iterable[str] = (),
    secret_values: Iterable[str] = (),
    decode_input_request: bool = True,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the environment for a worker process.

    ``base`` is usually ``os.environ``. Variables whose name fully matches ``blacklist``, whose
    name is in ``secret_names`` or whose value contains one of ``secret_values`` are left out.
    ``TS_DECODE_INPUT_REQUEST`` is set as TorchServe sets it; ``extra`` is added last (it is
    filtered by the same rules). ``PYTHONPATH`` gains the directory that holds ``emberserve`` when
    that is a source checkout, so a worker interpreter other than the frontend's can import it.
    """
    pattern = re.compile(blacklist) if isinstance(blacklist, str) else blacklist
    hidden_names = set(secret_names)
    hidden_values = [value for value in secret_values if value]

    def allowed(name: str, value: str) -> bool:
        if name in hidden_names:
            return False
        if pattern is not None and pattern.pattern and pattern.fullmatch(name):
            return False
        return not any(secret in value for secret in hidden_values)

    merged = dict(base)
    merged["TS_DECODE_INPUT_REQUEST"] = "true" if decode_input_request else "false"
    if extra:
        merged.update(extra)
    env = {name: value for name, value in merged.items() if allowed(name, value)}
    _add_package_root(env)
    return env


def _add_package_root(env: dict[str, str]) -> None:
    # Like TorchServe's EnvironmentUtils, never put a site-packages directory on PYTHONPATH: it
    # would shadow the worker interpreter's own packages with binaries built for another Python.
    root = PACKAGE_ROOT
    if "site-packages" in root or "dist-packages" in root:
        return
    entries = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if root not in entries:
        env["PYTHONPATH"] = os.pathsep.join([root, *entries])
