"""A throwaway PostgreSQL cluster for tests, run with the machine's ``initdb``/``pg_ctl``.

One cluster per test session (per xdist worker): a temp data dir, listening only on
127.0.0.1 on a free port plus a unix socket in the temp dir, ``fsync=off``. Each test gets
a fresh database (``CREATE DATABASE ... TEMPLATE``), dropped afterwards.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` system user (or, if that does not exist, an unprivileged user created for it).

Fixtures (imported by ``tests/conftest.py``):
- ``pg_server`` (session): the `PgServer`; ``stop()``/``start()`` for outage tests,
  ``new_database(migrated=...)`` for extra databases.
- ``pg_url``: ``postgresql://postgres@127.0.0.1:PORT/DB`` of a fresh, empty database.
- ``pg_migrated_url``: the same, already at the latest schema revision.

Without PostgreSQL binaries these skip with the reason, unless ``WAFLEET_REQUIRE_POSTGRES=1``
(CI), where they fail.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import free_port
from wafleet.bench.pg import pg_bindir

REQUIRE_ENV = "WAFLEET_REQUIRE_POSTGRES"
SUPERUSER = "postgres"
FALLBACK_OS_USER = "wafleet-pg"
TEMPLATE_EMPTY = "wafleet_tpl_empty"
TEMPLATE_MIGRATED = "wafleet_tpl_migrated"


class PgUnavailable(Exception):
    """PostgreSQL cannot be run here; the message says why."""


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl/postgres (newest installed version first)."""
    bindir = pg_bindir()
    if bindir is None:
        raise PgUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
            "/usr/lib/postgresql/*/bin or on PATH (apt-get install postgresql)"
        )
    return bindir


def _server_os_user() -> str | None:
    """The OS user the server runs as: None = ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PgUnavailable("running as root and no 'postgres' user to run PostgreSQL as")
    proc = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise PgUnavailable(f"cannot create an unprivileged user for PostgreSQL: {proc.stderr}")
    return FALLBACK_OS_USER


class PgServer:
    """One PostgreSQL cluster in a temp dir. Not started until `start()`."""

    def __init__(self, bindir: Path, base_dir: Path, os_user: str | None) -> None:
        self.bindir = bindir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "sock"
        self.log_file = base_dir / "postgres.log"
        self.os_user = os_user
        self.port = free_port()
        self.host = "127.0.0.1"
        self._names = itertools.count(1)
        self._templates: set[str] = set()

    # -- process control ---------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.os_user is not None:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.base_dir
        )
        if proc.returncode != 0:
            raise PgUnavailable(
                f"{args[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}\n"
                f"{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        try:
            return "postgres.log: " + self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            for p in (self.base_dir, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server (again, after `stop()`: same port, same data)."""
        opts = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={self.host}",
                f"-k {self.socket_dir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c shared_buffers=32MB",
                "-c max_connections=300",
            ]
        )
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", opts, "-w",
            "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clients disconnected, clean) or ``immediate`` (a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def destroy(self) -> None:
        with contextlib.suppress(PgUnavailable, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())  # our own fixed statements, no parameters

    def _ensure_template(self, migrated: bool) -> str:
        name = TEMPLATE_MIGRATED if migrated else TEMPLATE_EMPTY
        if name not in self._templates:
            self._admin(f'DROP DATABASE IF EXISTS "{name}"')
            self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
            if migrated:
                from wafleet.db import migrate

                migrate.upgrade(self.url(name))  # disposes its engine: template is idle
            self._templates.add(name)
        return name

    def new_database(self, *, migrated: bool = False) -> str:
        """Create a fresh database (empty, or at the latest schema) and return its URL."""
        template = self._ensure_template(migrated)
        name = f"t{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"PostgreSQL required ({REQUIRE_ENV}=1) but unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


OWNER_FILE = "owner.pid"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(bindir: Path, os_user: str | None) -> None:
    """Stop and delete clusters left by test sessions that were killed (their owner
    process is gone), so an interrupted run does not leave a postgres behind for good."""
    for base in Path(tempfile.gettempdir()).glob("wafleet-pg-*"):
        try:
            owner = int((base / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being set up right now, or not ours
        if not _pid_alive(owner):
            PgServer(bindir, base, os_user).destroy()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        bindir = find_bindir()
        os_user = _server_os_user()
    except PgUnavailable as err:
        _unavailable(str(err))
        raise  # not reached: skip/fail raise
    reap_orphans(bindir, os_user)
    base = Path(tempfile.mkdtemp(prefix="wafleet-pg-"))
    (base / OWNER_FILE).write_text(str(os.getpid()))
    server = PgServer(bindir, base, os_user)
    try:
        server.init()
        server.start()
    except (PgUnavailable, subprocess.TimeoutExpired, OSError) as err:
        server.destroy()
        _unavailable(str(err))
    try:
        yield server
    finally:
        server.destroy()


def _fresh(server: PgServer, *, migrated: bool) -> Iterator[str]:
    url = server.new_database(migrated=migrated)
    try:
        yield url
    finally:
        if not server.running:  # a test stopped it (outage) and did not restart it
            server.start()
        server.drop_database(url)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, empty database (no schema)."""
    yield from _fresh(pg_server, migrated=False)


@pytest.fixture
def pg_migrated_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh database already migrated to the latest revision."""
    yield from _fresh(pg_server, migrated=True)
