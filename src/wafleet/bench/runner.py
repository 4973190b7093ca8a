"""The scenario registry and the run loop of ``wafleet bench``."""

from __future__ import annotations

import asyncio
import importlib
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wafleet.bench import options as opt
from wafleet.bench.common import Result


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str  # wafleet.bench.<module> with <Options> and run_async(opts, root)
    options: str
    summary: str

    def load(self) -> tuple[type[Any], Callable[[Any, Path], Coroutine[Any, Any, Result]]]:
        mod = importlib.import_module(f"wafleet.bench.{self.module}")
        return getattr(mod, self.options), mod.run_async


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("pipeline", "pipeline", "PipelineOptions", "msgs/s and latency vs an echo client"),
        Scenario("idle", "idle", "IdleOptions", "RSS and CPU per idle connected tenant"),
        Scenario("storm", "storm", "StormOptions", "reconnect storm after a drop of every socket"),
        Scenario("failover", "failover", "FailoverOptions", "kill -9 one of two workers (PG)"),
        Scenario("api", "api", "ApiOptions", "status route vs /healthz"),
        Scenario("neonize", "neonize", "NeonizeOptions", "RSS per tenant of the real engine"),
    )
}


def resolve(name: str) -> list[Scenario]:
    from wafleet.errors import UsageError

    if name == "all":
        return list(SCENARIOS.values())
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r} (one of {', '.join(SCENARIOS)}, all)")
    return [SCENARIOS[name]]


def prepare(
    scenarios: list[Scenario], sets: Mapping[str, Mapping[str, str]]
) -> list[tuple[Scenario, Any]]:
    """Every scenario with its options, all validated before anything starts."""
    out = []
    for s in scenarios:
        cls, _ = s.load()
        out.append((s, opt.build(s.name, cls, sets.get(s.name, {}))))
    return out


def run_one(scenario: Scenario, options: Any, keep: Path | None = None) -> Result:
    """Run one scenario in a fresh event loop and a scratch directory (kept with ``keep``)."""
    _, run_async = scenario.load()
    if keep is not None:
        root = keep / scenario.name
        shutil.rmtree(root, ignore_errors=True)  # a fresh run, never a previous one's data
        return _loop_run(run_async(options, root))
    with tempfile.TemporaryDirectory(prefix=f"wafleet-bench-{scenario.name}-") as tmp:
        return _loop_run(run_async(options, Path(tmp)))


def _loop_run(coro: Coroutine[Any, Any, Result]) -> Result:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)
