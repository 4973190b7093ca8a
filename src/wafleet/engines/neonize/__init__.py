"""The neonize engine (real WhatsApp via whatsmeow), run in engine child processes.

`NeonizeEngine` is loaded lazily: ``python -m wafleet.engines.neonize.child`` imports this
package too, and the child should not pay for the parent side's imports (settings,
logging) on top of neonize's own ~50 MB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wafleet.engines.neonize.engine import NeonizeEngine

__all__ = ["NeonizeEngine"]


def __getattr__(name: str) -> Any:
    if name == "NeonizeEngine":
        from wafleet.engines.neonize.engine import NeonizeEngine

        return NeonizeEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
