"""``wafleet`` command line. See app.py; commands live in ``cmd_*.py`` modules."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click
import typer

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


def _click_errors() -> tuple[type[Exception], ...]:
    """Click's usage-error base classes: typer >= 0.2x raises those of its vendored copy of
    click (``typer._click``), older ones those of click itself; catch whichever exist."""
    bases: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:
        pass
    else:
        bases.append(VendoredClickException)
    return tuple(bases)


def _usage_line(err: Exception) -> str:
    """One line for a click usage error, with where to find help."""
    fmt = getattr(err, "format_message", None)
    msg = fmt() if callable(fmt) else str(err)
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None)
    hint = f" (see '{path} --help')" if path else ""
    return f"error: {' '.join(str(msg).split())}{hint}"


def main(argv: list[str] | None = None) -> None:
    """Entry point: WafleetError → one line on stderr and its exit code, never a trace."""
    _load_commands()
    click_errors = _click_errors()
    try:
        # Not standalone: our errors must reach the handlers below. `typer.Exit(code)` then
        # comes back as the return value.
        rv = app(args=argv, standalone_mode=False)
    except WafleetError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (click.exceptions.Exit, typer.Exit) as ex:
        sys.exit(ex.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except click_errors as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            show = getattr(err, "show", None)
            if callable(show):
                show()  # `wafleet` / `wafleet tenant` alone: the help text
        else:
            print(_usage_line(err), file=sys.stderr)
        sys.exit(int(getattr(err, "exit_code", 2)))
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)
