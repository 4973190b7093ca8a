"""Each doctor check driven to PASS and to FAIL (or WARN) through its injected
dependencies, against real files, a real SQLite database, real sockets and a real child
process for the engine library."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.procs import free_port
from wafleet.config import load_settings
from wafleet.db.base import utcnow
from wafleet.db.engine import Database
from wafleet.db.models import Tenant, WhatsAppSession, WorkerProcess
from wafleet.db.repositories import TenantRepository, UserRepository
from wafleet.ops import db_checks, host_checks, net_checks
from wafleet.ops.doctor import CheckResult, check_config, exit_code, render_json, render_text
from wafleet.states import Cause, SessionState, TenantStatus, WorkerStatus


# ------------------------------------------------------------------ result format
def test_line_format_and_exit_code() -> None:
    ok = CheckResult("disk", "PASS", "5 GiB free")
    bad = CheckResult("network", "FAIL", "cannot resolve x", "fix DNS")
    assert ok.line() == "PASS disk: 5 GiB free — nothing to do"
    assert bad.line() == "FAIL network: cannot resolve x — fix DNS"
    assert exit_code([ok]) == 0
    assert exit_code([ok, CheckResult("t", "WARN", "d", "f")]) == 0
    assert exit_code([ok, bad]) == 1
    assert render_text([ok, bad]).splitlines() == [ok.line(), bad.line()]
    assert '"check": "network"' in render_json([bad])


# ------------------------------------------------------------------ config
def test_config_pass_and_fail(tmp_path: Path) -> None:
    r, cfg = check_config(lambda: load_settings(data_dir=tmp_path))
    assert r.status == "PASS"
    assert cfg is not None
    r, cfg = check_config(lambda: load_settings(data_dir=tmp_path, stale_after=5))
    assert r.status == "FAIL"
    assert cfg is None
    assert "WAFLEET_STALE_AFTER" in r.detail
    r, _ = check_config(lambda: load_settings(database_url="mysql://x"))
    assert r.status == "FAIL"
    assert "WAFLEET_DATABASE_URL" in r.detail


async def test_portal_key(tmp_path: Path) -> None:
    good = await host_checks.check_portal_key(load_settings(data_dir=tmp_path, portal_key="k" * 40))
    assert good.status == "PASS"
    missing = await host_checks.check_portal_key(load_settings(data_dir=tmp_path))
    assert missing.status == "WARN"
    assert "WAFLEET_PORTAL_KEY" in missing.fix
    (tmp_path / "portal.key").write_text("short\n")
    short = await host_checks.check_portal_key(load_settings(data_dir=tmp_path))
    assert short.status == "FAIL"
    assert "32" in short.detail


# ------------------------------------------------------------------ data dir, permissions
def test_data_dir_writable_missing_and_not_a_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert host_checks.check_data_dir(data).status == "WARN"  # created on first start
    data.mkdir()
    (data / "logs").mkdir()
    ok = host_checks.check_data_dir(data)
    assert ok.status == "PASS"
    assert "logs" in ok.detail
    assert list(data.iterdir()) == [data / "logs"]  # the probe file is gone
    afile = tmp_path / "file"
    afile.write_text("x")
    assert host_checks.check_data_dir(afile).status == "FAIL"


def test_data_dir_unwritable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sessions").mkdir(parents=True)

    def read_only_sessions(d: Path) -> None:
        if d.name == "sessions":
            raise PermissionError(13, "Permission denied")
        host_checks._probe_write(d)

    r = host_checks.check_data_dir(data, probe_write=read_only_sessions)
    assert r.status == "FAIL"
    assert "sessions is not writable: Permission denied" in r.detail
    assert "chown" in r.fix
    # and really: /proc/self is a directory nobody can create files in, root included
    assert host_checks.check_data_dir(Path("/proc/self")).status == "FAIL"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0500")
def test_data_dir_unwritable_by_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    try:
        assert host_checks.check_data_dir(data).status == "FAIL"
    finally:
        data.chmod(0o700)


def test_permissions(tmp_path: Path) -> None:
    assert host_checks.check_permissions(tmp_path).status == "PASS"  # nothing stored yet
    sessions = tmp_path / "sessions"
    (sessions / "acme").mkdir(parents=True, mode=0o700)
    sessions.chmod(0o700)
    key = tmp_path / "portal.key"
    key.write_text("k" * 40)
    key.chmod(0o600)
    ok = host_checks.check_permissions(tmp_path)
    assert ok.status == "PASS"
    assert "0700" in ok.detail
    assert "0600" in ok.detail

    (sessions / "acme").chmod(0o755)
    key.chmod(0o644)
    bad = host_checks.check_permissions(tmp_path)
    assert bad.status == "FAIL"
    assert f"{sessions / 'acme'} is 0755" in bad.detail
    assert f"{key} is 0644" in bad.detail
    assert "chmod" in bad.fix


# ------------------------------------------------------------------ disk
@dataclass
class FakeStat:
    f_bavail: int
    f_frsize: int = 4096


@pytest.mark.parametrize(
    ("free", "status"),
    [
        (50 * 1024**2, "FAIL"),
        (99 * 1024**2, "FAIL"),
        (500 * 1024**2, "WARN"),
        (5 * 1024**3, "PASS"),
    ],
)
def test_disk_thresholds(tmp_path: Path, free: int, status: str) -> None:
    seen: list[str] = []

    def statvfs(path: str) -> FakeStat:
        seen.append(path)
        return FakeStat(free // 4096)

    r = host_checks.check_disk(tmp_path / "not-yet", statvfs=statvfs)
    assert r.status == status, r
    assert seen == [str(tmp_path)]  # the nearest existing directory


def test_disk_real(tmp_path: Path) -> None:
    assert host_checks.check_disk(tmp_path).status in ("PASS", "WARN", "FAIL")
    assert "free in" in host_checks.check_disk(tmp_path).detail


# ------------------------------------------------------------------ engine
async def test_neonize_library_loads_in_a_child_process() -> None:
    r = await host_checks.check_neonize()
    assert r.status == "PASS", r
    assert "0.5.2" in r.detail


async def test_engine_library_missing_or_broken(tmp_path: Path) -> None:
    missing = await host_checks.check_neonize(module="wafleet_no_such_engine")
    assert missing.status == "FAIL"
    assert "not installed" in missing.detail
    assert "pip install" in missing.fix

    # a package whose Go library is missing, then one whose library is garbage
    pkg = tmp_path / "fakeeng"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise SystemExit('must never be imported')\n")

    async def probe(module: str) -> dict[str, object]:
        return await host_checks.probe_library(module, cwd=str(tmp_path))

    r = await host_checks.check_neonize(module="fakeeng", probe=probe)
    assert r.status == "FAIL"
    assert "is missing" in r.detail
    import platform

    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    (pkg / f"fakeeng-linux-{machine}.so").write_bytes(b"not an ELF file")
    r = await host_checks.check_neonize(module="fakeeng", probe=probe)
    assert r.status == "FAIL"
    assert "cannot load" in r.detail


async def test_engine_probe_that_crashes_or_hangs(tmp_path: Path) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n")
    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(60)\n")

    async def run(script: Path, timeout: float) -> dict[str, object]:
        # the probe takes `python -c CODE MODULE`: a wrapper interpreter runs our script
        wrapper = tmp_path / f"py-{script.stem}"
        wrapper.write_text(f"#!/bin/sh\nexec {os.sys.executable} {script}\n")  # type: ignore[attr-defined]
        wrapper.chmod(0o755)
        return await host_checks.probe_library("neonize", python=str(wrapper), timeout=timeout)

    died = await run(crash, 10)
    assert died["ok"] is False
    assert "signal 6" in str(died["error"])
    hung = await run(hang, 0.5)
    assert hung["ok"] is False
    assert "hung" in str(hung["error"])


async def test_glibc_too_old_or_absent() -> None:
    async def never(module: str) -> dict[str, object]:
        raise AssertionError("no probe when the C library cannot work")

    old = await host_checks.check_neonize(libc=lambda: ("glibc", "2.31"), probe=never)
    assert old.status == "FAIL"
    assert "2.31" in old.detail
    musl = await host_checks.check_neonize(libc=lambda: None, probe=never)
    assert musl.status == "FAIL"
    assert "glibc" in musl.detail
    assert host_checks.glibc_version() is not None  # this machine: Debian's glibc


async def test_simulator_engine_answers_or_not() -> None:
    from wafleet.simulator import SimulatorServer

    server = SimulatorServer(time_scale=1.0)
    await server.start()
    try:
        ok = await host_checks.check_simulator(server.ws_url)
        assert ok.status == "PASS", ok
    finally:
        await server.stop()
    down = await host_checks.check_simulator(f"ws://127.0.0.1:{free_port()}/ws", timeout=1)
    assert down.status == "FAIL"
    assert "wafleet simulator" in down.fix


# ------------------------------------------------------------------ network
@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


async def test_whatsapp_reachable_with_injected_resolver(listener: int) -> None:
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    targets = [("web.whatsapp.com", listener), ("g.whatsapp.net", listener)]
    r = await net_checks.check_reachability(targets, resolver=resolver, timeout=2)
    assert r.status == "PASS", r
    assert "web.whatsapp.com" in r.detail
    assert "g.whatsapp.net" in r.detail
    assert asked == targets


async def test_whatsapp_unreachable_with_the_real_resolver() -> None:
    r = await net_checks.check_reachability(net_checks.WHATSAPP_TARGETS, timeout=2)
    if r.status == "PASS":
        pytest.skip("this machine does reach WhatsApp")
    assert r.status == "FAIL"
    assert "whatsapp" in r.detail
    assert "443" in r.fix
    assert "5222" in r.fix


async def test_tcp_refused_and_dns_timeout() -> None:
    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    closed = free_port()
    r = await net_checks.check_reachability([("web.whatsapp.com", closed)], resolver=loopback)
    assert r.status == "FAIL"
    assert f"TCP web.whatsapp.com:{closed}" in r.detail

    async def hanging(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []

    r = await net_checks.check_reachability(
        [("web.whatsapp.com", 443)], resolver=hanging, timeout=0.1
    )
    assert r.status == "FAIL"
    assert "timed out" in r.detail


# ------------------------------------------------------------------ database, migrations
async def test_database_reachable_and_unreachable(migrated_db: Database) -> None:
    assert (await db_checks.check_database(migrated_db)).status == "PASS"
    nobody = Database(f"postgresql://u@127.0.0.1:{free_port()}/db")
    try:
        r = await db_checks.check_database(nobody, timeout=5)
    finally:
        await nobody.close()
    assert r.status == "FAIL"
    assert "cannot connect" in r.detail


def test_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "w.db"
    r = db_checks.missing_sqlite_file(f"sqlite:///{path}")
    assert r is not None
    assert r.status == "FAIL"
    assert "wafleet migrate" in r.fix
    assert not path.parent.exists()


async def test_migrations_unmigrated_behind_and_at_head(
    migrated_db: Database, tmp_path: Path
) -> None:
    ok = await db_checks.check_migrations(migrated_db.url)
    assert ok.status == "PASS", ok

    empty = tmp_path / "empty.db"
    empty.touch()
    r = await db_checks.check_migrations(f"sqlite:///{empty}")
    assert r.status == "FAIL"
    assert "never migrated" in r.detail
    assert "wafleet migrate" in r.fix

    async def old(url: str) -> str | None:
        return "0000_old"

    r = await db_checks.check_migrations(migrated_db.url, current=old, head=lambda: "0002")
    assert r.status == "FAIL"
    assert "0000_old" in r.detail
    assert "0002" in r.detail


# ------------------------------------------------------------------ clock
async def test_clock() -> None:
    build = datetime(2026, 1, 1, tzinfo=UTC)
    good = datetime(2026, 6, 1, tzinfo=UTC)
    assert (await db_checks.check_clock(now=lambda: good, build_date=build)).status == "PASS"
    r = await db_checks.check_clock(now=lambda: datetime(2001, 1, 1, tzinfo=UTC), build_date=build)
    assert r.status == "FAIL"
    assert "NTP" in r.fix

    def server_at(offset: float):  # type: ignore[no-untyped-def]
        async def read() -> datetime:
            return good + timedelta(seconds=offset)

        return read

    for offset, status in ((0.5, "PASS"), (-4, "WARN"), (45, "FAIL")):
        r = await db_checks.check_clock(
            now=lambda: good, build_date=build, server_now=server_at(offset)
        )
        assert r.status == status, (offset, r)
    assert (await db_checks.check_clock()).status == "PASS"  # this machine, today


async def test_clock_against_postgres(pg_migrated_url: str) -> None:
    cfg = load_settings(database_url=pg_migrated_url, portal_key="k" * 40)
    results = {
        r.check: r for r in await db_checks.run_db_checks(cfg, ["clock", "database", "migrations"])
    }
    assert results["database"].status == "PASS"
    assert results["migrations"].status == "PASS"
    assert results["clock"].status == "PASS"
    assert "database server" in results["clock"].detail


# ------------------------------------------------------------------ workers, tenants
async def _seed(db: Database) -> dict[str, int]:
    async with db.session() as s, s.begin():
        owner = await UserRepository(s).create("o@example.com", "password123")
        ids = {}
        for slug in ("acme", "beta", "gamma", "delta"):
            t = await TenantRepository(s).create(slug, slug.title(), owner)
            ids[slug] = t.id
    return ids


async def _set(db: Database, tenant_id: int, status: str | None = None, **session: object) -> None:
    async with db.session() as s, s.begin():
        if status is not None:
            t = await s.get(Tenant, tenant_id)
            assert t is not None
            t.status = status
            t.error_message = "Gave up after 20 reconnect attempts" if status == "ERROR" else None
        ws = await s.get(WhatsAppSession, tenant_id)
        assert ws is not None
        for k, v in session.items():
            setattr(ws, k, v)


async def _worker(db: Database, wid: str, status: str, silent_s: float) -> None:
    async with db.session() as s, s.begin():
        s.add(
            WorkerProcess(
                id=wid,
                host="h1",
                pid=42,
                status=status,
                last_heartbeat_at=utcnow() - timedelta(seconds=silent_s),
                stats={},
            )
        )


async def test_workers(migrated_db: Database) -> None:
    db = migrated_db
    r = await db_checks.check_workers(db, stale_after=30)
    assert r.status == "PASS"
    assert "no workers" in r.detail
    await _seed(db)  # four ACTIVE tenants
    r = await db_checks.check_workers(db, stale_after=30)
    assert r.status == "FAIL"
    assert "no healthy worker serves the 4 active" in r.detail
    await _worker(db, "w-ok", WorkerStatus.RUNNING.value, 1)
    assert (await db_checks.check_workers(db, stale_after=30)).status == "PASS"
    await _worker(db, "w-dead", WorkerStatus.STALE.value, 120)
    r = await db_checks.check_workers(db, stale_after=30)
    assert r.status == "WARN"
    assert "w-dead on h1" in r.detail
    assert "restart" in r.fix
    await _worker(db, "w-silent", WorkerStatus.RUNNING.value, 90)
    r = await db_checks.check_workers(db, stale_after=30)
    assert r.status == "WARN"
    assert "w-silent" in r.detail
    assert "control plane" in r.fix


async def test_workers_old_stale_rows_are_history(migrated_db: Database) -> None:
    await _worker(migrated_db, "w-ok", WorkerStatus.RUNNING.value, 1)
    await _worker(migrated_db, "w-last-week", WorkerStatus.STALE.value, 7 * 86400)
    r = await db_checks.check_workers(migrated_db, stale_after=30)
    assert r.status == "PASS"
    assert "1 stale row(s) older than 24 h" in r.detail


async def test_tenants_needing_attention(migrated_db: Database) -> None:
    db = migrated_db
    ids = await _seed(db)
    r = await db_checks.check_tenants(db, max_attempts=20)
    assert r.status == "PASS"
    assert "4 tenant(s)" in r.detail
    at = datetime(2026, 3, 1, 14, 2, tzinfo=UTC)
    await _set(
        db,
        ids["acme"],
        state=SessionState.LOGGED_OUT.value,
        last_disconnect_cause=Cause.LOGGED_OUT.value,
        last_disconnect_at=at,
    )
    await _set(
        db,
        ids["beta"],
        TenantStatus.ERROR.value,
        last_disconnect_cause=Cause.NETWORK.value,
        last_disconnect_at=at,
    )
    await _set(db, ids["gamma"], TenantStatus.PAUSED.value)
    r = await db_checks.check_tenants(db, max_attempts=20)
    assert r.status == "WARN", r
    assert "2 of 4 need attention" in r.detail
    assert "acme [ACTIVE]: Logged out from the phone on 2026-03-01 14:02 UTC" in r.detail
    assert "wafleet tenant relink acme" in r.detail
    assert "beta [ERROR]" in r.detail
    assert "after 20 reconnect attempts" in r.detail
    assert "wafleet tenant restart beta" in r.detail
    assert "gamma" not in r.detail
    assert "delta" not in r.detail


async def test_db_runner_skips_dependent_checks(tmp_path: Path) -> None:
    cfg = load_settings(data_dir=tmp_path, database_url=f"postgresql://u@127.0.0.1:{free_port()}/x")
    names = ["clock", "database", "migrations", "workers", "tenants"]
    got = {r.check: r for r in await db_checks.run_db_checks(cfg, names)}
    assert got["database"].status == "FAIL"
    assert got["clock"].status == "PASS"  # the host clock alone
    for n in ("migrations", "workers", "tenants"):
        assert got[n].status == "WARN"
        assert "not checked" in got[n].detail
