"""``wafleet migrate``."""

from __future__ import annotations

import typer

from wafleet.cli.app import app, settings


@app.command()
def migrate(
    revision: str = typer.Option("head", help="Target revision (default: latest)."),
    downgrade: bool = typer.Option(False, "--downgrade", help="Downgrade to REVISION."),
) -> None:
    """Create or upgrade the database schema (Alembic)."""
    from wafleet.db import migrate as m

    cfg = settings()
    if downgrade:
        m.downgrade(cfg.database_url, "base" if revision == "head" else revision)
        typer.echo(f"database downgraded to {revision if revision != 'head' else 'base'}")
    else:
        m.upgrade(cfg.database_url, revision)
        typer.echo(f"database at revision {m.current_revision(cfg.database_url)}")
