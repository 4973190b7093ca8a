"""``wafleet logs SLUG [-f] [--level LEVEL] [-n N] [--json]``: a tenant's own log file."""

from __future__ import annotations

import typer

from wafleet.cli.app import app, settings
from wafleet.errors import NotFoundError, UsageError


@app.command()
def logs(
    slug: str = typer.Argument(..., help="Tenant slug."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    level: str | None = typer.Option(
        None, "--level", help="Only lines at or above: debug, info, warning, error, critical."
    ),
    lines: int = typer.Option(50, "-n", "--lines", help="How many of the last lines."),
    json_out: bool = typer.Option(False, "--json", help="Print the raw JSON lines."),
    interval: float = typer.Option(0.5, "--interval", help="Seconds between checks with -f."),
) -> None:
    """The last lines of a tenant's log (<data dir>/logs/SLUG.log), optionally followed."""
    import os
    import sys
    import time

    from wafleet.logging import tenant_log_path
    from wafleet.ops.logtail import Follower, LogLine, log_files, normalize_level, tail

    min_level = normalize_level(level)
    if level is not None and min_level is None:
        raise UsageError(
            f"--level: unknown level {level!r} (debug, info, warning, error, critical)"
        )
    if not 0 <= lines <= 10_000:
        raise UsageError(f"--lines: must be between 0 and 10000, got {lines}")
    if not 0.05 <= interval <= 60:
        raise UsageError(f"--interval: must be between 0.05 and 60 seconds, got {interval:g}")
    cfg = settings()
    path = tenant_log_path(cfg.logs_dir, slug)
    if not log_files(path) and not follow:
        raise NotFoundError(
            f"no log file for tenant {slug!r} ({path}): wrong slug, or it has not logged yet"
        )

    def show(items: list[LogLine]) -> None:
        for item in items:
            sys.stdout.write((item.raw if json_out else item.text()) + "\n")
        sys.stdout.flush()

    follower = Follower(path, min_level=min_level) if follow else None
    end = follower.offset if follower is not None and path.exists() else None
    if lines:
        show(tail(path, lines, min_level=min_level, end=end))
    if follower is None:
        return
    try:
        while True:
            time.sleep(interval)
            show(follower.poll())
    except BrokenPipeError:  # `wafleet logs acme -f | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        follower.close()
