"""The WhatsApp simulator: simulated servers and phones with fault injection.

`SimulatorServer` runs it in-process (tests, benchmarks); ``wafleet simulator`` runs it as
a process. See `protocol` (engine wire protocol), `faults` (fault semantics) and
`http_api` (control API).
"""

from __future__ import annotations

from wafleet.simulator.core import Simulator
from wafleet.simulator.server import SimulatorServer

__all__ = ["Simulator", "SimulatorServer"]
