"""``wafleet tenant create|list|configure``."""

from __future__ import annotations

from pathlib import Path

import typer

from wafleet.cli.app import run, settings, tenant_app
from wafleet.cli.common import open_db
from wafleet.errors import UsageError


@tenant_app.command("create")
def tenant_create(
    slug: str = typer.Argument(..., help="Short id: lowercase letters, digits, '-'."),
    name: str = typer.Option(..., "--name", help="Display name."),
    owner: str = typer.Option(..., "--owner", help="Email of an existing user."),
) -> None:
    """Create a tenant owned by an existing user."""
    from wafleet.db.repositories import TenantRepository, UserRepository

    cfg = settings()

    async def _go() -> None:
        async with open_db(cfg) as db, db.session() as s, s.begin():
            user = await UserRepository(s).get_by_email(owner)
            if user is None:
                raise UsageError(f"--owner: no user {owner!r} (create it: wafleet user create)")
            await TenantRepository(s).create(slug, name, user)

    run(_go)
    typer.echo(f"tenant {slug} created")


@tenant_app.command("list")
def tenant_list(
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Tenants with status, session state, last seen and worker."""
    import json

    from rich.console import Console
    from rich.table import Table

    from wafleet.db.repositories import TenantRepository

    cfg = settings()

    async def _go() -> list[dict[str, str | None]]:
        async with open_db(cfg) as db, db.session() as s:
            rows = await TenantRepository(s).list_overview()
            return [
                {
                    "slug": t.slug,
                    "name": t.name,
                    "status": t.status,
                    "session_state": ws.state if ws else None,
                    "phone": ws.phone if ws else None,
                    "last_seen_at": ws.last_seen_at.isoformat() if ws and ws.last_seen_at else None,
                    "worker_id": ws.worker_id if ws else None,
                }
                for t, ws in rows
            ]

    items = run(_go)
    if json_out:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("slug", "name", "status", "session", "phone", "last seen", "worker")
    for it in items:
        table.add_row(
            it["slug"],
            it["name"],
            it["status"],
            it["session_state"] or "-",
            it["phone"] or "-",
            it["last_seen_at"] or "-",
            it["worker_id"] or "-",
        )
    Console(width=160).print(table)


@tenant_app.command("configure")
def tenant_configure(
    slug: str = typer.Argument(...),
    rules: Path = typer.Option(..., "--rules", help="Rules JSON file (see README)."),
) -> None:
    """Set the tenant's bot rules and webhook from a JSON file (validated)."""
    from wafleet.db.repositories import TenantRepository, enqueue_command
    from wafleet.states import CommandKind
    from wafleet.worker.rules import RulesError, load_bot_config_text

    cfg = settings()
    try:
        text = rules.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--rules: cannot read {rules}: {err.__class__.__name__}") from None
    try:
        bot = load_bot_config_text(text, allow_private_webhook=cfg.webhook_allow_private)
    except RulesError as err:
        raise UsageError(f"{rules}: {err}") from None

    async def _go() -> None:
        async with open_db(cfg) as db, db.session() as s, s.begin():
            repo = TenantRepository(s)
            tenant = await repo.require(slug)
            await repo.set_config(tenant, bot.model_dump(mode="json"))
            await enqueue_command(s, tenant.id, CommandKind.CONFIG.value, requested_by="cli")

    run(_go)
    typer.echo(f"tenant {slug}: {len(bot.rules)} rules{', webhook' if bot.webhook else ''} saved")
