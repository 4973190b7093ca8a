"""The real `wafleet simulator` process: engines over its WebSocket, its control API, its
CLI errors and a clean SIGTERM shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.simulator.helpers import make_engine, pair
from tests.support.procs import WAFLEET, Proc, base_env, free_port, running, wait_http_ok
from wafleet.engines.base import (
    ConnectFailed,
    ConnectionLost,
    IncomingMessage,
    QrCode,
    QrTimeout,
    Receipt,
    TemporaryBan,
)
from wafleet.states import Cause

pytestmark = pytest.mark.slow
PHONE = "+15550001"


@pytest.fixture
def simulator_proc(tmp_path: Path) -> Iterator[tuple[Proc, int]]:
    port = free_port()
    args = ["simulator", "--port", str(port), "--time-scale", "0.005"]
    with running(args, base_env(tmp_path), tmp_path / "sim.log") as proc:
        wait_http_ok(f"http://127.0.0.1:{port}/sim/stats")
        yield proc, port


async def test_engine_against_the_real_process(simulator_proc: tuple[Proc, int]) -> None:
    proc, port = simulator_proc
    ws_url = f"ws://127.0.0.1:{port}/ws"
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False
    ) as http:
        # QR rotation with --time-scale 0.005: six codes, then qr_timeout.
        waiting, wrec, _ = make_engine(ws_url, slug="waiting")
        try:
            await waiting.connect()
            await wrec.wait_for(QrTimeout)
            assert len(wrec.of(QrCode)) == 6
        finally:
            await waiting.close()

        engine, rec, _ = make_engine(ws_url)
        try:
            await pair(engine, rec, http, PHONE)
            resp = await http.post(
                "/sim/inbound", json={"phone": PHONE, "from": "+1999", "text": "hi"}
            )
            msg = await rec.wait_for(IncomingMessage)
            assert msg.id == resp.json()["id"]
            assert msg.text == "hi"
            await engine.ack(msg.id)
            await engine.send_text("+1999", "hello back", "reply-1")
            await rec.wait_for(Receipt, count=2)
            out = (await http.get("/sim/outbound", params={"phone": PHONE})).json()
            assert [(m["to"], m["text"]) for m in out] == [("+1999", "hello back")]

            await http.post("/sim/faults", json={"kind": "drop", "phone": PHONE})
            lost = await rec.wait_for(ConnectionLost, count=2)
            assert lost.cause is Cause.NETWORK

            # 2000 s * 0.005 = 10 s ban
            await http.post(
                "/sim/faults", json={"kind": "temp_ban", "phone": PHONE, "duration_s": 2000}
            )
            with pytest.raises(ConnectFailed) as info:
                await engine.connect()
            assert info.value.cause is Cause.TEMP_BANNED
            assert info.value.expires_at is not None
            assert rec.of(TemporaryBan) == []  # was offline: the ban shows at login

            stats = (await http.get("/sim/stats")).json()
            assert stats["inbound_pending"] == 0
            assert stats["delivered"] == 1
            assert stats["outbound"] == 1
            assert stats["max_concurrent"] == {PHONE: 1}
        finally:
            await engine.close()
    assert proc.alive()


def test_sigterm_stops_cleanly(simulator_proc: tuple[Proc, int]) -> None:
    proc, _port = simulator_proc
    proc.signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0
    assert "simulator listening on" in proc.output()
    assert "Traceback" not in proc.output()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--time-scale", "0"], "--time-scale"),
        (["--port", "70000"], "--port"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    res = subprocess.run(
        [*WAFLEET, "simulator", *args],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert needle in lines[0]


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = subprocess.run(
            [*WAFLEET, "simulator", "--port", str(port)],
            env=base_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "cannot listen" in lines[0]
