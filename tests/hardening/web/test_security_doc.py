"""docs/SECURITY.md names the tests that guard each claim: every one must exist (a renamed
test would leave the threat model lying)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_every_test_named_in_security_md_exists() -> None:
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    current: Path | None = None
    named = 0
    for token in re.findall(r"`([^`]*)`", text):
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
            named += 1
    assert named >= 30


def test_threat_model_sections() -> None:
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    for heading in ("## Assets", "## Actors", "## Trust boundaries", "## Claims"):
        assert heading in text
    for actor in (
        "Tenant users",
        "Other tenants",
        "Operators",
        "The internet",
        "compromised webhook receiver",
        "malicious WhatsApp contact",
    ):
        assert actor in text
