"""Results on stdout (a rich table per run) and as JSON (scenario → figures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from wafleet.bench.common import Result


def table(results: list[Result], machine: dict[str, Any]) -> Table:
    t = Table(
        title=(
            f"wafleet bench — {machine['nproc']} cores, {machine['ram_gb']} GB, "
            f"Python {machine['python']}, load {machine['loadavg']}"
        ),
        show_lines=False,
    )
    for col in ("scenario", "figure", "measured", "target", "baseline", ""):
        t.add_column(col)
    for res in results:
        for i, row in enumerate(res.rows):
            verdict = "" if row.ok is None else ("[green]ok[/]" if row.ok else "[red]MISS[/]")
            t.add_row(
                res.scenario if i == 0 else "",
                row.figure,
                row.measured,
                row.target,
                row.baseline,
                verdict,
            )
        t.add_section()
    return t


def print_results(results: list[Result], machine: dict[str, Any], console: Console) -> None:
    console.print(table(results, machine))
    for res in results:
        for note in res.notes:
            console.print(f"[dim]{res.scenario}:[/] {note}")


def write_json(path: Path, results: list[Result], machine: dict[str, Any]) -> None:
    doc: dict[str, Any] = {r.scenario: r.figures for r in results}
    doc["_machine"] = machine
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
