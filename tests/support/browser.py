"""Browser tests run Playwright in Debian's Chromium (`.ci/run` installs it with apt)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("WAFLEET_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_ENV = "WAFLEET_REQUIRE_BROWSER"


def require_chromium() -> Path:
    """The Chromium executable; skip the test when it is missing, or fail when
    ``WAFLEET_REQUIRE_BROWSER=1`` (CI) says it must be there."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium, or run .ci/run)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"browser required ({REQUIRE_ENV}=1): {reason}")
    pytest.skip(reason)
