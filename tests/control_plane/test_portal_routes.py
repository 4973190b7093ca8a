"""The portal routes' behaviour (tenant a as alice), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from tests.control_plane.conftest import NOW, headers
from tests.control_plane.seed import ALICE, SECRET_A, Fleet, add_worker
from wafleet.db.engine import Database
from wafleet.db.models import (
    ConnectionEvent,
    MessageLog,
    Tenant,
    TenantCommand,
    WhatsAppSession,
)

P = "/portal/tenant/current"
H = headers(ALICE)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_migrated_url")
        return url
    return sqlite_url


async def _session(db: Database, tenant_id: int) -> WhatsAppSession:
    async with db.session() as s:
        ws = await s.get(WhatsAppSession, tenant_id)
        assert ws is not None
        return ws


async def _update_session(db: Database, tenant_id: int, **values: object) -> None:
    async with db.session() as s, s.begin():
        ws = await s.get(WhatsAppSession, tenant_id)
        assert ws is not None
        for k, v in values.items():
            setattr(ws, k, v)


# ------------------------------------------------------------------ status


async def test_status_has_every_field(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    await add_worker(db, "w1", heartbeat=NOW - timedelta(seconds=2), tenant_ids=[fleet.a_id])
    await _update_session(
        db,
        fleet.a_id,
        last_disconnect_cause="network",
        last_disconnect_action="retrying",
        last_disconnect_at=NOW - timedelta(minutes=1),
        last_disconnect_detail="socket closed",
        reconnect_active=True,
        reconnect_attempt=3,
        next_retry_at=NOW + timedelta(seconds=8),
    )
    async with db.session() as s, s.begin():
        s.add_all(
            [
                MessageLog(
                    tenant_id=fleet.a_id, direction="in", wa_id="old", chat="c", sender="c",
                    body="old", status="PROCESSED", created_at=NOW - timedelta(hours=25),
                    updated_at=NOW,
                ),
                MessageLog(
                    tenant_id=fleet.a_id, direction="out", wa_id="o1", chat="c", sender="me",
                    body="x", status="PENDING", created_at=NOW, updated_at=NOW,
                ),
                MessageLog(
                    tenant_id=fleet.a_id, direction="out", wa_id="o2", chat="c", sender="me",
                    body="y", status="SENT", created_at=NOW, updated_at=NOW,
                ),
            ]
        )  # fmt: skip
    resp = await client.get(f"{P}/status", headers=H)
    assert resp.status_code == 200
    data = resp.json()
    assert data["tenant"] == {
        "slug": "a",
        "name": "Tenant A",
        "status": "ACTIVE",
        "error_message": None,
    }
    assert data["session"]["state"] == "CONNECTED"
    assert data["session"]["phone"] == f"+1555000{fleet.a_id}"
    assert set(data["session"]) == {
        "state",
        "phone",
        "last_seen_at",
        "connected_since",
        "last_qr_at",
    }
    assert data["session"]["last_seen_at"].startswith("2026-01-15T11:59:58")
    assert data["worker"]["id"] == "w1"
    assert data["worker"]["host"] == "host-1"
    assert data["worker"]["status"] == "RUNNING"
    assert set(data["worker"]) == {"id", "host", "status", "last_heartbeat_at"}
    assert data["reconnect"]["active"] is True
    assert data["reconnect"]["attempt"] == 3
    assert data["reconnect"]["max_attempts"] == 20  # the setting's default
    assert data["reconnect"]["next_retry_at"] is not None
    assert data["last_disconnect"]["cause"] == "network"
    assert data["last_disconnect"]["action"] == "retrying"
    assert data["last_disconnect"]["detail"] == "socket closed"
    # 3 seeded inbound within 24h (the 25 h old one is not counted); 2 out, 1 pending
    assert data["messages"] == {"in_24h": 3, "out_24h": 2, "pending_out": 1}


async def test_status_of_a_fresh_tenant(client: httpx.AsyncClient, fleet: Fleet):
    data = (await client.get(f"{P}/status", headers=headers("bob@b.test"))).json()
    assert data["worker"] is None
    assert data["last_disconnect"] is None
    assert data["session"]["state"] == "DISCONNECTED"
    assert data["reconnect"] == {
        "active": False,
        "attempt": 0,
        "max_attempts": 20,
        "next_retry_at": None,
    }


async def test_status_max_attempts_comes_from_settings(make_settings, fleet: Fleet):
    from wafleet.control_plane.app import create_app

    app = create_app(make_settings(reconnect_max_attempts=7), clock=lambda: NOW, run_jobs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
            data = (await c.get(f"{P}/status", headers=H)).json()
    assert data["reconnect"]["max_attempts"] == 7


# ------------------------------------------------------------------ qr


async def test_qr_only_while_qr_ready(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    data = (await client.get(f"{P}/qr", headers=H)).json()
    assert data == {"state": "DISCONNECTED", "qr": None, "qr_png": None, "expires_at": None}

    await _update_session(
        db,
        fleet.a_id,
        state="QR_READY",
        last_qr="2@abcdef,ghijkl,mnopqr",
        last_qr_at=NOW,
        qr_expires_at=NOW + timedelta(seconds=60),
    )
    data = (await client.get(f"{P}/qr", headers=H)).json()
    assert data["state"] == "QR_READY"
    assert data["qr"] == "2@abcdef,ghijkl,mnopqr"
    assert data["qr_png"].startswith("data:image/png;base64,")
    png = base64.b64decode(data["qr_png"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert data["expires_at"].startswith("2026-01-15T12:01:00")

    await _update_session(db, fleet.a_id, qr_expires_at=NOW - timedelta(seconds=1))
    data = (await client.get(f"{P}/qr", headers=H)).json()
    assert data["qr"] is None
    assert data["qr_png"] is None

    await _update_session(db, fleet.a_id, state="CONNECTED", qr_expires_at=None)
    data = (await client.get(f"{P}/qr", headers=H)).json()
    assert data["state"] == "CONNECTED"
    assert data["qr"] is None


# ------------------------------------------------------------------ logs / events


async def _add_messages(db: Database, tenant_id: int, n: int) -> None:
    async with db.session() as s, s.begin():
        for i in range(n):
            s.add(
                MessageLog(
                    tenant_id=tenant_id,
                    direction="out" if i % 2 else "in",
                    wa_id=f"m{i}",
                    chat=f"+1777{i % 3}",
                    sender="me" if i % 2 else f"+1777{i % 3}",
                    body=f"msg {i}",
                    status="SENT" if i % 2 else "PROCESSED",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )


async def test_logs_pages_newest_first(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    await _add_messages(db, fleet.a_id, 7)  # + 3 seeded = 10
    seen: list[int] = []
    before = None
    pages = 0
    while True:
        params = {"limit": 4, **({"before": before} if before else {})}
        data = (await client.get(f"{P}/logs", params=params, headers=H)).json()
        pages += 1
        ids = [i["id"] for i in data["items"]]
        assert ids == sorted(ids, reverse=True)
        seen += ids
        before = data["next_before"]
        if before is None:
            break
        assert before == ids[-1]
    assert pages == 3
    assert len(seen) == len(set(seen)) == 10
    item = data["items"][0]
    assert set(item) >= {"id", "direction", "chat", "sender", "body", "status", "created_at"}


async def test_logs_exact_page_has_null_next(client: httpx.AsyncClient, fleet: Fleet):
    data = (await client.get(f"{P}/logs", params={"limit": 3}, headers=H)).json()
    assert len(data["items"]) == 3
    assert data["next_before"] is None


async def test_logs_filters(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    await _add_messages(db, fleet.a_id, 6)
    out = (await client.get(f"{P}/logs", params={"direction": "out"}, headers=H)).json()
    assert out["items"]
    assert {i["direction"] for i in out["items"]} == {"out"}
    chat = (await client.get(f"{P}/logs", params={"chat": "+17771"}, headers=H)).json()
    assert chat["items"]
    assert {i["chat"] for i in chat["items"]} == {"+17771"}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": "ten"},
        {"before": 0},
        {"before": 2**70},
        {"direction": "sideways"},
        {"chat": "x" * 129},
    ],
)
async def test_logs_bad_query_is_422(client: httpx.AsyncClient, fleet: Fleet, params: dict):
    resp = await client.get(f"{P}/logs", params=params, headers=H)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"
    assert resp.json()["error"]["message"].startswith("query.")


async def test_events_timeline(client: httpx.AsyncClient, fleet: Fleet):
    data = (await client.get(f"{P}/events", params={"limit": 10}, headers=H)).json()
    assert data["next_before"] is None
    (item,) = data["items"]
    assert item["kind"] == "transition"
    assert item["from"] == "CONNECTING"
    assert item["to"] == "CONNECTED"
    assert item["detail"] == f"{SECRET_A} connected"
    assert {"at", "kind", "from", "to", "cause", "detail"} <= set(item)


# ------------------------------------------------------------------ actions


@pytest.mark.parametrize("action", ["restart", "relink", "logout", "pause", "resume"])
async def test_action_queues_command_and_event(
    client: httpx.AsyncClient, db: Database, fleet: Fleet, action: str
):
    resp = await client.post(f"{P}/actions/{action}", headers=H)
    assert resp.status_code == 202
    body = resp.json()
    assert body["action"] == action
    async with db.session() as s:
        cmd = await s.get(TenantCommand, body["command_id"])
        assert cmd is not None
        assert (cmd.tenant_id, cmd.kind, cmd.requested_by) == (fleet.a_id, action, ALICE)
        assert cmd.processed_at is None
        ev = (
            await s.execute(
                select(ConnectionEvent).where(
                    ConnectionEvent.tenant_id == fleet.a_id, ConnectionEvent.kind == "action"
                )
            )
        ).scalar_one()
        assert ev.detail == f"{action} requested by {ALICE}"


async def test_pause_and_resume_change_status_at_once(
    client: httpx.AsyncClient, db: Database, fleet: Fleet
):
    async def tenant() -> Tenant:
        async with db.session() as s:
            t = await s.get(Tenant, fleet.a_id)
            assert t is not None
            return t

    assert (await client.post(f"{P}/actions/pause", headers=H)).status_code == 202
    assert (await tenant()).status == "PAUSED"
    async with db.session() as s, s.begin():
        t = await s.get(Tenant, fleet.a_id)
        assert t is not None
        t.status, t.error_message = "ERROR", "banned"
    assert (await client.post(f"{P}/actions/resume", headers=H)).status_code == 202
    t = await tenant()
    assert (t.status, t.error_message) == ("ACTIVE", None)


async def test_unknown_action_is_json_422(client: httpx.AsyncClient, fleet: Fleet):
    resp = await client.post(f"{P}/actions/explode", headers=H)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"


# ------------------------------------------------------------------ messages


async def test_send_message_writes_outbox_and_command(
    client: httpx.AsyncClient, db: Database, fleet: Fleet
):
    resp = await client.post(f"{P}/messages", json={"to": "+15559999", "text": "hi"}, headers=H)
    assert resp.status_code == 202
    data = resp.json()
    assert data["status"] == "PENDING"
    assert data["id"].startswith("WF")
    assert len(data["id"]) == 34
    async with db.session() as s:
        msg = (
            await s.execute(select(MessageLog).where(MessageLog.wa_id == data["id"]))
        ).scalar_one()
        assert (msg.tenant_id, msg.direction, msg.status) == (fleet.a_id, "out", "PENDING")
        assert (msg.chat, msg.sender, msg.body) == ("+15559999", "me", "hi")
        cmd = (
            await s.execute(select(TenantCommand).where(TenantCommand.kind == "send"))
        ).scalar_one()
        assert cmd.tenant_id == fleet.a_id
        assert cmd.payload == {"message_id": msg.id, "wa_id": data["id"]}
    # it shows in the log, pending
    logs = (await client.get(f"{P}/logs", params={"direction": "out"}, headers=H)).json()
    assert logs["items"][0]["status"] == "PENDING"


async def test_send_to_a_jid(client: httpx.AsyncClient, fleet: Fleet):
    body = {"to": "15559999@s.whatsapp.net", "text": "x" * 4096}
    assert (await client.post(f"{P}/messages", json=body, headers=H)).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"to": "+15559999", "text": ""},
        {"to": "+15559999", "text": "   \n\t"},
        {"to": "+15559999", "text": "x" * 4097},
        {"to": "", "text": "hi"},
        {"to": "not a number", "text": "hi"},
        {"to": "+" + "1" * 64, "text": "hi"},
        {"to": "+15559999"},
        {"text": "hi"},
        {"to": 15559999, "text": "hi"},
        {"to": "+15559999", "text": "hi", "extra": 1},
        [],
        "hi",
    ],
)
async def test_send_bad_input_is_422(client: httpx.AsyncClient, fleet: Fleet, body: object):
    resp = await client.post(f"{P}/messages", json=body, headers=H)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"


async def test_send_invalid_json_is_422(client: httpx.AsyncClient, fleet: Fleet):
    resp = await client.post(
        f"{P}/messages",
        content=b'{"to": "+1555',
        headers={**H, "content-type": "application/json"},
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"


# ------------------------------------------------------------------ config


async def test_config_get_masks_secret(client: httpx.AsyncClient, fleet: Fleet):
    data = (await client.get(f"{P}/config", headers=H)).json()
    assert data["version"] == 1
    assert data["config"]["webhook"] == {"url": "https://example.org/hook", "secret": "***"}
    assert "hook" not in (await client.get(f"{P}/config", headers=H)).text.split("secret")[1]


async def test_config_put_keeps_masked_secret(
    client: httpx.AsyncClient, db: Database, fleet: Fleet
):
    doc = {
        "rules": [{"match": "keyword", "pattern": "price", "reply": "cheap"}],
        "webhook": {"url": "https://example.org/other", "secret": "***"},
    }
    resp = await client.put(f"{P}/config", json=doc, headers=H)
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == 2
    assert resp.json()["config"]["webhook"]["secret"] == "***"
    async with db.session() as s:
        t = await s.get(Tenant, fleet.a_id)
        assert t is not None
        assert t.config["webhook"] == {
            "url": "https://example.org/other",
            "secret": f"{SECRET_A}-hook",
        }
        assert t.config["rules"][0]["pattern"] == "price"
        kinds = (await s.execute(select(TenantCommand.kind))).scalars().all()
        assert kinds == ["config"]


async def test_config_put_new_secret(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    doc = {"rules": [], "webhook": {"url": "https://example.org/h", "secret": "s3cret"}}
    assert (await client.put(f"{P}/config", json=doc, headers=H)).status_code == 200
    async with db.session() as s:
        t = await s.get(Tenant, fleet.a_id)
        assert t is not None
        assert t.config["webhook"]["secret"] == "s3cret"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"rules": [{"match": "regex", "pattern": "(", "reply": "x"}]}, "rule 1"),
        ({"rules": [{"match": "keyword", "reply": "x"}]}, "rule 1"),
        ({"rules": "nope"}, "rules"),
        ({"rules": [], "webhook": {"url": "http://127.0.0.1/h", "secret": "s"}}, "private"),
        ({"rules": [], "bogus": 1}, "bogus"),
    ],
)
async def test_config_put_invalid_is_422(
    client: httpx.AsyncClient, fleet: Fleet, doc: dict, message: str
):
    resp = await client.put(f"{P}/config", json=doc, headers=H)
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_rules"
    assert message in err["message"]
    assert "\n" not in err["message"]


async def test_config_masked_secret_without_stored_one_is_422(
    client: httpx.AsyncClient, fleet: Fleet
):
    doc = {"rules": [], "webhook": {"url": "https://example.org/h", "secret": "***"}}
    resp = await client.put(f"{P}/config", json=doc, headers=headers("bob@b.test"))
    assert resp.status_code == 422
    assert "secret" in resp.json()["error"]["message"]


async def test_config_private_webhook_allowed_by_setting(make_settings, fleet: Fleet):
    from wafleet.control_plane.app import create_app

    app = create_app(make_settings(webhook_allow_private=True), clock=lambda: NOW, run_jobs=False)
    doc = {"rules": [], "webhook": {"url": "http://127.0.0.1:9/h", "secret": "s"}}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
            assert (await c.put(f"{P}/config", json=doc, headers=H)).status_code == 200


async def test_hourly_stats(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    async with db.session() as s, s.begin():
        for i, (hours_ago, direction) in enumerate(
            [(0, "out"), (0, "out"), (5, "in"), (22, "in"), (24, "in"), (30, "out")]
        ):
            s.add(
                MessageLog(
                    tenant_id=fleet.a_id, direction=direction, wa_id=f"h{i}", chat="c",
                    sender="c", body="b", status="SENT",
                    created_at=NOW - timedelta(hours=hours_ago, minutes=1), updated_at=NOW,
                )
            )  # fmt: skip
    data = (await client.get(f"{P}/stats/hourly", headers=H)).json()
    hours = data["hours"]
    assert len(hours) == 24
    # 24 buckets ending with the current hour (NOW is 12:00 sharp)
    assert hours[-1]["hour"].startswith("2026-01-15T12:00:00")
    assert hours[0]["hour"].startswith("2026-01-14T13:00:00")
    by_hour = {h["hour"][:13]: (h["in"], h["out"]) for h in hours}
    # the 3 seeded inbound messages are 8-10 minutes before NOW, in the 11:00 hour
    assert by_hour["2026-01-15T11"] == (3, 2)
    assert by_hour["2026-01-15T06"] == (1, 0)
    assert by_hour["2026-01-14T13"] == (1, 0)  # 22 h 1 min ago: the oldest bucket
    assert sum(h["in"] + h["out"] for h in hours) == 7  # 24 h+ ago is not counted
