"""``pipeline``: end-to-end messages/s and latency through a real worker, against a
minimal echo client (no database, no queue) over the same simulator in the same run.

Both responders face the same load: ``tenants`` phones x ``chats`` contacts,
``messages`` injected as fast as the simulator takes them (throughput = messages / time
from the first injection to the last reply recorded at the simulator), then a fixed
offered load of ``rate`` msgs/s for ``duration`` s (latency = reply recorded-at at the
simulator minus the inbound message's injected-at at the simulator), started once the
worker has durably finished the burst (so it measures the steady state, not the
burst's tail of SENT marks). Per-message latencies are kept (``--keep``) as
``<responder>-latencies.json`` in injection order. For the worker,
injected-at is the inbound row's ``created_at`` (the simulator's timestamp, stored as
received); for the echo client it travels in the reply text. The worker run must also
leave every message durably stored: inbound PROCESSED, reply SENT or later.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx

from wafleet.bench import load
from wafleet.bench.common import BenchError, Figures, Result, Row, fmt, percentile
from wafleet.bench.fleet import Fleet
from wafleet.bench.procs import Proc, wait_for
from wafleet.bench.profiling import pyspy

TARGET_MSGS_S = 2000.0
TARGET_RATIO = 0.5
TARGET_P99_MS = 100.0


@dataclass
class PipelineOptions:
    tenants: int = 50
    chats: int = 20
    messages: int = 20_000
    rate: float = 500.0
    duration: float = 10.0
    timeout: float = 120.0
    profile: bool = False  # py-spy the responders (files kept with --keep)


@dataclass
class Phase:
    msgs_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    responder_cpu_s: float


async def _measure(
    http: httpx.AsyncClient,
    fleet: Fleet,
    responder: Proc,
    phones: list[str],
    opts: PipelineOptions,
    tag: str,
    injected_at: Any,
    settle: Callable[[], Awaitable[Any]] | None = None,
) -> Phase:
    url = fleet.sim_http
    base = await load.outbound_count(http, url)
    cpu0 = responder.cpu_seconds()
    out_file = fleet.root / f"{tag}-flood.pyspy"
    async with pyspy(responder.pid, out_file, enabled=opts.profile):
        burst = await load.flood(http, url, phones, chats=opts.chats, count=opts.messages, tag=tag)
        done = await load.wait_outbound(
            http, url, base + opts.messages, timeout=opts.timeout, alive=responder.alive
        )
    cpu = responder.cpu_seconds() - cpu0
    msgs_s = opts.messages / (done - burst.started)
    if settle is not None:
        # Latency is measured at a steady load, not while the burst's tail (its SENT
        # marks and receipts) is still being written.
        await settle()
    base = await load.outbound_count(http, url)
    out_file = fleet.root / f"{tag}-steady.pyspy"
    async with pyspy(responder.pid, out_file, enabled=opts.profile, idle=True):
        steady = await load.paced(
            http,
            url,
            phones,
            chats=opts.chats,
            rate=opts.rate,
            duration=opts.duration,
            tag=tag + "p",
        )
    await load.wait_outbound(
        http, url, base + len(steady.ids), timeout=opts.timeout, alive=responder.alive
    )
    out = await load.replies(http, url)
    lookup = await injected_at(steady.ids, out)
    lat = load.latencies_ms(steady.ids, out, lookup)
    # in injection order: where a tail sits in time shows what caused it (kept by --keep)
    (fleet.root / f"{tag}-latencies.json").write_text(json.dumps([round(x, 2) for x in lat]))
    return Phase(
        msgs_s=msgs_s,
        p50_ms=percentile(lat, 50),
        p99_ms=percentile(lat, 99),
        max_ms=max(lat),
        responder_cpu_s=cpu,
    )


async def _baseline(fleet: Fleet, http: httpx.AsyncClient, opts: PipelineOptions) -> Phase:
    from wafleet.bench.fleet import pair_phones, phone_of

    phones = [phone_of(i, "1666") for i in range(opts.tenants)]
    paired = await pair_phones(fleet.sim_http, fleet.sim_ws, phones)
    creds = fleet.root / "echo-creds.json"
    creds.write_text(json.dumps({p.phone: p.creds.decode() for p in paired}))
    argv = [sys.executable, "-m", "wafleet.bench.echo", str(creds), fleet.sim_ws]
    echo = fleet.procs.add(Proc(argv, fleet.env(), fleet.root / "echo.log"))
    try:
        await fleet.wait_connected(http, phones, timeout=60)

        async def injected_at(_ids: list[str], out: dict[str, dict[str, Any]]) -> Any:
            def at(mid: str) -> datetime | None:
                reply = out.get(f"R-{mid}")
                return datetime.fromisoformat(str(reply["text"])) if reply else None

            return at

        return await _measure(http, fleet, echo, phones, opts, "echo", injected_at)
    finally:
        await asyncio.to_thread(echo.stop)


async def _stored_times(fleet: Fleet, ids: list[str]) -> dict[str, datetime]:
    from sqlalchemy import Table, select

    from wafleet.db.engine import Database
    from wafleet.db.models import MessageLog

    ml = cast(Table, MessageLog.__table__)
    wanted = set(ids)
    db = Database(fleet.db_url)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                select(ml.c.wa_id, ml.c.created_at).where(ml.c.direction == "in")
            )
            return {str(w): c for w, c in rows.all() if w in wanted}
    finally:
        await db.close()


async def _durable(fleet: Fleet, expected: int, timeout: float) -> dict[str, int]:
    """Wait until every message is stored as done: inbound PROCESSED, reply SENT or later."""

    async def counts() -> dict[str, int] | None:
        rows = await fleet.query(
            "SELECT direction, status, count(*) AS n FROM message_logs GROUP BY direction, status"
        )
        c = {f"{r['direction']}:{r['status']}": int(r["n"]) for r in rows}
        done_in = c.get("in:PROCESSED", 0)
        done_out = sum(c.get(f"out:{s}", 0) for s in ("SENT", "DELIVERED", "READ"))
        return c if done_in == expected and done_out == expected else None

    try:
        return await wait_for(counts, timeout=timeout, what="every message stored", interval=0.2)
    except BenchError:
        rows = await fleet.query(
            "SELECT direction, status, count(*) AS n FROM message_logs GROUP BY direction, status"
        )
        msg = f"not every message is stored as done (expected {expected}): {rows}"
        raise BenchError(msg) from None


async def _worker(fleet: Fleet, http: httpx.AsyncClient, opts: PipelineOptions) -> Phase:
    await fleet.migrate()
    await fleet.seed(opts.tenants)
    worker = fleet.start_worker()
    await fleet.wait_connected(http, fleet.phones, timeout=60)

    async def injected_at(ids: list[str], _out: dict[str, dict[str, Any]]) -> Any:
        stored = await _stored_times(fleet, ids)
        return stored.get

    async def settle() -> None:
        await _durable(fleet, opts.messages, timeout=opts.timeout)

    return await _measure(http, fleet, worker, fleet.phones, opts, "w", injected_at, settle)


async def run_async(opts: PipelineOptions, root: Path) -> Result:
    async with Fleet(root) as fleet, fleet.http() as http:
        await fleet.start_simulator()
        base = await _baseline(fleet, http, opts)
        wk = await _worker(fleet, http, opts)
        total = opts.messages + int(opts.rate * opts.duration)
        stored = await _durable(fleet, total, timeout=60)
    ratio = wk.msgs_s / base.msgs_s if base.msgs_s else 0.0
    figures: Figures = {
        "throughput_msgs_s": round(wk.msgs_s, 1),
        "baseline_msgs_s": round(base.msgs_s, 1),
        "ratio": round(ratio, 3),
        "p50_ms": round(wk.p50_ms, 2),
        "p99_ms": round(wk.p99_ms, 2),
        "max_ms": round(wk.max_ms, 2),
        "baseline_p50_ms": round(base.p50_ms, 2),
        "baseline_p99_ms": round(base.p99_ms, 2),
        "offered_load_msgs_s": opts.rate,
        "tenants": opts.tenants,
        "chats_per_tenant": opts.chats,
        "messages": opts.messages,
        "latency_messages": int(opts.rate * opts.duration),
        "worker_cpu_s_per_1k_msgs": round(wk.responder_cpu_s / opts.messages * 1000, 3),
        "baseline_cpu_s_per_1k_msgs": round(base.responder_cpu_s / opts.messages * 1000, 3),
        "stored": stored,
    }
    rows = [
        Row(
            "end-to-end throughput (msgs/s)",
            fmt(wk.msgs_s),
            f">= {TARGET_MSGS_S:,.0f}",
            fmt(base.msgs_s) + " (echo client)",
            wk.msgs_s >= TARGET_MSGS_S,
        ),
        Row(
            "throughput / baseline",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO}",
            "1.00",
            ratio >= TARGET_RATIO,
        ),
        Row(
            f"p50 latency @ {opts.rate:g} msgs/s (ms)",
            fmt(wk.p50_ms, 2),
            "",
            fmt(base.p50_ms, 2),
        ),
        Row(
            f"p99 latency @ {opts.rate:g} msgs/s (ms)",
            fmt(wk.p99_ms, 2),
            f"< {TARGET_P99_MS:g}",
            fmt(base.p99_ms, 2),
            wk.p99_ms < TARGET_P99_MS,
        ),
    ]
    notes = [
        f"{total} messages durably stored (inbound PROCESSED, replies SENT/DELIVERED/READ)",
    ]
    return Result("pipeline", figures, rows, notes)
