"""``wafleet user create``."""

from __future__ import annotations

import typer

from wafleet.cli.app import run, settings, user_app
from wafleet.cli.common import open_db


@user_app.command("create")
def user_create(
    email: str = typer.Argument(..., help="The user's email (login)."),
    password: str = typer.Option(..., "--password", help="At least 8 characters."),
    admin: bool = typer.Option(False, "--admin", help="Operator with access to /admin."),
) -> None:
    """Create a portal user (password hashed with argon2)."""
    from wafleet.db.repositories import UserRepository

    cfg = settings()

    async def _go() -> str:
        async with open_db(cfg) as db, db.session() as s, s.begin():
            user = await UserRepository(s).create(email, password, is_admin=admin)
            return user.email

    created = run(_go)
    typer.echo(f"user {created} created{' (admin)' if admin else ''}")
