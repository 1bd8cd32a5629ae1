"""The examples in Ember's docstrings are part of its documentation: they must stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import emberserve

# Generated code has no examples; ``__main__`` modules run their program when imported.
_SKIP_PREFIXES = ("emberserve.grpc.generated",)


def _modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(emberserve.__path__, prefix="emberserve.")
        if not info.name.startswith(_SKIP_PREFIXES) and not info.name.endswith(".__main__")
    ]
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) in {name} failed (see output above)"
