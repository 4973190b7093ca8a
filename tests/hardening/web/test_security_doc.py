"""docs/SECURITY.md names the tests that guard each claim: every one must exist (a renamed
test would leave the threat model lying)."""

from __future__ import annotations

from pathlib import Path

from tests.support.docrefs import named_tests

ROOT = Path(__file__).resolve().parents[3]


def test_every_test_named_in_security_md_exists() -> None:
    assert len(named_tests(ROOT / "docs" / "SECURITY.md")) >= 30


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
