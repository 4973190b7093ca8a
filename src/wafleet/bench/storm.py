"""``storm``: every socket dropped at once (simulator fault ``drop`` on ``"*"``): how long
until all tenants are connected again, the peak connect rate, and whether the worker kept
within ``WAFLEET_CONNECT_CONCURRENCY``.

Sources: ``/sim/stats`` sampled every ``sample`` s — ``connect_attempts`` (cumulative, per
phone; the rate is its increase over ≥ 200 ms windows) and the simulator's open sockets.
The simulator exposes no concurrent-handshake peak, so connects in flight are estimated
from the same samples as open sockets that have not logged in yet (``open_sockets`` -
logged-in connections - QR-waiting): the server-side part of each connect, sampled, so a
lower bound of the worker's in-flight connects. The worker-side bound is the code's own
semaphore (`BotDeps.connect_limiter`, sized by the setting). "All back" is measured at
the simulator (every phone logged in) and in the database (every session CONNECTED).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from wafleet.bench.common import BenchError, Figures, Result, Row, fmt
from wafleet.bench.fleet import Fleet
from wafleet.bench.procs import wait_for

TARGET_S = 15.0
RATE_WINDOW = 0.2


@dataclass
class StormOptions:
    tenants: int = 1000
    connect_concurrency: int = 50
    sample: float = 0.05
    timeout: float = 60.0
    log_level: str = "INFO"  # the worker's default: its per-transition lines are part of the cost


@dataclass
class Sample:
    at: float
    attempts: int
    connected: int
    in_flight: int


async def _sample(fleet: Fleet, http: httpx.AsyncClient, phones: set[str]) -> Sample:
    st = await fleet.sim_stats(http)
    conns: dict[str, int] = st["connections"]
    logged_in = sum(conns.values())
    return Sample(
        at=time.perf_counter(),
        attempts=sum(int(v) for k, v in st["connect_attempts"].items() if k in phones),
        connected=sum(1 for p in phones if conns.get(p, 0) > 0),
        in_flight=max(0, int(st.get("open_sockets", 0)) - logged_in - int(st.get("qr_waiting", 0))),
    )


def peak_rate(samples: list[Sample]) -> float:
    best = 0.0
    j = 0
    for i, s in enumerate(samples):
        while j < i and s.at - samples[j + 1].at >= RATE_WINDOW:
            j += 1
        if s.at - samples[j].at >= RATE_WINDOW:
            best = max(best, (s.attempts - samples[j].attempts) / (s.at - samples[j].at))
    return best


async def run_async(opts: StormOptions, root: Path) -> Result:
    env = {
        "WAFLEET_CONNECT_CONCURRENCY": str(opts.connect_concurrency),
        "WAFLEET_LOG_LEVEL": opts.log_level,
    }
    async with Fleet(root, worker_env=env) as fleet, fleet.http() as http:
        await fleet.start_simulator()
        await fleet.migrate()
        await fleet.seed(opts.tenants)
        fleet.start_worker()
        await fleet.wait_connected(http, fleet.phones, timeout=opts.timeout * 2)
        phones = set(fleet.phones)
        samples: list[Sample] = []
        stop = asyncio.Event()

        async def sampler() -> None:
            while not stop.is_set():
                samples.append(await _sample(fleet, http, phones))
                await asyncio.sleep(opts.sample)

        task = asyncio.create_task(sampler(), name="storm-sampler")
        try:
            await asyncio.sleep(0.3)
            before = samples[-1].attempts if samples else 0
            resp = await http.post(
                f"{fleet.sim_http}/sim/faults", json={"kind": "drop", "phone": "*"}
            )
            if resp.status_code != 200:
                raise BenchError(f"/sim/faults answered {resp.status_code}: {resp.text}")
            t0 = time.perf_counter()

            async def all_back() -> float | None:
                recent = [s for s in samples if s.at > t0]
                done = [s for s in recent if s.connected == len(phones)]
                dropped = any(s.connected < len(phones) for s in recent)
                return done[0].at if done and dropped else None

            back_at = await wait_for(
                all_back,
                timeout=opts.timeout,
                what="every tenant connected again",
                procs=fleet.procs,
            )

            async def db_back() -> bool:
                states = await fleet.db_states()
                return states.get("CONNECTED", 0) == len(phones)

            await wait_for(
                db_back, timeout=opts.timeout, what="every session CONNECTED", interval=0.1
            )
            db_at = time.perf_counter()
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
    storm = [s for s in samples if s.at >= t0]
    attempts = storm[-1].attempts - before if storm else 0
    rate = peak_rate(storm)
    in_flight = max((s.in_flight for s in storm), default=0)
    recovery = back_at - t0
    figures: Figures = {
        "tenants": opts.tenants,
        "recovery_s": round(recovery, 2),
        "recovery_db_s": round(db_at - t0, 2),
        "connect_attempts": attempts,
        "peak_connect_rate_per_s": round(rate, 1),
        "peak_in_flight_sampled": in_flight,
        "connect_concurrency": opts.connect_concurrency,
        "samples": len(storm),
        "sample_interval_s": opts.sample,
    }
    rows = [
        Row(
            f"all {opts.tenants} back after drop (s)",
            fmt(recovery, 2),
            f"< {TARGET_S:g}",
            "",
            recovery < TARGET_S,
        ),
        Row("all CONNECTED in the database (s)", fmt(db_at - t0, 2), "", ""),
        Row("peak connect rate (/s, 200 ms windows)", fmt(rate, 0), "", ""),
        Row(
            "connects in flight (sampled, server side)",
            str(in_flight),
            f"<= {opts.connect_concurrency}",
            "",
            in_flight <= opts.connect_concurrency,
        ),
    ]
    notes = [
        f"{attempts} connect attempts for {opts.tenants} tenants; in-flight connects are "
        "sampled at the simulator (open sockets not logged in yet), a lower bound",
    ]
    return Result("storm", figures, rows, notes)
