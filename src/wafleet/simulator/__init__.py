"""The WhatsApp simulator: simulated servers and phones with fault injection.

`SimulatorServer` runs it in-process (tests, benchmarks); ``wafleet simulator`` runs it as
a process. See `protocol` (engine wire protocol), `faults` (fault semantics), `http_api`
(control API) and README.md. Exports are lazy: the engine imports `protocol` and
`client_link` from here without pulling in the server (uvicorn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wafleet.simulator.core import Simulator
    from wafleet.simulator.server import SimulatorServer

__all__ = ["Simulator", "SimulatorServer"]


def __getattr__(name: str) -> Any:
    if name == "Simulator":
        from wafleet.simulator.core import Simulator

        return Simulator
    if name == "SimulatorServer":
        from wafleet.simulator.server import SimulatorServer

        return SimulatorServer
    raise AttributeError(name)
