"""Doctor checks of the host: portal key, data dir, permissions, disk, engine library.

Each function takes what it looks at as parameters (paths, statvfs, resolver, probe
command), so tests drive it to PASS and to FAIL; the ``*_for(settings)`` helpers bind the
real ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from wafleet.config import PORTAL_KEY_FILE, Settings
from wafleet.errors import ConfigError
from wafleet.ops.doctor import CheckResult, fail, passed, warn

GIB = 1024**3
MIB = 1024**2
DISK_WARN_BYTES = 1 * GIB
DISK_FAIL_BYTES = 100 * MIB
MIN_GLIBC = (2, 34)
WHATSAPP_TARGETS: tuple[tuple[str, int], ...] = (
    ("web.whatsapp.com", 443),
    ("g.whatsapp.net", 5222),
)
ENGINE_PROBE_TIMEOUT = 30.0


class StatVfs(Protocol):
    @property
    def f_bavail(self) -> int: ...
    @property
    def f_frsize(self) -> int: ...


# ------------------------------------------------------------------ portal key
async def check_portal_key(cfg: Settings) -> CheckResult:
    name = "portal-key"
    try:
        cfg.model_copy().resolve_portal_key()  # a copy: never cache a key read here
    except ConfigError as err:
        if "not set" in str(err):
            return warn(
                name,
                f"no WAFLEET_PORTAL_KEY and no {cfg.data_dir / PORTAL_KEY_FILE}; the control "
                "plane and portal refuse to start without one (workers do not need it)",
                "set WAFLEET_PORTAL_KEY (>= 32 random characters, same value for control "
                "plane and portal) or run `wafleet up` once to generate it",
            )
        return fail(name, str(err), "replace the key with >= 32 random characters")
    source = "WAFLEET_PORTAL_KEY" if cfg.portal_key else str(cfg.data_dir / PORTAL_KEY_FILE)
    return passed(name, f"portal key set ({source})")


# ------------------------------------------------------------------ data dir
def _probe_write(directory: Path) -> None:
    fd, path = tempfile.mkstemp(prefix=".doctor-", dir=directory)
    os.close(fd)
    os.unlink(path)


def check_data_dir(
    data_dir: Path, *, probe_write: Callable[[Path], None] = _probe_write
) -> CheckResult:
    name = "data-dir"
    if not data_dir.exists():
        parent = next((p for p in data_dir.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return warn(
                name,
                f"{data_dir} does not exist yet (it is created on first start)",
                f"run `wafleet migrate` or `wafleet up`, or create it: mkdir -m 700 -p {data_dir}",
            )
        return fail(
            name,
            f"{data_dir} does not exist and {parent} is not writable",
            f"create it for the service user: mkdir -p {data_dir} && chown USER {data_dir}",
        )
    if not data_dir.is_dir():
        return fail(name, f"{data_dir} is not a directory", "set WAFLEET_DATA_DIR to a directory")
    checked = [data_dir] + [d for d in (data_dir / "logs", data_dir / "sessions") if d.is_dir()]
    for d in checked:
        try:
            probe_write(d)
        except OSError as err:
            return fail(
                name,
                f"{d} is not writable: {err.strerror or err}",
                f"give the service user write access: chown -R USER {data_dir} "
                "(or set WAFLEET_DATA_DIR to a writable directory)",
            )
    return passed(name, f"{data_dir} writable ({', '.join(p.name or str(p) for p in checked)})")


def check_permissions(data_dir: Path, *, max_entries: int = 10_000) -> CheckResult:
    """sessions/ (and each tenant's dir in it) 0700, portal.key 0600: they hold secrets."""
    name = "permissions"
    bad: list[str] = []
    sessions = data_dir / "sessions"
    if sessions.is_dir():
        dirs = [sessions]
        try:
            with os.scandir(sessions) as it:
                for i, entry in enumerate(it):
                    if i >= max_entries:
                        break
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(Path(entry.path))
        except OSError as err:
            return fail(name, f"cannot list {sessions}: {err.strerror}", f"chmod 700 {sessions}")
        bad += [f"{d} is {_mode(d)}" for d in dirs if _mode_bits(d) & 0o077]
    key = data_dir / PORTAL_KEY_FILE
    if key.is_file() and _mode_bits(key) & 0o077:
        bad.append(f"{key} is {_mode(key)}")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        return fail(
            name,
            f"secrets readable by other users: {shown}",
            f"chmod -R go-rwx {sessions} && chmod 600 {key}",
        )
    parts = []
    if sessions.is_dir():
        parts.append("sessions/ 0700")
    if key.is_file():
        parts.append("portal.key 0600")
    return passed(name, ", ".join(parts) if parts else "no secrets stored yet")


def _mode_bits(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _mode(path: Path) -> str:
    return f"{_mode_bits(path):04o}"


# ------------------------------------------------------------------ disk
def check_disk(data_dir: Path, *, statvfs: Callable[[str], StatVfs] = os.statvfs) -> CheckResult:
    name = "disk"
    where = next((p for p in (data_dir, *data_dir.parents) if p.exists()), Path("/"))
    try:
        st = statvfs(str(where))
    except OSError as err:
        return fail(name, f"cannot stat {where}: {err.strerror}", "check the data dir mount")
    free = st.f_bavail * st.f_frsize
    human = _bytes(free)
    fix = f"free space on the filesystem of {where} (old logs: {data_dir / 'logs'}) or grow it"
    if free < DISK_FAIL_BYTES:
        return fail(name, f"only {human} free in {where} (< 100 MiB)", fix)
    if free < DISK_WARN_BYTES:
        return warn(name, f"{human} free in {where} (< 1 GiB)", fix)
    return passed(name, f"{human} free in {where}")


def _bytes(n: int) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / MIB:.0f} MiB"


# ------------------------------------------------------------------ engine
def glibc_version() -> tuple[str, str] | None:
    """("glibc", "2.36"), or None when the C library is not glibc (musl, macOS)."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return None
    if not value:
        return None
    libc, _, version = value.partition(" ")
    return libc, version


# Run by `sys.executable -c`: loads the Go library the way neonize does (ctypes.CDLL)
# without importing neonize itself (~50 MB, configures logging, may abort the process).
_PROBE = r"""
import ctypes, importlib.util, json, os, platform, sys
mod = sys.argv[1]
try:
    spec = importlib.util.find_spec(mod)
except (ImportError, ValueError):
    spec = None
if spec is None or not spec.origin:
    print(json.dumps({"ok": False, "error": f"Python package {mod!r} is not installed"}))
    sys.exit(0)
pkg = os.path.dirname(spec.origin)
machine = platform.machine().lower()
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
name = f"{mod}-{platform.system().lower()}-{arch}.so"
path = os.path.join(pkg, name)
if not os.path.exists(path):
    print(json.dumps({"ok": False, "error": f"{path} is missing"}))
    sys.exit(0)
try:
    lib = ctypes.CDLL(path)
    lib.GetVersion.restype = ctypes.c_char_p
    version = lib.GetVersion().decode()
except (OSError, AttributeError) as err:
    print(json.dumps({"ok": False, "error": f"cannot load {path}: {err}"}))
    sys.exit(0)
print(json.dumps({"ok": True, "path": path, "version": version}))
"""


async def probe_library(
    module: str,
    *,
    python: str = sys.executable,
    timeout: float = ENGINE_PROBE_TIMEOUT,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Load ``module``'s Go library in a child process; its verdict as a dict. (``-c``
    puts ``cwd`` first on the child's path: tests place a broken package there.)"""
    proc = await asyncio.create_subprocess_exec(
        python,
        "-c",
        _PROBE,
        module,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"ok": False, "error": f"loading the library hung for more than {timeout:g}s"}
    code = proc.returncode or 0
    if code != 0:
        why = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return {"ok": False, "error": f"the probe process died ({why}) {tail[0]}".strip()}
    try:
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": "the probe process printed nothing usable"}
    return result


async def check_neonize(
    *,
    module: str = "neonize",
    libc: Callable[[], tuple[str, str] | None] = glibc_version,
    probe: Callable[[str], Awaitable[dict[str, Any]]] = probe_library,
) -> CheckResult:
    name = "engine"
    fix_lib = (
        "reinstall the engine: pip install --force-reinstall -c constraints.txt neonize "
        "(the wheel ships the Go library), on x86_64/arm64 Linux with glibc >= 2.34"
    )
    found = libc()
    if found is None or found[0] != "glibc":
        return fail(
            name,
            "the C library is not glibc; neonize's Go library needs glibc >= 2.34",
            "run workers on a glibc distribution (Debian 12, Ubuntu 22.04+, python:3.11-slim)",
        )
    try:
        ver = tuple(int(x) for x in found[1].split(".")[:2])
    except ValueError:
        ver = (0, 0)
    if ver < MIN_GLIBC:
        return fail(
            name,
            f"glibc {found[1]} is older than 2.34, which neonize's Go library needs",
            "upgrade the OS or use the Docker image (python:3.11-slim, Debian 12)",
        )
    result = await probe(module)
    if not result.get("ok"):
        return fail(name, f"neonize engine library does not load: {result.get('error')}", fix_lib)
    return passed(
        name, f"neonize library {result.get('version')} loads (glibc {found[1]}): {result['path']}"
    )


async def check_simulator(url: str, *, timeout: float = 2.0) -> CheckResult:
    """WAFLEET_ENGINE=simulator: the simulator's control API answers."""
    import httpx

    name = "engine"
    stats = _simulator_http(url) + "/sim/stats"
    fix = "start it (`wafleet simulator`) or point WAFLEET_SIMULATOR_URL at it"
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            resp = await client.get(stats)
    except httpx.HTTPError as err:
        return fail(name, f"simulator at {stats} does not answer: {_err(err)}", fix)
    if resp.status_code != 200:
        return fail(name, f"{stats} answered HTTP {resp.status_code}: not a wafleet simulator", fix)
    return passed(name, f"simulator engine; simulator answers at {stats}")


def _simulator_http(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


async def check_engine_for(cfg: Settings, *, timeout: float) -> CheckResult:
    if cfg.engine == "simulator":
        return await check_simulator(cfg.simulator_url, timeout=timeout)
    return await check_neonize()


def _err(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())
