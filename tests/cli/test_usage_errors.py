"""Command-line usage errors: one line on stderr, exit 2, never a traceback; `typer.Exit`
codes reach the shell."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import typer

import wafleet.cli
from tests.support.procs import WAFLEET, base_env


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["no-such-command"], ["No such command"]),
        (["tenant", "create"], ["Missing", "slug", "tenant create --help"]),
        (["tenant", "create", "-lead", "--name", "x", "--owner", "y"], ["No such option"]),
        (["tenant", "list", "--bogus"], ["--bogus"]),
        (["user", "create", "a@example.com"], ["--password"]),
    ],
)
def test_usage_error_is_one_line_exit_2(tmp_path: Path, args: list[str], words: list[str]) -> None:
    proc = subprocess.run(
        WAFLEET + args, env=base_env(tmp_path), cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]


def test_bare_group_prints_help(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*WAFLEET, "tenant"], env=base_env(tmp_path), cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "create" in proc.stderr + proc.stdout


def _run_main(monkeypatch: pytest.MonkeyPatch, app: typer.Typer, argv: list[str]) -> int:
    monkeypatch.setattr(wafleet.cli, "app", app)
    with pytest.raises(SystemExit) as info:
        wafleet.cli.main(argv)
    code = info.value.code
    assert isinstance(code, int)
    return code


def test_typer_exit_code_is_the_process_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer()

    @app.command()
    def check(code: int) -> None:
        raise typer.Exit(code)

    @app.command()
    def fine() -> None:
        pass

    assert _run_main(monkeypatch, app, ["check", "1"]) == 1
    assert _run_main(monkeypatch, app, ["check", "0"]) == 0
    assert _run_main(monkeypatch, app, ["fine"]) == 0
