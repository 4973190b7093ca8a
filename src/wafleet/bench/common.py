"""What every scenario shares: its error type, percentiles, the machine's description."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from wafleet.errors import WafleetError

MB = 1024 * 1024
Figures = dict[str, Any]


class BenchError(WafleetError):
    """A scenario could not run to the end (a process died, a wait timed out): exit 1."""


@dataclass
class Row:
    """One line of the results table: a figure beside its target and its baseline."""

    figure: str
    measured: str
    target: str = ""
    baseline: str = ""
    ok: bool | None = None  # None: informational (no target)


@dataclass
class Result:
    scenario: str
    figures: Figures
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (need not be sorted); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> Figures:
    """nproc, RAM, Python, load: printed with every run (figures depend on them)."""
    import psutil

    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "loadavg": [round(x, 2) for x in load],
    }


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"
