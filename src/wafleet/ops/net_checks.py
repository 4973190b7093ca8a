"""Doctor check of outbound reachability: DNS and TCP to WhatsApp's servers (or, with
``WAFLEET_ENGINE=simulator``, to the simulator), each probe bounded by a short timeout.
The resolver is a parameter: tests resolve to a local listener for the PASS case."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from wafleet.config import Settings
from wafleet.ops.doctor import CheckResult, fail, passed
from wafleet.ops.host_checks import _err

WHATSAPP_TARGETS: tuple[tuple[str, int], ...] = (
    ("web.whatsapp.com", 443),
    ("g.whatsapp.net", 5222),
)
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo in a daemon thread: a hung resolver must not keep the process alive."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[list[str]] = loop.create_future()

    def work() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = list(dict.fromkeys(str(i[4][0]) for i in infos))
            loop.call_soon_threadsafe(_settle, fut, addrs, None)
        except OSError as err:
            loop.call_soon_threadsafe(_settle, fut, None, err)

    threading.Thread(target=work, name=f"doctor-dns:{host}", daemon=True).start()
    return await fut


def _settle(fut: asyncio.Future[list[str]], value: list[str] | None, err: Exception | None) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value or [])


async def _tcp_connect(addr: str, port: int, timeout: float) -> float:
    t0 = time.monotonic()
    _, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), timeout)
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except (OSError, TimeoutError):
        pass
    return time.monotonic() - t0


async def check_reachability(
    targets: Sequence[tuple[str, int]],
    *,
    resolver: Resolver = system_resolver,
    timeout: float = 2.0,
    what: str = "WhatsApp",
    fix_dns: str = (
        "check the host's DNS (/etc/resolv.conf) and outbound network: workers need to "
        "resolve web.whatsapp.com and reach TCP 443 and 5222"
    ),
    fix_tcp: str = (
        "allow outbound TCP 443 and 5222 to WhatsApp (firewall, proxy, egress policy) on every "
        "worker host"
    ),
) -> CheckResult:
    name = "network"
    reached: list[str] = []
    for host, port in targets:
        try:
            addrs = await asyncio.wait_for(resolver(host, port), timeout)
        except TimeoutError:
            return fail(name, f"DNS lookup of {host} timed out after {timeout:g}s", fix_dns)
        except OSError as err:
            return fail(name, f"cannot resolve {host}: {_err(err)} (no route to {what})", fix_dns)
        if not addrs:
            return fail(name, f"{host} resolves to no address", fix_dns)
        try:
            took = await _tcp_connect(addrs[0], port, timeout)
        except TimeoutError:
            return fail(
                name, f"TCP {host}:{port} ({addrs[0]}) timed out after {timeout:g}s", fix_tcp
            )
        except OSError as err:
            return fail(name, f"TCP {host}:{port} ({addrs[0]}) failed: {_err(err)}", fix_tcp)
        reached.append(f"{host}:{port} ({took * 1000:.0f} ms)")
    return passed(name, f"{what} reachable: " + ", ".join(reached))


async def check_network_for(cfg: Settings, *, timeout: float) -> CheckResult:
    if cfg.engine == "simulator":
        parts = urlsplit(cfg.simulator_url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        return await check_reachability(
            [(parts.hostname or "127.0.0.1", port)],
            timeout=timeout,
            what="the simulator",
            fix_dns="fix the host name in WAFLEET_SIMULATOR_URL",
            fix_tcp="start `wafleet simulator` or fix WAFLEET_SIMULATOR_URL",
        )
    return await check_reachability(WHATSAPP_TARGETS, timeout=timeout)
