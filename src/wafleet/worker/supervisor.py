"""Supervisor: registers the worker, claims tenant leases, runs one TenantBot per lease,
applies commands, heartbeats, and shuts down in bounded time.

Lifecycle: ``start()`` → running → ``stop()`` (stop intake, stop bots concurrently —
each drains its chat queues and disconnects — release leases, mark STOPPED). A worker
that cannot renew its leases for most of a lease TTL stops its bots itself
(self-fencing), so a new owner never overlaps with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.engines.base import CredentialStore, EngineContext
from wafleet.engines.credentials import DbCredentialStore, FileCredentialStore
from wafleet.logging import get_logger
from wafleet.states import Cause
from wafleet.worker import commands as cmds
from wafleet.worker import heartbeat, leases
from wafleet.worker.batcher import WriteBatcher
from wafleet.worker.bot import BotDeps, TenantBot
from wafleet.worker.clock import Clock, SystemClock
from wafleet.worker.engine_connection import EngineFactory
from wafleet.worker.webhook import WebhookClient

COMMAND_POLL = 0.5
COMMAND_POLL_WITH_LISTEN = 5.0
BOT_RESTART_COOLDOWN = 5.0
MAX_MOVES_PER_ROUND = 5  # rebalancing hands over at most this many tenants per interval
log = get_logger("wafleet.supervisor")


class SupervisorState:
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        clock: Clock | None = None,
        engine_factory: EngineFactory | None = None,
        credentials: Callable[[str, int], CredentialStore] | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock or SystemClock()
        self.worker_id = worker_id or heartbeat.new_worker_id()
        self.state = SupervisorState.NEW
        self.batcher = WriteBatcher(db.engine)
        self.webhooks = WebhookClient(
            self.clock,
            timeout=settings.webhook_timeout,
            max_attempts=settings.webhook_max_attempts,
            allow_private=settings.webhook_allow_private,
        )
        if engine_factory is None:
            from wafleet.engines.factory import build_engine

            def engine_factory(ctx: EngineContext) -> Any:
                return build_engine(settings, ctx)

        self.deps = BotDeps(
            settings=settings,
            batcher=self.batcher,
            clock=self.clock,
            webhooks=self.webhooks,
            connect_limiter=asyncio.Semaphore(settings.connect_concurrency),
            engine_factory=engine_factory,
            credentials=credentials or self._file_credentials,
            worker_id=self.worker_id,
            sessions_dir=settings.sessions_dir,
            lease_fresh=self.lease_fresh,
        )
        self.bots: dict[int, TenantBot] = {}
        self.held: dict[int, int] = {}  # tenant id → lease epoch
        self._slugs: dict[int, str] = {}
        self._crashed_at: dict[int, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._last_renew_ok = 0.0
        self._fenced = False
        self._beat_task: asyncio.Task[set[int]] | None = None

    def _file_credentials(self, slug: str, tenant_id: int) -> CredentialStore:
        if self.settings.is_postgres:
            # shared database: credentials (the simulator's token, neonize's JID — its
            # device is in whatsmeow's tables there) move with the tenant on failover
            return DbCredentialStore(self.db.engine, tenant_id, self.settings.engine)
        return FileCredentialStore(self.settings.sessions_dir / slug)

    @property
    def _claim_period(self) -> float:
        # often enough that expired leases are taken over within a quarter TTL
        return min(self.settings.heartbeat_interval, self.settings.lease_ttl / 4)

    def lease_fresh(self) -> bool:
        """True while our last successful lease renewal is recent enough to trust."""
        age = self.clock.monotonic() - self._last_renew_ok
        return not self._fenced and age < self.settings.lease_ttl * 0.6

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.state != SupervisorState.NEW:
            raise RuntimeError(f"cannot start a supervisor that is {self.state}")
        self.settings.sessions_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.batcher.start()
        async with self.db.engine.begin() as conn:
            await heartbeat.register(
                conn, self.worker_id, self.settings.worker_capacity, self.clock.now()
            )
        self._last_renew_ok = self.clock.monotonic()
        self.state = SupervisorState.RUNNING
        log.info("worker started", worker_id=self.worker_id)
        for name, coro in (
            ("heartbeat", self._heartbeat_loop()),
            ("claim", self._claim_loop()),
            ("commands", self._command_loop()),
        ):
            task = asyncio.create_task(coro, name=f"supervisor:{name}")
            task.add_done_callback(self._loop_died)
            self._tasks.append(task)

    def _loop_died(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.state != SupervisorState.RUNNING:
            return
        exc = task.exception()
        log.error("supervisor loop died", task=task.get_name(), error=repr(exc))

    async def stop(self, timeout: float = 20.0) -> None:
        if self.state != SupervisorState.RUNNING:
            return
        self.state = SupervisorState.STOPPING
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._beat_task is not None:
            self._beat_task.cancel()  # bounded: it may be stuck on a hung database
            await asyncio.wait({self._beat_task}, timeout=2.0)
        bots = list(self.bots.values())
        per_bot = max(1.0, timeout - 5.0)
        await asyncio.gather(
            *(b.stop(Cause.SHUTDOWN, timeout=per_bot) for b in bots), return_exceptions=True
        )
        self.bots.clear()
        try:
            async with self.db.engine.begin() as conn:
                await leases.release(conn, self.worker_id)
                await heartbeat.mark_stopped(conn, self.worker_id, self.clock.now())
        except (SQLAlchemyError, OSError) as err:
            log.warning("could not release leases on shutdown", error=str(err)[:200])
        self.held.clear()
        await self.batcher.close()
        await self.webhooks.close()
        self.state = SupervisorState.STOPPED
        log.info("worker stopped", worker_id=self.worker_id)

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ bots
    def _start_bot(self, tenant_id: int, slug: str, epoch: int) -> None:
        bot = TenantBot(tenant_id, slug, epoch, self.deps)
        self.bots[tenant_id] = bot
        self.held[tenant_id] = epoch
        self._slugs[tenant_id] = slug
        bot.start()

    async def _stop_bot(self, tenant_id: int, cause: Cause) -> None:
        bot = self.bots.pop(tenant_id, None)
        self.held.pop(tenant_id, None)
        if bot is not None:
            if cause is Cause.LEASE_LOST:
                bot.lease_lost = True
            await bot.stop(cause)

    def stats(self) -> dict[str, Any]:
        snaps = [b.snapshot() for b in self.bots.values()]
        return {
            "tenants": len(self.bots),
            "connected": sum(1 for s in snaps if s.connected),
            "queue_depth": sum(s.queue_depth for s in snaps),
            "db_backlog": self.batcher.backlog,
        }

    def connected_ids(self) -> list[int]:
        return [t for t, b in self.bots.items() if b.snapshot().connected]

    # ------------------------------------------------------------------ loops
    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await self._heartbeat_once()
            await self.clock.sleep(interval)

    async def _heartbeat_once(self) -> None:
        ttl = self.settings.lease_ttl
        # Bounded: a database that hangs must not delay self-fencing past the lease TTL.
        budget = max(0.5, min(self.settings.heartbeat_interval, ttl * 0.3))
        try:
            lost = await self._bounded_beat(ttl, budget)
        except (SQLAlchemyError, OSError, TimeoutError) as err:
            silent = self.clock.monotonic() - self._last_renew_ok
            log.warning("heartbeat failed", error=str(err)[:200], silent_s=round(silent, 1))
            if silent > ttl * 0.6 and self.bots:
                await self._self_fence()
            return
        self._last_renew_ok = self.clock.monotonic()
        if self._fenced:
            await self._recover_from_fence()
        for tenant_id in lost:
            log.warning("lease lost", tenant=self._slugs.get(tenant_id), tenant_id=tenant_id)
            await self._stop_bot(tenant_id, Cause.LEASE_LOST)
        if lost:
            self._wake.set()

    async def _bounded_beat(self, ttl: float, budget: float) -> set[int]:
        """One heartbeat, given up after ``budget`` s. Not ``wait_for``: a cancelled write
        to a hung database can stay stuck in its own cleanup (SQLite's busy wait behind
        another writer's lock, a dead PostgreSQL socket), and ``wait_for`` waits for that
        too — self-fencing would come only after the lease TTL. So the beat is its own
        task; we stop waiting for it, and start no second one while it is stuck."""
        task = self._beat_task
        if task is not None and not task.done():
            raise TimeoutError("the previous heartbeat is still waiting for the database")
        task = self._beat_task = asyncio.create_task(self._beat(ttl), name="supervisor:beat")
        task.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({task}, timeout=budget)
        if not done:
            task.cancel()
            raise TimeoutError(f"no answer from the database within {budget:g}s")
        return task.result()

    async def _beat(self, ttl: float) -> set[int]:
        now = self.clock.now()
        connected = self.connected_ids()
        held = dict(self.held)
        stats = self.stats()

        async def write(conn: AsyncConnection) -> set[int]:
            return await heartbeat.beat(
                conn, self.worker_id, now=now, connected=connected, held=held, ttl=ttl, stats=stats
            )

        # Through the writer, ahead of its backlog: on SQLite a separate transaction would
        # fight the writer for the database lock and lose under a message burst.
        return await self.batcher.submit(write, urgent=True)

    async def _self_fence(self) -> None:
        """Database unreachable for most of the lease TTL: stop every bot before our
        leases can expire, so the next owner never overlaps with us."""
        log.error("cannot renew leases: stopping all bots (self-fencing)", bots=len(self.bots))
        self._fenced = True
        ids = list(self.bots)
        await asyncio.gather(*(self._stop_bot(t, Cause.LEASE_LOST) for t in ids))

    async def _recover_from_fence(self) -> None:
        async with self.db.engine.begin() as conn:
            await leases.release(conn, self.worker_id)
        self._fenced = False
        self._wake.set()
        log.info("database reachable again: reclaiming tenants")

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self._reconcile()
            except (SQLAlchemyError, OSError) as err:
                log.warning("claiming tenants failed", error=str(err)[:200])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._claim_period)

    async def _reconcile(self) -> None:
        if self._fenced:
            return
        now = self.clock.now()
        # bots that died (a bug) are restarted after a cooldown, with the same lease
        for tenant_id, bot in list(self.bots.items()):
            if not bot.running:
                died = self._crashed_at.setdefault(tenant_id, self.clock.monotonic())
                if self.clock.monotonic() - died >= BOT_RESTART_COOLDOWN:
                    self._crashed_at.pop(tenant_id, None)
                    epoch = self.held[tenant_id]
                    self.bots.pop(tenant_id)
                    log.warning("restarting crashed bot", tenant=bot.slug)
                    self._start_bot(tenant_id, bot.slug, epoch)
        async with self.db.engine.begin() as conn:
            paused = await leases.paused_tenants(conn, list(self.bots))
        for tenant_id in paused:
            await self._stop_bot(tenant_id, Cause.PAUSED)
            async with self.db.engine.begin() as conn:
                await leases.release(conn, self.worker_id, [tenant_id])
        # A worker whose heartbeat is older than a lease TTL holds no valid lease: it no
        # longer counts for the fair share, so its tenants are taken over at expiry.
        live_window = self.settings.lease_ttl
        async with self.db.engine.connect() as conn:
            fair = await leases.fair_share(
                conn, now=now, live_window=live_window, capacity=self.settings.worker_capacity
            )
        if len(self.bots) > fair + 1:
            await self._hand_over(len(self.bots) - fair)
        room = min(self.settings.worker_capacity, fair) - len(self.bots)
        async with self.db.engine.begin() as conn:
            claimed = await leases.claim(
                conn, self.worker_id, now=now, ttl=self.settings.lease_ttl, limit=room
            )
        for lease in claimed:
            if lease.tenant_id in self.bots:  # ours already (renewed after a restart)
                continue
            self._start_bot(lease.tenant_id, lease.slug, lease.epoch)
        if claimed:
            log.info("claimed tenants", count=len(claimed))

    async def _hand_over(self, excess: int) -> None:
        """Give tenants back so a newly joined worker gets its fair share: each move is a
        clean stop (drain, disconnect) BEFORE the lease is released — never overlapping."""
        moves = leases.pick_hand_overs(
            {t: b.state for t, b in self.bots.items()}, min(excess, MAX_MOVES_PER_ROUND)
        )
        if not moves:
            return
        log.info("rebalancing: handing over tenants", count=len(moves))
        for tenant_id in moves:
            await self._stop_bot(tenant_id, Cause.SHUTDOWN)
            async with self.db.engine.begin() as conn:
                await leases.release(conn, self.worker_id, [tenant_id])

    async def _command_loop(self) -> None:
        listener = cmds.CommandListener(self.settings) if self.settings.is_postgres else None
        try:
            while True:
                try:
                    await self._apply_commands()
                except (SQLAlchemyError, OSError) as err:
                    log.warning("reading commands failed", error=str(err)[:200])
                if listener is not None and await listener.ensure():
                    await listener.wait(COMMAND_POLL_WITH_LISTEN)
                else:
                    await self.clock.sleep(COMMAND_POLL)
        finally:
            if listener is not None:
                await listener.close()

    async def _apply_commands(self) -> None:
        async with self.db.engine.connect() as conn:
            pending = await cmds.pending(conn)
        if not pending:
            return
        reconcile = False
        for cmd in pending:
            bot = self.bots.get(cmd.tenant_id)
            if bot is None and cmd.lease_owner not in (None, self.worker_id):
                continue  # another worker's tenant
            async with self.db.engine.begin() as conn:
                if not await cmds.mark_done(conn, cmd.id, self.clock.now(), "applied"):
                    continue  # someone else took it
                if bot is None:
                    await cmds.apply_unheld(conn, cmd, self.clock.now())
                    reconcile = True
                    continue
            cmds.apply_to_bot(bot, cmd)
            if cmd.kind == "pause":
                reconcile = True
        if reconcile:
            self._wake.set()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """An abandoned heartbeat's late error was already reported as a timeout."""
    if not task.cancelled():
        task.exception()
