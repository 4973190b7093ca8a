"""The Typer application and the helpers every command module shares.

Command modules are ``wafleet/cli/cmd_*.py``; each registers its commands on the apps
below and is imported by ``wafleet.cli`` (so new areas add a module, not edits here).
Heavy imports (engines, servers) stay inside the command functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from wafleet.config import Settings, load_settings

T = TypeVar("T")

app = typer.Typer(
    name="wafleet",
    help="wafleet — multi-tenant WhatsApp bot platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(help="Manage portal users.", no_args_is_help=True)
tenant_app = typer.Typer(help="Manage tenants (one WhatsApp account each).", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(tenant_app, name="tenant")


def settings(**overrides: Any) -> Settings:
    """Load settings; a ConfigError propagates to `main`, which prints one line, exit 2."""
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def _main() -> T:
        return await coro_fn()

    return asyncio.run(_main())
