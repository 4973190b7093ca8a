"""Builds the configured engine for one tenant (imports are lazy: neonize is heavy)."""

from __future__ import annotations

from wafleet.config import Settings
from wafleet.engines.base import Engine, EngineContext


def build_engine(settings: Settings, ctx: EngineContext) -> Engine:
    if settings.engine == "simulator":
        from wafleet.engines.simulator import SimulatorEngine

        return SimulatorEngine(
            ctx,
            url=settings.simulator_url,
            keepalive_interval=settings.keepalive_interval,
            keepalive_timeout=settings.keepalive_timeout,
        )
    from wafleet.engines.neonize import NeonizeEngine

    return NeonizeEngine(ctx, settings)
