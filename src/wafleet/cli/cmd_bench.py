"""``wafleet bench SCENARIO|all [--json PATH]`` — the benchmark suite (wafleet.bench)."""

from __future__ import annotations

from pathlib import Path

import typer

from wafleet.cli.app import app


@app.command()
def bench(
    scenario: str = typer.Argument(
        ..., help="pipeline, idle, storm, failover, api, neonize, or all."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the figures as JSON: {scenario: {figure: value}}."
    ),
    sets: list[str] = typer.Option(
        [],
        "--set",
        help="Size or setting of a scenario, SCENARIO.OPTION=VALUE (repeatable), e.g. "
        "--set pipeline.messages=5000; also WAFLEET_BENCH_<SCENARIO>_<OPTION>.",
    ),
    keep: Path | None = typer.Option(
        None, "--keep", help="Keep each scenario's data and process logs under this directory."
    ),
) -> None:
    """Run benchmark scenarios against real processes; print figures beside baselines."""
    from rich.console import Console

    from wafleet.bench import report, runner
    from wafleet.bench.common import BenchError, Result, machine
    from wafleet.bench.options import parse_sets
    from wafleet.errors import UsageError

    chosen = runner.resolve(scenario)
    if json_path is not None and not json_path.parent.is_dir():
        raise UsageError(f"--json: directory {json_path.parent} does not exist")
    prepared = runner.prepare(chosen, parse_sets(sets, set(runner.SCENARIOS)))
    import sys

    # a table read from a file or a pipe would otherwise be squeezed into 80 columns
    console = Console() if sys.stdout.isatty() else Console(width=140)
    results: list[Result] = []
    failed: list[str] = []
    for sc, options in prepared:
        console.print(f"[bold]{sc.name}[/]: {sc.summary} …")
        try:
            results.append(runner.run_one(sc, options, keep))
        except BenchError as err:
            # the first line says what failed; the rest is the processes' output tails
            typer.echo(f"error: {sc.name}: {err}", err=True)
            failed.append(sc.name)
    info = machine()
    if results:
        report.print_results(results, info, console)
    if json_path is not None:
        report.write_json(json_path, results, info)
    if failed:
        raise typer.Exit(1)
