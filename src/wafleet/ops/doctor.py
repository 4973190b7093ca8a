"""``wafleet doctor``: the result type and the runner.

Each check is a small async function returning one `CheckResult`; the host checks live in
`host_checks.py`, the database ones in `db_checks.py`. Every outside dependency (paths,
URLs, resolver, statvfs, clock, subprocess probe) is a parameter, so each check can be
driven to PASS and to FAIL in tests. `run_doctor` wires them to the real world from
`Settings`, runs the host checks concurrently (each has its own short timeout) and the
database checks in order on one connection pool.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from wafleet.config import Settings
from wafleet.errors import ConfigError

Status = Literal["PASS", "WARN", "FAIL"]

# Every check's name, in output order. `--check NAME` selects among them.
CHECK_NAMES = (
    "config",
    "portal-key",
    "data-dir",
    "permissions",
    "disk",
    "clock",
    "engine",
    "network",
    "database",
    "migrations",
    "workers",
    "tenants",
)


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: Status
    detail: str
    fix: str = "nothing to do"

    def line(self) -> str:
        return f"{self.status} {self.check}: {self.detail} — {self.fix}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def passed(check: str, detail: str) -> CheckResult:
    return CheckResult(check, "PASS", detail)


def warn(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, "WARN", detail, fix)


def fail(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, "FAIL", detail, fix)


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(r.status == "FAIL" for r in results) else 0


def render_text(results: Sequence[CheckResult]) -> str:
    return "\n".join(r.line() for r in results)


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2)


def check_config(load: Callable[[], Settings]) -> tuple[CheckResult, Settings | None]:
    """Settings load and validate; the one-line error names the variable."""
    try:
        cfg = load()
    except ConfigError as err:
        return (
            fail(
                "config",
                str(err),
                "correct that variable (environment or .env file; see ARCHITECTURE.md, "
                "'Environment')",
            ),
            None,
        )
    return passed("config", f"settings valid (engine {cfg.engine}, data dir {cfg.data_dir})"), cfg


@dataclass
class DoctorOptions:
    """What `run_doctor` may be told besides the settings (tests, ``--check``)."""

    only: Sequence[str] = ()
    probe_timeout: float = 2.0
    extra: dict[str, Callable[[], Awaitable[CheckResult]]] = field(default_factory=dict)


async def run_doctor(cfg: Settings, options: DoctorOptions | None = None) -> list[CheckResult]:
    """Every check but `config` (the caller ran it to get ``cfg``), real dependencies."""
    from wafleet.ops import db_checks, host_checks, net_checks

    opts = options or DoctorOptions()
    wanted = set(opts.only) or set(CHECK_NAMES)
    t = opts.probe_timeout

    host: dict[str, Callable[[], Awaitable[CheckResult]]] = {
        "portal-key": lambda: host_checks.check_portal_key(cfg),
        # file-system checks are blocking calls: off the event loop
        "data-dir": lambda: asyncio.to_thread(host_checks.check_data_dir, cfg.data_dir),
        "permissions": lambda: asyncio.to_thread(host_checks.check_permissions, cfg.data_dir),
        "disk": lambda: asyncio.to_thread(host_checks.check_disk, cfg.data_dir),
        "engine": lambda: host_checks.check_engine_for(cfg, timeout=t),
        "network": lambda: net_checks.check_network_for(cfg, timeout=t),
    }
    host.update(opts.extra)
    names = [n for n in CHECK_NAMES if n in wanted and n in host]
    host_results = await asyncio.gather(*(host[n]() for n in names))
    by_name: dict[str, CheckResult] = dict(zip(names, host_results, strict=True))

    db_wanted = [
        n for n in ("clock", "database", "migrations", "workers", "tenants") if n in wanted
    ]
    if db_wanted:
        for r in await db_checks.run_db_checks(cfg, db_wanted, timeout=max(t, 5.0)):
            by_name[r.check] = r
    return [by_name[n] for n in CHECK_NAMES if n in by_name]
