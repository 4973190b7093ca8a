"""The first-run CLI flow, as real subprocesses, on SQLite and on a throwaway PostgreSQL:
migrate → user create → tenant create → tenant list (table and --json), and its bad inputs
(each one line on stderr, exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pg import PgServer
from tests.support.procs import WAFLEET, base_env


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            WAFLEET + list(args),
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> str:
        proc = self(*args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def fails(self, *args: str) -> str:
        """Run a command that must fail as a usage/config error; return its one line."""
        proc = self(*args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: ")
        return lines[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    env = base_env(tmp_path / "data")
    if request.param == "postgres":
        env["WAFLEET_DATABASE_URL"] = request.getfixturevalue("pg_url")
    return Cli(env, tmp_path)


def test_first_run_flow(cli: Cli) -> None:
    assert "database at revision" in cli.ok("migrate")
    assert "database at revision" in cli.ok("migrate")  # idempotent
    assert cli.ok("user", "create", "A@Example.com", "--password", "correct-horse").strip() == (
        "user a@example.com created"
    )
    cli.ok("user", "create", "root@example.com", "--password", "correct-horse", "--admin")
    assert "tenant acme created" in cli.ok(
        "tenant", "create", "acme", "--name", "Acme", "--owner", "a@example.com"
    )
    cli.ok("tenant", "create", "beta-2", "--name", "Beta Two", "--owner", "A@EXAMPLE.COM")

    table = cli.ok("tenant", "list")
    for word in ("acme", "Beta Two", "DISCONNECTED", "ACTIVE"):
        assert word in table

    items = json.loads(cli.ok("tenant", "list", "--json"))
    assert [i["slug"] for i in items] == ["acme", "beta-2"]
    assert items[0] == {
        "slug": "acme",
        "name": "Acme",
        "status": "ACTIVE",
        "session_state": "DISCONNECTED",
        "phone": None,
        "last_seen_at": None,
        "worker_id": None,
    }


def test_conflicts_are_one_line_exit_2(cli: Cli) -> None:
    cli.ok("migrate")
    cli.ok("user", "create", "a@example.com", "--password", "correct-horse")
    cli.ok("tenant", "create", "acme", "--name", "Acme", "--owner", "a@example.com")

    assert "already exists" in cli.fails(
        "user", "create", "A@example.com", "--password", "correct-horse"
    )
    assert "already exists" in cli.fails(
        "tenant", "create", "acme", "--name", "Again", "--owner", "a@example.com"
    )
    assert "--owner" in cli.fails(
        "tenant", "create", "other", "--name", "X", "--owner", "nobody@example.com"
    )
    # nothing of the above was half-written
    items = json.loads(cli.ok("tenant", "list", "--json"))
    assert [i["slug"] for i in items] == ["acme"]


def test_invalid_values_are_one_line_exit_2(tmp_path: Path) -> None:
    # validation does not depend on the backend: SQLite only (more cases in tests/db)
    cli = Cli(base_env(tmp_path / "data"), tmp_path)
    cli.ok("migrate")
    cli.ok("user", "create", "a@example.com", "--password", "correct-horse")
    assert "password" in cli.fails("user", "create", "b@example.com", "--password", "short")
    assert "email" in cli.fails("user", "create", "not-an-email", "--password", "correct-horse")
    assert "slug" in cli.fails(
        "tenant", "create", "Bad_Slug", "--name", "X", "--owner", "a@example.com"
    )
    assert "name" in cli.fails(
        "tenant", "create", "blank", "--name", " ", "--owner", "a@example.com"
    )
    assert "--revision" in cli.fails("migrate", "--revision", "nonexistent")


def test_unmigrated_database_is_refused(cli: Cli) -> None:
    for args in (
        ("tenant", "list"),
        ("user", "create", "a@example.com", "--password", "correct-horse"),
        ("tenant", "create", "acme", "--name", "Acme", "--owner", "a@example.com"),
    ):
        line = cli.fails(*args)
        assert "WAFLEET_DATABASE_URL" in line
        assert "wafleet migrate" in line


def test_downgrade_then_upgrade(tmp_path: Path) -> None:
    # the CLI path only; reversibility on both backends: tests/db/test_migrations.py
    cli = Cli(base_env(tmp_path / "data"), tmp_path)
    cli.ok("migrate")
    assert "downgraded to base" in cli.ok("migrate", "--downgrade")
    assert "wafleet migrate" in cli.fails("tenant", "list")
    cli.ok("migrate")
    assert json.loads(cli.ok("tenant", "list", "--json")) == []


def test_unusable_database_is_one_line(tmp_path: Path) -> None:
    # a SQLite file whose directory cannot be created, a PostgreSQL nobody listens on
    for url in ("sqlite:////proc/no-such-dir/x.db", "postgresql://u@127.0.0.1:1/db"):
        cli = Cli(base_env(tmp_path / "data", WAFLEET_DATABASE_URL=url), tmp_path)
        assert "WAFLEET_DATABASE_URL" in cli.fails("migrate")
        assert "WAFLEET_DATABASE_URL" in cli.fails("tenant", "list")


def test_missing_postgres_database_is_not_called_unmigrated(
    pg_server: PgServer, tmp_path: Path
) -> None:
    env = base_env(tmp_path / "data", WAFLEET_DATABASE_URL=pg_server.url("no_such_db"))
    line = Cli(env, tmp_path).fails("tenant", "list")
    assert "no_such_db" in line
    assert "migrate" not in line
