"""docs/TROUBLESHOOTING.md links each scenario to the tests that reproduce it: every
test it names must exist (a renamed test would leave the guide lying)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.docrefs import named_tests

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = (
    "Network",
    "WhatsApp restrictions",
    "Engine dependency",
    "Session corruption",
    "Max reconnect attempts",
    "Authentication failure",
    "Stale workers",
)


def test_every_named_test_exists() -> None:
    assert len(named_tests(ROOT / "docs" / "TROUBLESHOOTING.md")) >= 30


def test_every_scenario_has_a_section_with_its_tests() -> None:
    text = (ROOT / "docs" / "TROUBLESHOOTING.md").read_text()
    sections = re.split(r"\n## ", text)
    for scenario in SCENARIOS:
        [section] = [s for s in sections if scenario.lower() in s.splitlines()[0].lower()]
        for part in (
            "**Symptom.**",
            "**Where it shows.**",
            "**Cause.**",
            "**Fix.**",
            "**Reproduced by.**",
        ):
            assert part in section, (scenario, part)
