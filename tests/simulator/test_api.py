"""The control API over real HTTP: contract shapes, extensions, and every bad input → 4xx JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.simulator.helpers import make_engine, pair, running_simulator
from wafleet.engines.base import IncomingMessage, QrCode
from wafleet.engines.simulator import SimulatorEngine

PHONE = "+15550001"


@pytest.fixture
async def linked(
    sim: running_simulator,
) -> AsyncIterator[tuple[SimulatorEngine, object]]:
    engine, rec, _ = make_engine(sim.ws_url)
    await pair(engine, rec, sim.http, PHONE)
    try:
        yield engine, rec
    finally:
        await engine.close()


def assert_error(resp: object, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("POST", "/sim/scan", b"{not json", 400, "bad_json"),
        ("POST", "/sim/scan", b"", 422, "invalid_body"),
        ("POST", "/sim/scan", b"[1, 2]", 422, "invalid_body"),
        ("POST", "/sim/scan", b'{"qr": "x"}', 422, "invalid_field"),
        ("POST", "/sim/scan", b'{"qr": 5, "phone": "+15550001"}', 422, "invalid_field"),
        ("POST", "/sim/scan", b'{"qr": "x", "phone": "not a phone"}', 422, "invalid_phone"),
        ("POST", "/sim/scan", b'{"qr": "nope", "phone": "+15550001"}', 404, "unknown_qr"),
        ("POST", "/sim/inbound", b"\xff\xfe", 400, "bad_json"),
        (
            "POST",
            "/sim/inbound",
            b'{"phone": "+15550009", "from": "+1", "text": "x"}',
            404,
            "unknown_phone",
        ),
        ("POST", "/sim/inbound", b'{"phone": "+15550001", "text": "x"}', 422, "invalid_field"),
        (
            "POST",
            "/sim/inbound",
            b'{"phone": "+15550001", "from": "+1", "text": null}',
            422,
            "invalid_field",
        ),
        ("POST", "/sim/inbound/batch", b'{"messages": []}', 422, "invalid_field"),
        ("POST", "/sim/inbound/batch", b'{"messages": "x"}', 422, "invalid_field"),
        ("POST", "/sim/inbound/batch", b'{"messages": [1]}', 422, "invalid_body"),
        ("GET", "/sim/outbound?phone=+15550009", b"", 404, "unknown_phone"),
        ("GET", "/sim/outbound?phone=abc", b"", 422, "invalid_phone"),
        ("POST", "/sim/faults", b"nope", 400, "bad_json"),
        ("POST", "/sim/faults", b'{"kind": "meteor", "phone": "*"}', 422, "unknown_fault"),
        ("POST", "/sim/faults", b'{"kind": "drop", "phone": "+15550009"}', 404, "unknown_phone"),
        ("POST", "/sim/faults", b'{"kind": "drop"}', 422, "invalid_field"),
        (
            "POST",
            "/sim/faults",
            b'{"kind": "drop", "phone": "*", "duration_s": -1}',
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/sim/faults",
            b'{"kind": "drop", "phone": "*", "duration_s": "5"}',
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/sim/faults",
            b'{"kind": "drop", "phone": "*", "duration_s": true}',
            422,
            "invalid_field",
        ),
        ("DELETE", "/sim/faults", b"{bad", 400, "bad_json"),
        ("DELETE", "/sim/faults", b'{"phone": "+15550009"}', 404, "unknown_phone"),
        ("DELETE", "/sim/faults", b'{"phone": 12}', 422, "invalid_field"),
        ("GET", "/sim/nothing", b"", 404, "not_found"),
        ("PUT", "/sim/stats", b"", 405, "method_not_allowed"),
        ("GET", "/sim/scan", b"", 405, "method_not_allowed"),
    ],
)
async def test_bad_input_is_4xx_json(
    sim: running_simulator, method: str, path: str, content: bytes, status: int, code: str
) -> None:
    resp = await sim.http.request(method, path, content=content)
    assert_error(resp, status, code)


async def test_routes_that_need_a_linked_phone(
    sim: running_simulator, linked: tuple[SimulatorEngine, object]
) -> None:
    resp = await sim.http.post("/sim/inbound", json={"phone": PHONE, "from": "+1", "text": "a"})
    assert resp.status_code == 200
    assert isinstance(resp.json()["id"], str)
    batch = await sim.http.post(
        "/sim/inbound/batch",
        json={"messages": [{"phone": PHONE, "from": "+2", "text": str(i)} for i in range(5)]},
    )
    assert batch.status_code == 200
    ids = batch.json()["ids"]
    assert len(ids) == 5
    assert len(set(ids)) == 5
    # All-or-nothing: one unknown phone rejects the whole batch.
    bad = await sim.http.post(
        "/sim/inbound/batch",
        json={
            "messages": [
                {"phone": PHONE, "from": "+2", "text": "x"},
                {"phone": "+15550009", "from": "+2", "text": "y"},
            ]
        },
    )
    assert_error(bad, 404, "unknown_phone")
    _engine, rec = linked
    await rec.wait_for(IncomingMessage, count=6)  # type: ignore[attr-defined]
    stats = (await sim.http.get("/sim/stats")).json()
    assert set(stats) >= {
        "connections",
        "max_concurrent",
        "connect_attempts",
        "inbound_pending",
        "delivered",
        "outbound",
    }
    assert stats["inbound_pending"] == 6
    accounts = (await sim.http.get("/sim/accounts")).json()
    assert accounts[0]["phone"] == PHONE
    assert accounts[0]["linked_devices"] == 1
    assert (await sim.http.get("/sim/outbound", params={"phone": PHONE})).json() == []
    assert (await sim.http.get("/sim/outbound")).json() == []
    fault = await sim.http.post(
        "/sim/faults", json={"kind": "refuse", "phone": PHONE, "duration_s": 100}
    )
    assert fault.status_code == 200
    assert fault.json()["expires_at"] is not None
    listed = (await sim.http.get("/sim/faults")).json()
    assert [(f["kind"], f["phone"]) for f in listed] == [("refuse", PHONE)]
    cleared = await sim.http.request("DELETE", "/sim/faults", json={"phone": PHONE})
    assert cleared.json() == {"cleared": 1}
    assert (await sim.http.delete("/sim/faults")).json() == {"cleared": 0}


async def test_pending_qr_listing_and_scan(sim: running_simulator) -> None:
    engine, rec, _ = make_engine(sim.ws_url)
    try:
        await engine.connect()
        shown = await rec.wait_for(QrCode)
        waiting = (await sim.http.get("/sim/qr")).json()
        assert [w["qr"] for w in waiting] == [shown.code]
        ok = await sim.http.post("/sim/scan", json={"qr": shown.code, "phone": PHONE})
        assert ok.status_code == 200
        assert ok.json()["phone"] == PHONE
        assert (await sim.http.get("/sim/qr")).json() == []
        again = await sim.http.post("/sim/scan", json={"qr": shown.code, "phone": PHONE})
        assert_error(again, 404, "unknown_qr")
    finally:
        await engine.close()


async def test_phone_page_is_self_contained_html(sim: running_simulator) -> None:
    resp = await sim.http.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "<script" in html
    assert "/sim/qr" in html
    assert "innerHTML" not in html  # user text only through textContent
    assert "http://" not in html
    assert "https://" not in html  # no external assets


async def test_websocket_on_other_path_is_refused(sim: running_simulator) -> None:
    import websockets
    from websockets.exceptions import InvalidStatus

    url = sim.ws_url.replace("/ws", "/other")
    with pytest.raises(InvalidStatus):
        await websockets.connect(url, proxy=None)


async def test_garbage_frames_are_ignored(sim: running_simulator) -> None:
    import websockets

    async with websockets.connect(sim.ws_url, proxy=None) as ws:
        for junk in (
            "not json",
            "[1,2]",
            '{"type": 5}',
            '{"type": "send"}',
            '{"type": "ack"}',
            '{"type": "unknown"}',
            '{"type": "hello", "creds": "forged"}',
        ):
            await ws.send(junk)
        answer = await ws.recv()
    assert '"login_failed"' in str(answer)
    assert (await sim.http.get("/sim/stats")).status_code == 200
