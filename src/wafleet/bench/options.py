"""Scenario sizes: each scenario's options dataclass, overridden by ``--set
scenario.field=value`` on the command line or ``WAFLEET_BENCH_<SCENARIO>_<FIELD>`` in the
environment (the command line wins)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, TypeVar

from wafleet.errors import UsageError

T = TypeVar("T")


def _convert(name: str, kind: Any, raw: str) -> Any:
    kind_s = str(kind)
    try:
        if kind is int or kind_s == "int":
            return int(raw)
        if kind is float or kind_s == "float":
            return float(raw)
        if kind is bool or kind_s == "bool":
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes"}
        if "tuple" in kind_s:
            return tuple(int(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{name}: {raw!r} is not a valid {kind_s}") from None
    return raw


def build(scenario: str, cls: type[T], overrides: Mapping[str, str]) -> T:
    """``cls()`` with the environment's and then ``overrides``' values for this scenario."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    prefix = f"WAFLEET_BENCH_{scenario.upper()}_"
    for key, raw in os.environ.items():
        if key.startswith(prefix):
            name = key[len(prefix) :].lower()
            if name not in fields:
                raise UsageError(f"{key}: {scenario} has no option {name!r} ({', '.join(fields)})")
            values[name] = _convert(key, fields[name].type, raw)
    for name, raw in overrides.items():
        if name not in fields:
            raise UsageError(
                f"--set {scenario}.{name}: unknown option (one of {', '.join(fields)})"
            )
        values[name] = _convert(f"--set {scenario}.{name}", fields[name].type, raw)
    opts = cls(**values)
    for name, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise UsageError(f"{scenario}.{name}: must be > 0, got {value}")
    return opts


def parse_sets(items: list[str], known: set[str]) -> dict[str, dict[str, str]]:
    """``["pipeline.messages=5000", ...]`` → ``{"pipeline": {"messages": "5000"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        scenario, dot, name = key.partition(".")
        if not sep or not dot or not name or not value:
            raise UsageError(f"--set {item!r}: expected SCENARIO.OPTION=VALUE")
        if scenario not in known:
            raise UsageError(f"--set {item!r}: unknown scenario {scenario!r}")
        out.setdefault(scenario, {})[name.replace("-", "_")] = value
    return out
