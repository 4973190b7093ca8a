from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.simulator.helpers import running_simulator


@pytest.fixture
async def sim() -> AsyncIterator[running_simulator]:
    """An in-process simulator on a free port; durations scaled down 20x."""
    async with running_simulator(time_scale=0.05) as s:
        yield s
