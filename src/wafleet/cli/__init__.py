"""``wafleet`` command line. See app.py; commands live in ``cmd_*.py`` modules."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from wafleet.cli.app import app
from wafleet.errors import WafleetError

_loaded = False


def _load_commands() -> None:
    global _loaded
    if _loaded:
        return
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    _loaded = True


def main(argv: list[str] | None = None) -> None:
    """Entry point: WafleetError → one line on stderr and its exit code, never a trace."""
    _load_commands()
    try:
        app(args=argv, standalone_mode=False)
    except WafleetError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as ex:
        sys.exit(ex.exit_code)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
