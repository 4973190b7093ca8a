"""Doctor checks that need the database: reachable, migrated, clock (PostgreSQL's too),
stale workers, tenants that need someone.

A SQLite file that does not exist is reported, not created: the doctor has no side effects.
When the database is unreachable or unmigrated, the checks that need it say "not checked"
(WARN) instead of piling up failures with the same cause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from wafleet.config import Settings
from wafleet.db.engine import Database, _sqlite_path
from wafleet.ops.doctor import CheckResult, fail, passed, warn
from wafleet.ops.explain import SessionFacts, explain
from wafleet.states import Cause, SessionState, TenantStatus, WorkerStatus

# The release date of this version: a host clock before it is certainly wrong (TLS,
# lease expiry and heartbeat ages all go wrong with it). Bump it when releasing.
BUILD_DATE = datetime(2026, 11, 1, tzinfo=UTC)
SKEW_WARN_S = 2.0
SKEW_FAIL_S = 10.0  # well under WAFLEET_LEASE_TTL's default of 20 s
FORGOTTEN_AFTER = timedelta(hours=24)  # a STALE row older than this is history, not news
MAX_LISTED = 8

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _db_error(err: BaseException) -> str:
    lines = str(getattr(err, "orig", None) or err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _listed(items: Sequence[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


# ------------------------------------------------------------------ database
async def check_database(db: Database, *, timeout: float = 5.0) -> CheckResult:
    name = "database"
    try:
        async with asyncio.timeout(timeout):
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return fail(
            name,
            f"no answer from the database within {timeout:g}s",
            "check that the database server runs and WAFLEET_DATABASE_URL's host/port",
        )
    except (OperationalError, DBAPIError, OSError) as err:
        return fail(
            name,
            f"cannot connect: {_db_error(err)}",
            "check WAFLEET_DATABASE_URL (host, port, user, password, database name) and "
            "that the server runs",
        )
    return passed(name, f"{db.engine.dialect.name} reachable")


def missing_sqlite_file(url: str) -> CheckResult | None:
    path = _sqlite_path(url)
    if path is None or path.exists():
        return None
    return fail(
        "database",
        f"SQLite database {path} does not exist",
        "run `wafleet migrate` (or `wafleet up`), or fix WAFLEET_DATABASE_URL / WAFLEET_DATA_DIR",
    )


# ------------------------------------------------------------------ migrations
async def _current_revision(url: str) -> str | None:
    from wafleet.db.migrate import current_revision

    # current_revision runs its own event loop: give it a thread
    return await asyncio.to_thread(current_revision, url)


def _head_revision() -> str:
    from wafleet.db.migrate import head_revision

    return head_revision()


async def check_migrations(
    url: str,
    *,
    current: Callable[[str], Awaitable[str | None]] = _current_revision,
    head: Callable[[], str] = _head_revision,
) -> CheckResult:
    name = "migrations"
    want = head()
    try:
        have = await current(url)
    except (SQLAlchemyError, OSError) as err:
        return fail(name, f"cannot read the schema revision: {_db_error(err)}", "fix the database")
    if have is None:
        return fail(name, "the database has no schema (never migrated)", "run `wafleet migrate`")
    if have != want:
        return fail(
            name,
            f"database at revision {have}, this wafleet expects {want}",
            "run `wafleet migrate` (if the database is newer, upgrade wafleet instead)",
        )
    return passed(name, f"schema at head ({want})")


# ------------------------------------------------------------------ clock
async def check_clock(
    *,
    now: Clock = _utcnow,
    build_date: datetime = BUILD_DATE,
    server_now: Callable[[], Awaitable[datetime]] | None = None,
) -> CheckResult:
    """Not before the build date; and, with PostgreSQL, close to the server's ``now()``
    (workers' heartbeats and leases are compared across hosts)."""
    name = "clock"
    fix = "synchronise the clock with NTP (timedatectl set-ntp true, or chrony)"
    local = now()
    if local < build_date:
        return fail(
            name,
            f"the host clock says {local:%Y-%m-%d %H:%M} UTC, before this release "
            f"({build_date:%Y-%m-%d})",
            fix,
        )
    if server_now is None:
        return passed(name, f"host clock {local:%Y-%m-%d %H:%M:%S} UTC")
    t0 = time.monotonic()
    before = now()
    try:
        theirs = await server_now()
    except (SQLAlchemyError, OSError, TimeoutError) as err:
        return warn(name, f"cannot read the database server's clock: {_db_error(err)}", fix)
    rtt = time.monotonic() - t0
    mine = before + timedelta(seconds=rtt / 2)
    skew = (mine - theirs).total_seconds()
    detail = f"host clock {skew:+.1f}s from the database server's"
    if abs(skew) > SKEW_FAIL_S:
        return fail(name, detail + f" (> {SKEW_FAIL_S:g}s: leases and heartbeats misjudged)", fix)
    if abs(skew) > SKEW_WARN_S:
        return warn(name, detail + f" (> {SKEW_WARN_S:g}s)", fix)
    return passed(name, detail)


def _server_now(db: Database) -> Callable[[], Awaitable[datetime]]:
    async def read() -> datetime:
        async with db.engine.connect() as conn:
            value = (await conn.execute(text("SELECT now()"))).scalar_one()
        assert isinstance(value, datetime)
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    return read


# ------------------------------------------------------------------ workers
async def check_workers(db: Database, *, stale_after: float, now: Clock = _utcnow) -> CheckResult:
    from wafleet.db.models import Tenant, WorkerProcess

    name = "workers"
    t = now()
    async with db.session() as s:
        workers = (await s.execute(select(WorkerProcess))).scalars().all()
        active = len(
            (
                await s.execute(select(Tenant.id).where(Tenant.status == TenantStatus.ACTIVE.value))
            ).all()
        )
    healthy: list[str] = []
    silent: list[str] = []
    bad: list[str] = []
    forgotten = 0
    for w in workers:
        age = (t - w.last_heartbeat_at).total_seconds()
        label = f"{w.id} on {w.host} (pid {w.pid}, silent {age:.0f}s)"
        if w.status == WorkerStatus.RUNNING.value:
            (healthy if age <= stale_after else silent).append(label)
        elif w.status in (WorkerStatus.STALE.value, WorkerStatus.ERROR.value):
            if t - w.last_heartbeat_at > FORGOTTEN_AFTER:
                forgotten += 1
            else:
                extra = f": {w.error_message}" if w.error_message else ""
                bad.append(f"{w.status} {label}{extra}")
    if active and not healthy:
        listed = bad + [f"RUNNING but {x}" for x in silent]
        return fail(
            name,
            f"no healthy worker serves the {active} active tenant(s)"
            + (f" ({_listed(listed)})" if listed else ""),
            "start a worker: `wafleet worker` (systemctl start wafleet-worker@1) and check its log",
        )
    if silent:
        return warn(
            name,
            f"RUNNING but past WAFLEET_STALE_AFTER ({stale_after:g}s): {_listed(silent)}",
            "is the control plane running? its stale-worker job releases such workers' tenants",
        )
    if bad:
        return warn(
            name,
            f"{len(bad)} stale/failed worker(s): {_listed(bad)}",
            "restart them (systemctl restart wafleet-worker@N) or check their host; their "
            "tenants were released to the healthy workers",
        )
    note = f"; {forgotten} stale row(s) older than 24 h ignored" if forgotten else ""
    if not workers:
        return passed(name, "no workers registered (no active tenants to serve)")
    return passed(name, f"{len(healthy)} running, heartbeats fresh{note}")


# ------------------------------------------------------------------ tenants
async def check_tenants(db: Database, *, max_attempts: int) -> CheckResult:
    from wafleet.db.models import Tenant, WhatsAppSession

    name = "tenants"
    async with db.session() as s:
        rows = (
            await s.execute(
                select(Tenant, WhatsAppSession)
                .outerjoin(WhatsAppSession, WhatsAppSession.tenant_id == Tenant.id)
                .order_by(Tenant.slug)
            )
        ).all()
    attention: list[str] = []
    paused = 0
    for tenant, ws in rows:
        facts = SessionFacts.from_row(ws) if ws is not None else None
        stuck = tenant.status == TenantStatus.ERROR.value or (
            facts is not None
            and (
                facts.state == SessionState.LOGGED_OUT.value
                or (
                    facts.state == SessionState.DISCONNECTED.value
                    and facts.last_disconnect_cause == Cause.QR_TIMEOUT.value
                )
            )
        )
        paused += tenant.status == TenantStatus.PAUSED.value
        if stuck:
            e = explain(
                tenant.slug,
                tenant.status,
                facts,
                error_message=tenant.error_message,
                max_attempts=max_attempts,
            )
            attention.append(f"{tenant.slug} [{tenant.status}]: {e.summary} Next: {e.next_step}")
    if attention:
        return warn(
            name,
            f"{len(attention)} of {len(rows)} need attention: {_listed(attention)}",
            "follow each tenant's next step (details: wafleet status SLUG)",
        )
    extra = f" ({paused} paused)" if paused else ""
    return passed(name, f"{len(rows)} tenant(s), none in ERROR or LOGGED_OUT{extra}")


# ------------------------------------------------------------------ runner
def _not_checked(check: str, why: str) -> CheckResult:
    return warn(check, f"not checked: {why}", "fix the failing database check first")


async def run_db_checks(
    cfg: Settings, names: Sequence[str], *, timeout: float = 5.0
) -> list[CheckResult]:
    wanted = set(names)
    out: list[CheckResult] = []
    missing = missing_sqlite_file(cfg.database_url)
    if missing is not None:
        if "clock" in wanted:
            out.append(await check_clock())
        if "database" in wanted:
            out.append(missing)
        if "migrations" in wanted:
            out.append(
                fail("migrations", "the database has no schema (no file)", "run `wafleet migrate`")
            )
        out += [_not_checked(n, "no database") for n in ("workers", "tenants") if n in wanted]
        return out
    db = Database(cfg.database_url, pool_size=1)
    try:
        reach = await check_database(db, timeout=timeout)
        ok = reach.status == "PASS"
        if "clock" in wanted:
            server = _server_now(db) if (ok and cfg.is_postgres) else None
            out.append(await check_clock(server_now=server))
        if "database" in wanted:
            out.append(reach)
        if not ok:
            out += [
                _not_checked(n, "database unreachable")
                for n in ("migrations", "workers", "tenants")
                if n in wanted
            ]
            return out
        mig = await check_migrations(cfg.database_url)
        if "migrations" in wanted:
            out.append(mig)
        if mig.status != "PASS":
            out += [
                _not_checked(n, "schema not at head") for n in ("workers", "tenants") if n in wanted
            ]
            return out
        try:
            if "workers" in wanted:
                out.append(await check_workers(db, stale_after=cfg.stale_after))
            if "tenants" in wanted:
                out.append(await check_tenants(db, max_attempts=cfg.reconnect_max_attempts))
        except SQLAlchemyError as err:
            out.append(fail("database", f"query failed: {_db_error(err)}", "check the database"))
        return out
    finally:
        await db.close()
