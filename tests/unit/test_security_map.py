"""docs/security-tests.md names real tests: a renamed or deleted test must update the map."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "security-tests.md"


def test_every_row_names_tests_and_every_named_test_exists() -> None:
    rows = [line for line in MAP.read_text().splitlines() if re.match(r"^\| [A-Z]\d+ \|", line)]
    assert len(rows) >= 100
    defined: dict[Path, set[str]] = {}
    for row in rows:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row)
        assert named, f"no test for {row[:40]}"
        for file, name in named:
            path = ROOT / file
            if path not in defined:
                tree = ast.parse(path.read_text())
                defined[path] = {
                    node.name
                    for node in tree.body
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                }
            assert name in defined[path], f"{file}::{name} (row {row[:6]}) does not exist"
