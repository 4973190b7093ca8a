"""Docs that name the tests guarding their claims (SECURITY.md, TROUBLESHOOTING.md):
every named test must exist, or a rename would leave the document lying."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def named_tests(doc: Path) -> list[str]:
    """Check every `tests/x.py::name` (or `::name` after a file) in ``doc`` exists;
    returns them. A missing file or function fails the calling test."""
    current: Path | None = None
    found: list[str] = []
    for token in re.findall(r"`([^`]*)`", doc.read_text()):
        full = re.fullmatch(r"(tests/[\w/]+\.py)(?:::(\w+))?", token)
        short = re.fullmatch(r"::(\w+)", token)
        if full:
            current = ROOT / full.group(1)
            assert current.is_file(), token
            name = full.group(2)
        elif short:
            assert current is not None, token
            name = short.group(1)
        else:
            continue
        if name:
            assert re.search(rf"def {name}\b", current.read_text()), f"{current}::{name}"
            found.append(f"{current.relative_to(ROOT)}::{name}")
    return found
