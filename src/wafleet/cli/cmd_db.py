"""``wafleet migrate``."""

from __future__ import annotations

import typer

from wafleet.cli.app import app, settings
from wafleet.errors import ConfigError, UsageError


@app.command()
def migrate(
    revision: str = typer.Option("head", help="Target revision (default: latest)."),
    downgrade: bool = typer.Option(False, "--downgrade", help="Downgrade to REVISION."),
) -> None:
    """Create or upgrade the database schema (Alembic)."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import DBAPIError, OperationalError

    from wafleet.cli.common import db_error_line
    from wafleet.db import migrate as m

    cfg = settings()
    target = "base" if downgrade and revision == "head" else revision
    try:
        if downgrade:
            m.downgrade(cfg.database_url, target)
        else:
            m.upgrade(cfg.database_url, target)
        current = m.current_revision(cfg.database_url)
    except CommandError as err:  # e.g. an unknown revision
        raise UsageError(f"--revision: {str(err).splitlines()[0]}") from None
    except (OperationalError, DBAPIError, OSError) as err:
        raise ConfigError(
            f"WAFLEET_DATABASE_URL: cannot migrate the database: {db_error_line(err)}"
        ) from None
    if downgrade:
        typer.echo(f"database downgraded to {current or 'base'}")
    else:
        typer.echo(f"database at revision {current}")
