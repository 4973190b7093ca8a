"""Deployment files, checked without Docker or systemd running anything: the compose file
parses and speaks the contract's variables, the Dockerfile's and units' commands are real
``wafleet`` subcommands, and the HEALTHCHECK command has the right exit codes when run
as a plain process."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.procs import WAFLEET, base_env
from wafleet.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONTRACT = Path("/work/shared/ARCHITECTURE.md")
UNITS = ["wafleet-control-plane.service", "wafleet-portal.service", "wafleet-worker@.service"]


def setting_names() -> set[str]:
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def contract_names() -> set[str]:
    """The variables of ARCHITECTURE.md's Environment table (``_MAX_DELAY`` shorthands
    expanded), when the contract is on this machine."""
    text = CONTRACT.read_text()
    section = text.split("### Environment", 1)[1].split("###", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        cells = re.findall(r"`(WAFLEET_[A-Z_]+|_[A-Z_]+)`", row.split("|")[1] if "|" in row else "")
        base = ""
        for c in cells:
            if c.startswith("WAFLEET_"):
                names.add(c)
                base = "_".join(c.split("_")[:2])  # WAFLEET_RECONNECT + _MAX_DELAY
            elif base:
                names.add(base + c)
    return names


def subcommands() -> dict[str, Any]:
    """Every `wafleet` command path → its click command (groups included)."""
    import typer.main

    from wafleet.cli import _load_commands
    from wafleet.cli.app import app

    _load_commands()
    root = typer.main.get_command(app)
    out: dict[str, Any] = {}

    def walk(cmd: Any, prefix: tuple[str, ...]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            out[" ".join((*prefix, name))] = sub
            walk(sub, (*prefix, name))

    walk(root, ())
    return out


def assert_wafleet_command(argv: list[str]) -> None:
    """``argv`` (after ``wafleet``) names a real subcommand and only options it has."""
    cmds = subcommands()
    name = argv[0]
    assert name in cmds, f"`wafleet {name}` does not exist"
    cmd = cmds[name]
    opts = {
        o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])
    }
    for arg in argv[1:]:
        if arg.startswith("-"):
            assert arg in opts, f"`wafleet {name}` has no option {arg}"


# ------------------------------------------------------------------ compose
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "control-plane", "portal", "worker-1", "worker-2"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["portal"]["ports"] == ["8000:8000"]
    assert "ports" not in services["control-plane"]  # internal only
    for name in ("control-plane", "portal", "worker-1", "worker-2"):
        svc = services[name]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert svc["restart"] == "unless-stopped"
        assert_wafleet_command(svc["command"])
        hc = svc.get("healthcheck")
        if hc:
            assert hc["test"][:3] == ["CMD", "wafleet", "doctor"]
            assert_wafleet_command(hc["test"][2:])
    assert services["control-plane"]["command"][0] == "control-plane"
    assert services["portal"]["command"][0] == "portal"
    assert services["worker-1"]["command"] == services["worker-2"]["command"] == ["worker"]


def test_compose_env_names_are_the_contract(compose: dict[str, Any]) -> None:
    known = setting_names()
    if CONTRACT.exists():
        assert len(contract_names()) >= 25  # the parser reads the table right
        assert contract_names() <= known
        known = contract_names()
    for name, svc in compose["services"].items():
        if name == "postgres":
            continue
        env = svc["environment"]
        assert set(env) <= known, set(env) - known
        for var in ("WAFLEET_DATABASE_URL", "WAFLEET_PORTAL_KEY", "WAFLEET_CONTROL_PLANE_URL"):
            assert var in env
        assert env["WAFLEET_DATABASE_URL"].startswith("postgresql://wafleet:")
        assert "@postgres:5432/wafleet" in env["WAFLEET_DATABASE_URL"]
        assert env["WAFLEET_CONTROL_PLANE_URL"] == "http://control-plane:8100"


def test_compose_env_values_are_valid_settings(compose: dict[str, Any], tmp_path: Path) -> None:
    """With the secrets filled in, the services' environment passes wafleet's validation."""
    env = dict(compose["services"]["worker-1"]["environment"])
    filled = {
        k: re.sub(r"\$\{([A-Z_]+)(:[-?][^}]*)?\}", lambda m: _example(m.group(1)), str(v))
        for k, v in env.items()
    }
    filled["WAFLEET_DATA_DIR"] = str(tmp_path)
    cfg = Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in filled.items()})
    assert cfg.is_postgres
    assert cfg.alert_webhook_url is None  # empty means off


def _example(var: str) -> str:
    return {
        "POSTGRES_PASSWORD": "pw",
        "WAFLEET_PORTAL_KEY": "k" * 40,
        "WAFLEET_ENGINE": "neonize",
        "WAFLEET_LOG_LEVEL": "INFO",
    }.get(var, "")


def test_env_example_names_are_the_contract() -> None:
    lines = (DEPLOY / "wafleet.env.example").read_text().splitlines()
    names = {ln.split("=", 1)[0] for ln in lines if ln and not ln.startswith("#")}
    assert {n for n in names if n.startswith(ENV_PREFIX)} <= setting_names()


# ------------------------------------------------------------------ Dockerfile
def dockerfile() -> dict[str, list[str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def test_dockerfile_shape() -> None:
    df = dockerfile()
    assert df["FROM"] == ["python:3.11-slim"]
    assert json.loads(df["ENTRYPOINT"][0]) == ["wafleet"]
    assert df["USER"] == ["wafleet"]  # non-root
    assert any("pip install -c constraints.txt ." in r for r in df["RUN"])
    assert any("constraints.txt" in c for c in df["COPY"])
    cmd = json.loads(df["CMD"][0])
    assert_wafleet_command(cmd)
    hc = df["HEALTHCHECK"][0]
    assert hc.startswith("--interval=")
    argv = json.loads(hc.split("CMD", 1)[1])
    assert argv[:2] == ["wafleet", "doctor"]
    assert_wafleet_command(argv[1:])


def test_healthcheck_command_exit_codes(tmp_path: Path) -> None:
    """The HEALTHCHECK, run as the process Docker would run: healthy (0) on a migrated
    database, unhealthy (1) on an unmigrated one, 2 on a broken configuration."""
    argv = json.loads(dockerfile()["HEALTHCHECK"][0].split("CMD", 1)[1])
    command = WAFLEET + argv[1:]
    env = base_env(tmp_path / "data")

    def run(e: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=e, capture_output=True, text=True, timeout=60)

    unmigrated = run(env)
    assert unmigrated.returncode == 1, unmigrated.stdout
    assert "FAIL database" in unmigrated.stdout
    subprocess.run([*WAFLEET, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    healthy = run(env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.count("PASS") == 4
    broken = run({**env, "WAFLEET_ENGINE": "chrome"})
    assert broken.returncode == 2


# ------------------------------------------------------------------ systemd
def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    cp.read_string((DEPLOY / "systemd" / name).read_text())
    return cp


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units(name: str) -> None:
    u = unit(name)
    svc = u["Service"]
    assert svc["User"] == "wafleet"
    assert svc["EnvironmentFile"] == "/etc/wafleet/wafleet.env"
    assert svc["Restart"] in ("on-failure", "always")
    assert svc["RestartPreventExitStatus"] == "2"  # config errors are not retried
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "ReadWritePaths": "/var/lib/wafleet",
    }.items():
        assert svc[key] == value, key
    assert u["Install"]["WantedBy"] == "multi-user.target"
    for key in ("ExecStart", "ExecStartPre"):
        if key in svc:
            exe, *argv = shlex.split(svc[key])
            assert exe == "/opt/wafleet/venv/bin/wafleet"
            assert_wafleet_command(argv)
    expected = {
        "wafleet-control-plane.service": "control-plane",
        "wafleet-portal.service": "portal",
    }
    assert shlex.split(svc["ExecStart"])[1] == expected.get(name, "worker")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    """systemd's own parser, with the executable pointed at this venv's `wafleet`."""
    venv_wafleet = Path(WAFLEET[0]).parent / "wafleet"
    text = (DEPLOY / "systemd" / name).read_text()
    text = text.replace("/opt/wafleet/venv/bin/wafleet", str(venv_wafleet))
    text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")  # not installed here
    target = tmp_path / name.replace("@.", "@1.")
    target.write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(target)], capture_output=True, text=True, timeout=60
    )
    problems = [
        ln
        for ln in (proc.stdout + proc.stderr).splitlines()
        if target.name in ln or "Unknown" in ln
    ]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert problems == []
