"""Configuration: every invalid value is one line naming the variable, exit 2 — checked
through the real CLI in a subprocess — plus defaults, derived values and `.env` support."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import WAFLEET, base_env
from wafleet.config import Settings, load_settings, to_async_url
from wafleet.errors import ConfigError


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        WAFLEET + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], variable: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert variable in lines[0], lines[0]
    return lines[0]


INVALID = [
    ("WAFLEET_HEARTBEAT_INTERVAL", "-1", "greater than 0"),
    ("WAFLEET_HEARTBEAT_INTERVAL", "0", "greater than 0"),
    ("WAFLEET_HEARTBEAT_INTERVAL", "ten", "number"),
    ("WAFLEET_HEARTBEAT_INTERVAL", "inf", "finite"),
    ("WAFLEET_STALE_AFTER", "nan", "finite"),
    ("WAFLEET_PORTAL_KEY", "short", "32"),
    ("WAFLEET_ENGINE", "bogus", "neonize"),
    ("WAFLEET_DATABASE_URL", "mysql://x", "postgresql://"),
    ("WAFLEET_DATABASE_URL", "postgresql:///nohost", "host"),
    ("WAFLEET_DATABASE_URL", "postgresql://u@h:notaport/db", "port"),
    ("WAFLEET_DATABASE_URL", "postgresql://u@h:99999/db", "port"),
    ("WAFLEET_DATABASE_URL", "sqlite://relative.db", "sqlite:///"),
    ("WAFLEET_RECONNECT_JITTER", "2", "less than or equal to 1"),
    ("WAFLEET_RECONNECT_JITTER", "-0.1", "greater than or equal to 0"),
    ("WAFLEET_RECONNECT_MULTIPLIER", "0.5", "greater than or equal to 1"),
    ("WAFLEET_RECONNECT_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
    ("WAFLEET_RECONNECT_MAX_ATTEMPTS", "1.5", "integer"),
    ("WAFLEET_RECONNECT_MAX_DELAY", "0.5", "WAFLEET_RECONNECT_INITIAL_DELAY"),
    ("WAFLEET_LOG_LEVEL", "LOUD", "INFO"),
    ("WAFLEET_LOG_FORMAT", "xml", "json"),
    ("WAFLEET_CHAT_QUEUE_MAX", "abc", "integer"),
    ("WAFLEET_WORKER_CAPACITY", "-5", "greater than or equal to 1"),
    ("WAFLEET_CONNECT_CONCURRENCY", "0", "greater than or equal to 1"),
    ("WAFLEET_WEBHOOK_ALLOW_PRIVATE", "maybe", "boolean"),
    ("WAFLEET_WEBHOOK_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
    ("WAFLEET_WEBHOOK_TIMEOUT", "-3", "greater than 0"),
    ("WAFLEET_KEEPALIVE_INTERVAL", "0", "greater than 0"),
    ("WAFLEET_KEEPALIVE_TIMEOUT", "x", "number"),
    ("WAFLEET_CONTROL_PLANE_URL", "ftp://x", "http"),
    ("WAFLEET_SIMULATOR_URL", "http://127.0.0.1:8300/ws", "ws://"),
    ("WAFLEET_ALERT_WEBHOOK_URL", "not a url", "http"),
    # a stale/lease window shorter than the heartbeat would declare healthy workers dead
    ("WAFLEET_STALE_AFTER", "5", "WAFLEET_HEARTBEAT_INTERVAL"),
    ("WAFLEET_LEASE_TTL", "10", "WAFLEET_HEARTBEAT_INTERVAL"),
]


# Through the real CLI (a process each, ~1 s): the cases the contract names, one per kind
# of check. The full table is checked in-process below (same message, same code path).
VIA_CLI = {
    ("WAFLEET_HEARTBEAT_INTERVAL", "-1"),
    ("WAFLEET_HEARTBEAT_INTERVAL", "ten"),
    ("WAFLEET_PORTAL_KEY", "short"),
    ("WAFLEET_ENGINE", "bogus"),
    ("WAFLEET_DATABASE_URL", "mysql://x"),
    ("WAFLEET_DATABASE_URL", "postgresql://u@h:notaport/db"),
    ("WAFLEET_RECONNECT_JITTER", "2"),
    ("WAFLEET_RECONNECT_MAX_DELAY", "0.5"),
    ("WAFLEET_LOG_LEVEL", "LOUD"),
    ("WAFLEET_CHAT_QUEUE_MAX", "abc"),
    ("WAFLEET_WEBHOOK_ALLOW_PRIVATE", "maybe"),
    ("WAFLEET_STALE_AFTER", "5"),
}
CLI_CASES = [case for case in INVALID if case[:2] in VIA_CLI]


@pytest.mark.parametrize(
    ("var", "value", "hint"), CLI_CASES, ids=[f"{v}={x}" for v, x, _ in CLI_CASES]
)
def test_invalid_variable_is_one_line_exit_2(
    tmp_path: Path, var: str, value: str, hint: str
) -> None:
    env = base_env(tmp_path / "data", **{var: value})
    line = assert_one_line_error(run_cli(["tenant", "list"], env, tmp_path), var)
    assert line.startswith("error: ")
    assert hint in line


@pytest.mark.parametrize(("var", "value", "hint"), INVALID, ids=[f"{v}={x}" for v, x, _ in INVALID])
def test_invalid_variable_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str, value: str, hint: str
) -> None:
    for key in list(os.environ):
        if key.startswith("WAFLEET_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{var}: ")
    assert "\n" not in message
    assert hint in message


def test_invalid_value_in_dotenv_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nWAFLEET_ENGINE=bogus\nOTHER_TOOL=ignored\n")
    env = base_env(tmp_path / "data")
    line = assert_one_line_error(run_cli(["tenant", "list"], env, tmp_path), "WAFLEET_ENGINE")
    assert "neonize" in line


def test_dotenv_file_in_cwd_is_read(tmp_path: Path) -> None:
    db = tmp_path / "from-dotenv.db"
    (tmp_path / ".env").write_text(f"WAFLEET_DATABASE_URL=sqlite:///{db}\n")
    env = base_env(tmp_path / "data")
    proc = run_cli(["migrate"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert db.exists()
    assert not (tmp_path / "data" / "wafleet.db").exists()


def test_environment_overrides_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WAFLEET_ENGINE=bogus\n")
    env = base_env(tmp_path / "data", WAFLEET_ENGINE="simulator")
    proc = run_cli(["migrate"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr


# -- in-process: defaults and derived values ------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No WAFLEET_* from the caller's shell and no .env from the repository."""
    for key in list(os.environ):
        if key.startswith("WAFLEET_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_match_the_contract(clean_env: Path) -> None:
    s = load_settings()
    assert s.data_dir == Path("./wafleet-data")
    assert s.database_url == f"sqlite:///{Path('./wafleet-data') / 'wafleet.db'}"
    assert s.portal_key is None
    assert s.control_plane_url == "http://127.0.0.1:8100"
    assert s.engine == "neonize"
    assert s.simulator_url == "ws://127.0.0.1:8300/ws"
    assert (s.heartbeat_interval, s.stale_after, s.lease_ttl) == (10, 30, 20)
    assert (
        s.reconnect_initial_delay,
        s.reconnect_max_delay,
        s.reconnect_max_attempts,
        s.reconnect_multiplier,
        s.reconnect_jitter,
    ) == (1, 120, 20, 2.0, 0.2)
    assert (s.keepalive_interval, s.keepalive_timeout) == (15, 10)
    assert (s.chat_queue_max, s.worker_capacity, s.connect_concurrency) == (100, 5000, 50)
    assert s.webhook_allow_private is False
    assert (s.webhook_max_attempts, s.webhook_timeout) == (8, 10)
    assert s.alert_webhook_url is None
    assert s.log_level == "INFO"
    assert not s.is_postgres


def test_values_are_normalised(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAFLEET_LOG_LEVEL", "debug")
    monkeypatch.setenv("WAFLEET_ENGINE", "SIMULATOR")
    monkeypatch.setenv("WAFLEET_CONTROL_PLANE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("WAFLEET_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("WAFLEET_PORTAL_KEY", "")  # empty means unset, not "too short"
    s = load_settings()
    assert s.log_level == "DEBUG"
    assert s.engine == "simulator"
    assert s.control_plane_url == "http://127.0.0.1:9"
    assert s.webhook_allow_private is True
    assert s.portal_key is None


def test_database_url_drivers(clean_env: Path) -> None:
    pg = load_settings(database_url="postgresql://u:p%25w@db.example:5433/wf")
    assert pg.is_postgres
    assert pg.async_database_url == "postgresql+asyncpg://u:p%25w@db.example:5433/wf"
    assert to_async_url("postgres://h/db") == "postgresql+asyncpg://h/db"
    assert to_async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert load_settings(data_dir="/srv/wf").database_url == "sqlite:////srv/wf/wafleet.db"


def test_load_settings_raises_config_error_naming_variable(clean_env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(reconnect_jitter=5)
    assert str(info.value).startswith("WAFLEET_RECONNECT_JITTER: ")
    assert info.value.exit_code == 2


def test_portal_key_generated_once_with_mode_0600(clean_env: Path) -> None:
    s = Settings(data_dir=clean_env / "d")
    with pytest.raises(ConfigError, match="WAFLEET_PORTAL_KEY"):
        s.resolve_portal_key()
    key = s.resolve_portal_key(generate=True)
    assert len(key) >= 32
    path = clean_env / "d" / "portal.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert Settings(data_dir=clean_env / "d").resolve_portal_key() == key


def test_short_key_in_key_file_is_refused(clean_env: Path) -> None:
    (clean_env / "d").mkdir()
    (clean_env / "d" / "portal.key").write_text("tooshort\n")
    with pytest.raises(ConfigError, match="WAFLEET_PORTAL_KEY"):
        Settings(data_dir=clean_env / "d").resolve_portal_key()
