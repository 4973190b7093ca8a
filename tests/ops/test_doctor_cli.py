"""`wafleet doctor` as a real subprocess: exit codes and output formats."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.support.procs import WAFLEET, base_env, free_port

LINE = re.compile(r"^(PASS|WARN|FAIL) [a-z-]+: .+ — .+$")


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WAFLEET, "doctor", *args], env=env, capture_output=True, text=True, timeout=60
    )


def migrate(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [*WAFLEET, "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_broken_config_is_one_line_exit_2(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", WAFLEET_HEARTBEAT_INTERVAL="60")  # >= STALE_AFTER
    proc = doctor(env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("FAIL config: WAFLEET_STALE_AFTER")
    assert LINE.match(lines[0])

    as_json = doctor(env, "--json")
    assert as_json.returncode == 2
    [item] = json.loads(as_json.stdout)
    assert item["check"] == "config"
    assert item["status"] == "FAIL"


def test_unmigrated_database_fails_exit_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wafleet.db").touch()  # exists, but no schema
    env = base_env(
        data,
        WAFLEET_ENGINE="simulator",
        WAFLEET_SIMULATOR_URL=f"ws://127.0.0.1:{free_port()}/ws",  # nobody there
    )
    proc = doctor(env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    by_check = {line.split()[1].rstrip(":"): line for line in lines}
    assert by_check["config"].startswith("PASS")
    assert by_check["database"].startswith("PASS")
    assert by_check["migrations"].startswith("FAIL migrations: the database has no schema")
    assert "wafleet migrate" in by_check["migrations"]
    assert by_check["engine"].startswith("FAIL engine: simulator")
    assert by_check["workers"].startswith("WARN workers: not checked")

    items = json.loads(doctor(env, "--json").stdout)
    assert [i["check"] for i in items] == [line.split()[1].rstrip(":") for line in lines]
    assert {i["status"] for i in items} <= {"PASS", "WARN", "FAIL"}
    assert all(set(i) == {"check", "status", "detail", "fix"} for i in items)


def test_migrated_database_selected_checks_pass_exit_0(tmp_path: Path) -> None:
    """The HEALTHCHECK of deploy/Dockerfile: only the checks a container's health needs."""
    env = base_env(tmp_path / "data")
    migrate(env)
    proc = doctor(env, "--check", "config", "--check", "database", "--check", "migrations")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split()[:2] for line in proc.stdout.splitlines()] == [
        ["PASS", "config:"],
        ["PASS", "database:"],
        ["PASS", "migrations:"],
    ]
    # the full run on this machine: WhatsApp is unreachable, so exit 1 with a FAIL network
    full = doctor(env, "--timeout", "1")
    failed = [line for line in full.stdout.splitlines() if line.startswith("FAIL")]
    assert (full.returncode == 1) == bool(failed), full.stdout
    assert "network:" in full.stdout


def test_bad_options_exit_2(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data")
    for args in (("--check", "nonsense"), ("--timeout", "0")):
        proc = doctor(env, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
        assert proc.stderr.startswith("error: ")
