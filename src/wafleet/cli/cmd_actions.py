"""``wafleet tenant link|restart|relink|logout|pause|resume`` and ``wafleet status``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import typer

from wafleet.cli.app import app, run, settings, tenant_app
from wafleet.cli.common import open_db
from wafleet.config import Settings
from wafleet.states import CommandKind, TenantStatus

ACTIONS = ("restart", "relink", "logout", "pause", "resume")


async def _request(cfg: Settings, slug: str, kind: str) -> None:
    from wafleet.db.base import utcnow
    from wafleet.db.models import ConnectionEvent
    from wafleet.db.repositories import TenantRepository, enqueue_command

    async with open_db(cfg) as db, db.session() as s, s.begin():
        tenant = await TenantRepository(s).require(slug)
        # Visible at once, like the portal action; the worker applies the rest.
        if kind == "pause":
            tenant.status = TenantStatus.PAUSED.value
        elif kind in ("resume", "restart", "relink"):
            tenant.status = TenantStatus.ACTIVE.value
            tenant.error_message = None
        s.add(
            ConnectionEvent(
                tenant_id=tenant.id, at=utcnow(), kind="action", detail=f"{kind} requested (cli)"
            )
        )
        await enqueue_command(s, tenant.id, kind, requested_by="cli")


def _make_action(kind: str) -> None:
    def action(slug: str = typer.Argument(..., help="Tenant slug.")) -> None:
        cfg = settings()
        run(lambda: _request(cfg, slug, kind))
        typer.echo(f"{kind} requested for {slug}; the worker applies it within a second")

    action.__doc__ = f"{kind.capitalize()} the tenant's WhatsApp session (same as the portal)."
    tenant_app.command(kind)(action)


for _kind in ACTIONS:
    _make_action(_kind)


async def _status_rows(cfg: Settings, slug: str | None) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from wafleet.db.models import Tenant, TenantLease, WhatsAppSession, WorkerProcess

    async with open_db(cfg) as db, db.session() as s:
        q = (
            select(Tenant, WhatsAppSession, WorkerProcess)
            .outerjoin(WhatsAppSession, WhatsAppSession.tenant_id == Tenant.id)
            .outerjoin(TenantLease, TenantLease.tenant_id == Tenant.id)
            .outerjoin(WorkerProcess, WorkerProcess.id == TenantLease.worker_id)
            .order_by(Tenant.slug)
        )
        if slug:
            q = q.where(Tenant.slug == slug)
        rows = (await s.execute(q)).all()
        workers = (await s.execute(select(WorkerProcess))).scalars().all()
    if slug and not rows:
        from wafleet.errors import NotFoundError

        raise NotFoundError(f"tenant {slug!r} does not exist")
    out: list[dict[str, Any]] = []
    for t, ws, wp in rows:
        out.append(_describe(t, ws, wp, cfg.reconnect_max_attempts))
    if not slug:
        out.append({"workers": [_worker(w) for w in workers]})
    return out


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _worker(w: Any) -> dict[str, Any]:
    age = (datetime.now(UTC) - w.last_heartbeat_at).total_seconds()
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "status": w.status,
        "last_heartbeat_at": _iso(w.last_heartbeat_at),
        "heartbeat_age_s": round(age, 1),
    }


def _describe(t: Any, ws: Any, wp: Any, max_attempts: int | None = None) -> dict[str, Any]:
    from wafleet.ops.explain import SessionFacts, explain

    facts = SessionFacts.from_row(ws) if ws is not None else None
    advice = explain(
        t.slug, t.status, facts, error_message=t.error_message, max_attempts=max_attempts
    ).text()
    return {
        "slug": t.slug,
        "status": t.status,
        "error_message": t.error_message,
        "session_state": ws.state if ws else None,
        "phone": ws.phone if ws else None,
        "last_seen_at": _iso(ws.last_seen_at) if ws else None,
        "connected_since": _iso(ws.connected_since) if ws else None,
        "reconnect": {
            "active": bool(ws and ws.reconnect_active),
            "attempt": ws.reconnect_attempt if ws else 0,
            "next_retry_at": _iso(ws.next_retry_at) if ws else None,
        },
        "last_disconnect": (
            {
                "cause": ws.last_disconnect_cause,
                "action": ws.last_disconnect_action,
                "at": _iso(ws.last_disconnect_at),
                "detail": ws.last_disconnect_detail,
            }
            if ws is not None and ws.last_disconnect_cause
            else None
        ),
        "advice": advice,
        "worker": _worker(wp) if wp is not None else None,
    }


@app.command()
def status(
    slug: str | None = typer.Argument(None, help="One tenant (default: the whole fleet)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Health indicators of one tenant, or the fleet with its workers."""
    cfg = settings()
    rows = run(lambda: _status_rows(cfg, slug))
    if json_out:
        typer.echo(json.dumps(rows if not slug else rows[0], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    tenants = [r for r in rows if "slug" in r]
    table = Table(
        "tenant", "status", "session", "phone", "last seen", "reconnect", "last cause", "worker"
    )
    for r in tenants:
        rc = r["reconnect"]
        ld = r["last_disconnect"]
        table.add_row(
            r["slug"],
            r["status"],
            r["session_state"] or "-",
            r["phone"] or "-",
            r["last_seen_at"] or "-",
            f"attempt {rc['attempt']}, next {rc['next_retry_at'] or '-'}" if rc["active"] else "-",
            f"{ld['cause']} → {ld['action']}" if ld else "-",
            (r["worker"] or {}).get("id", "-"),
        )
    console.print(table)
    for r in tenants:
        if r["advice"] and (r["status"] != "ACTIVE" or r["session_state"] != "CONNECTED"):
            console.print(f"[bold]{r['slug']}[/bold]: {r['advice']}", highlight=False)
    for r in rows:
        if "workers" in r:
            wt = Table("worker", "host", "pid", "status", "heartbeat age (s)")
            for w in r["workers"]:
                wt.add_row(
                    w["id"], w["host"], str(w["pid"]), w["status"], str(w["heartbeat_age_s"])
                )
            console.print(wt)


@tenant_app.command("link")
def tenant_link(
    slug: str = typer.Argument(...),
    timeout: float = typer.Option(300.0, help="Give up after this many seconds."),
) -> None:
    """Print the live QR code in the terminal until the account is linked."""
    import segno

    from wafleet.states import Cause, SessionState

    cfg = settings()

    async def _read() -> dict[str, Any]:
        from wafleet.db.repositories import TenantRepository

        async with open_db(cfg) as db, db.session() as s:
            t = await TenantRepository(s).require(slug)
            ws = t.session
            await s.refresh(t, ["session"])
            ws = t.session
            return {
                "state": ws.state if ws else None,
                "qr": ws.last_qr if ws else None,
                "phone": ws.phone if ws else None,
                "cause": ws.last_disconnect_cause if ws else None,
                "status": t.status,
                "error": t.error_message,
            }

    first = run(_read)
    if first["state"] == SessionState.CONNECTED.value:
        typer.echo(f"{slug} is already linked to {first['phone']}")
        return
    if (
        first["state"] == SessionState.LOGGED_OUT.value
        or first["cause"] == Cause.QR_TIMEOUT.value
        or (first["status"] == TenantStatus.ERROR.value)
        or (first["phone"] is None and first["state"] == SessionState.DISCONNECTED.value)
    ):
        run(lambda: _request(cfg, slug, CommandKind.RELINK.value))
    deadline = time.monotonic() + timeout
    shown: str | None = None
    typer.echo(f"waiting for {slug}'s QR code (Ctrl-C to stop)...")
    while time.monotonic() < deadline:
        cur = run(_read)
        if cur["state"] == SessionState.CONNECTED.value:
            typer.echo(f"linked: {slug} is CONNECTED as {cur['phone']}")
            return
        if cur["state"] == SessionState.QR_READY.value and cur["qr"] and cur["qr"] != shown:
            shown = cur["qr"]
            typer.echo("\nScan this QR code with WhatsApp (Linked devices → Link a device):")
            segno.make(cur["qr"], error="L").terminal(compact=True)
            typer.echo(f"raw: {cur['qr']}")
        if cur["status"] == TenantStatus.ERROR.value:
            typer.echo(f"error: {cur['error']}", err=True)
            raise typer.Exit(1)
        if (
            cur["cause"] == Cause.QR_TIMEOUT.value
            and cur["state"] == SessionState.DISCONNECTED.value
            and shown
        ):
            typer.echo("error: the QR code expired unscanned; run the command again", err=True)
            raise typer.Exit(1)
        time.sleep(0.5)
    typer.echo("error: timed out waiting for the link", err=True)
    raise typer.Exit(1)


@tenant_app.command("pair-phone")
def tenant_pair_phone(
    slug: str = typer.Argument(...),
    phone: str = typer.Option(..., "--phone", help="The account's number, e.g. +15550001."),
    timeout: float = typer.Option(30.0, help="Give up after this many seconds."),
) -> None:
    """Link by phone number instead of QR: prints the code to type on the phone."""
    import re

    from wafleet.errors import UsageError
    from wafleet.states import SessionState

    if not re.fullmatch(r"\+?[0-9]{6,20}", phone):
        raise UsageError(f"--phone: {phone!r} is not a phone number like +15550001")
    cfg = settings()

    async def _start() -> str:
        from wafleet.db.repositories import TenantRepository, enqueue_command

        async with open_db(cfg) as db, db.session() as s, s.begin():
            t = await TenantRepository(s).require(slug)
            await s.refresh(t, ["session"])
            if t.session is None or t.session.state != SessionState.QR_READY.value:
                state = t.session.state if t.session else "unknown"
                return state
            t.session.pair_code = None
            await enqueue_command(
                s, t.id, CommandKind.PAIR_PHONE.value, {"phone": phone}, requested_by="cli"
            )
            return SessionState.QR_READY.value

    async def _code() -> str | None:
        from wafleet.db.repositories import TenantRepository

        async with open_db(cfg) as db, db.session() as s:
            t = await TenantRepository(s).require(slug)
            await s.refresh(t, ["session"])
            return t.session.pair_code if t.session else None

    state = run(_start)
    if state != SessionState.QR_READY.value:
        typer.echo(
            f"error: {slug} is {state}, not waiting for a link; run `wafleet tenant link "
            f"{slug}` (or relink) first",
            err=True,
        )
        raise typer.Exit(1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = run(_code)
        if code:
            typer.echo(f"pairing code for {slug}: {code}")
            typer.echo("On the phone: WhatsApp → Linked devices → Link with phone number.")
            return
        time.sleep(0.3)
    typer.echo("error: no pairing code arrived in time (is a worker running?)", err=True)
    raise typer.Exit(1)
