"""A throwaway PostgreSQL cluster for the failover scenario: ``initdb``/``pg_ctl`` from the
machine's PostgreSQL, a temp data dir, loopback only, ``fsync=off``; run as the
``postgres`` system user when we are root (PostgreSQL refuses root). The tests' fixture
(``tests/support/pg.py``) does more (templates, outages) on the same binaries lookup."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from wafleet.bench.common import BenchError
from wafleet.bench.procs import free_port

SUPERUSER = "postgres"


def pg_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres — ``WAFLEET_PG_BINDIR``, then the
    newest ``/usr/lib/postgresql/*/bin``, then the one of ``pg_ctl`` on PATH — or None.
    (The tests' PostgreSQL fixture uses it too.)"""
    candidates: list[Path] = []
    if os.environ.get("WAFLEET_PG_BINDIR"):
        candidates.append(Path(os.environ["WAFLEET_PG_BINDIR"]))
    candidates += sorted(
        (Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin")), key=_major, reverse=True
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for d in candidates:
        if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _major(bindir: Path) -> int:
    try:
        return int(bindir.parent.name.split(".")[0])
    except ValueError:
        return 0


def find_bindir() -> Path:
    bindir = pg_bindir()
    if bindir is None:
        raise BenchError("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")
    return bindir


def _os_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise BenchError("running as root and no 'postgres' user to run PostgreSQL as") from None
    return "postgres"


class PgCluster:
    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.os_user = _os_user()
        # Its own temp dir, not under the scenario's: the server's OS user must be able to
        # reach it (a pytest or --keep directory's parents may be private to us).
        self.base = Path(tempfile.mkdtemp(prefix="wafleet-bench-pg-"))
        self.data = self.base / "pgdata"
        self.sock = self.base / "pgsock"
        self.log = self.base / "postgres.log"
        self.port = free_port()

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.os_user is not None:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, check=False, cwd=self.base
        )
        if proc.returncode != 0:
            raise BenchError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")

    def start(self) -> str:
        """initdb + start; returns the URL of a fresh database."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            for p in (self.base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sock} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
            "start",
        )  # fmt: skip
        self._admin("CREATE DATABASE bench")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/bench"

    def _admin(self, sql: str) -> None:
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-c", sql)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)
