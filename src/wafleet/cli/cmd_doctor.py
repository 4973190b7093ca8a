"""``wafleet doctor [--json] [--check NAME ...]``.

One line per check, ``PASS|WARN|FAIL <check>: <detail> — <fix>``; exit 0 unless a check
FAILs (1). An invalid configuration stops everything else: its FAIL line goes to stderr
and the exit code is 2, like every command given a bad configuration.
"""

from __future__ import annotations

import typer

from wafleet.cli.app import app
from wafleet.errors import UsageError


@app.command()
def doctor(
    json_out: bool = typer.Option(
        False, "--json", help='JSON list of {"check","status","detail","fix"}.'
    ),
    check: list[str] = typer.Option(
        [],
        "--check",
        help="Run only this check (repeatable): config, portal-key, data-dir, permissions, "
        "disk, clock, engine, network, database, migrations, workers, tenants.",
    ),
    timeout: float = typer.Option(2.0, "--timeout", help="Seconds per network probe."),
) -> None:
    """Check configuration, database, data dir, engine library, reachability and clock."""
    import asyncio

    from wafleet.config import load_settings
    from wafleet.ops.doctor import (
        CHECK_NAMES,
        DoctorOptions,
        check_config,
        exit_code,
        render_json,
        render_text,
        run_doctor,
    )

    unknown = [c for c in check if c not in CHECK_NAMES]
    if unknown:
        raise UsageError(f"--check: unknown check {unknown[0]!r} (one of {', '.join(CHECK_NAMES)})")
    if not 0 < timeout <= 60:
        raise UsageError(f"--timeout: must be > 0 and <= 60, got {timeout:g}")
    config, cfg = check_config(load_settings)
    if cfg is None:
        if json_out:
            typer.echo(render_json([config]))
        else:
            typer.echo(config.line(), err=True)
        raise typer.Exit(2)
    results = [config] if (not check or "config" in check) else []
    results += asyncio.run(run_doctor(cfg, DoctorOptions(only=check, probe_timeout=timeout)))
    typer.echo(render_json(results) if json_out else render_text(results))
    raise typer.Exit(exit_code(results))
