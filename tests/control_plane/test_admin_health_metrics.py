"""Admin listings, /healthz, /metrics and the error format of odd requests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.control_plane.conftest import NOW, headers
from tests.control_plane.seed import ADMIN, ALICE, Fleet, add_worker
from wafleet.config import Settings
from wafleet.control_plane.app import create_app
from wafleet.db.engine import Database
from wafleet.db.models import MessageLog, Tenant, WhatsAppSession

ADM = headers(ADMIN)


async def test_admin_tenants_lists_every_field(
    client: httpx.AsyncClient, db: Database, fleet: Fleet
):
    await add_worker(db, "w1", heartbeat=NOW, tenant_ids=[fleet.a_id])
    async with db.session() as s, s.begin():
        ws = await s.get(WhatsAppSession, fleet.b_id)
        assert ws is not None
        ws.last_disconnect_cause, ws.last_disconnect_action = "logged_out", "needs_link"
        ws.state = "LOGGED_OUT"
    items = (await client.get("/admin/tenants", headers=ADM)).json()["items"]
    assert [i["slug"] for i in items] == ["a", "b"]
    a, b = items
    assert set(a) == {
        "slug", "name", "status", "session_state", "phone", "worker_id", "last_seen_at",
        "last_disconnect",
    }  # fmt: skip
    assert (a["session_state"], a["worker_id"], a["last_disconnect"]) == ("CONNECTED", "w1", None)
    assert b["session_state"] == "LOGGED_OUT"
    assert b["worker_id"] is None
    assert b["last_disconnect"]["cause"] == "logged_out"


@pytest.mark.parametrize(
    ("params", "slugs"),
    [
        ({"state": "CONNECTED"}, ["a"]),
        ({"state": "DISCONNECTED"}, ["b"]),
        ({"state": "QR_READY"}, []),
        ({"status": "PAUSED"}, ["b"]),
        ({"status": "ACTIVE"}, ["a"]),
        ({"status": "ACTIVE", "state": "DISCONNECTED"}, []),
    ],
)
async def test_admin_tenants_filters(
    client: httpx.AsyncClient, db: Database, fleet: Fleet, params: dict, slugs: list[str]
):
    await add_worker(db, "w1", heartbeat=NOW, tenant_ids=[fleet.a_id])
    async with db.session() as s, s.begin():
        t = await s.get(Tenant, fleet.b_id)
        assert t is not None
        t.status = "PAUSED"
    items = (await client.get("/admin/tenants", params=params, headers=ADM)).json()["items"]
    assert [i["slug"] for i in items] == slugs


@pytest.mark.parametrize("params", [{"state": "ASLEEP"}, {"status": "connected"}])
async def test_admin_tenants_bad_filter_is_422(client: httpx.AsyncClient, params: dict):
    resp = await client.get("/admin/tenants", params=params, headers=ADM)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"


async def test_admin_workers_counts_leases(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    await add_worker(db, "w1", heartbeat=NOW, tenant_ids=[fleet.a_id, fleet.b_id])
    await add_worker(db, "w0", heartbeat=NOW - timedelta(hours=1), tenant_ids=[], status="STOPPED")
    items = (await client.get("/admin/workers", headers=ADM)).json()["items"]
    assert [(w["id"], w["status"], w["tenants"]) for w in items] == [
        ("w1", "RUNNING", 2),
        ("w0", "STOPPED", 0),
    ]
    assert set(items[0]) == {
        "id", "host", "pid", "status", "started_at", "last_heartbeat_at", "tenants",
    }  # fmt: skip
    assert items[0]["pid"] == 4242
    running = (await client.get("/admin/workers", params={"status": "STOPPED"}, headers=ADM)).json()
    assert [w["id"] for w in running["items"]] == ["w0"]


async def test_healthz_ok(client: httpx.AsyncClient):
    resp = await client.get("/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


async def test_metrics_from_the_database(client: httpx.AsyncClient, db: Database, fleet: Fleet):
    await add_worker(db, "w1", heartbeat=NOW, tenant_ids=[fleet.a_id])
    await add_worker(db, "w2", heartbeat=NOW, tenant_ids=[], status="STALE")
    async with db.session() as s, s.begin():
        ws = await s.get(WhatsAppSession, fleet.b_id)
        assert ws is not None
        ws.reconnect_attempt, ws.reconnect_active = 4, True
        s.add(
            MessageLog(
                tenant_id=fleet.b_id, direction="out", wa_id="p", chat="c", sender="me",
                body="b", status="PENDING", created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(resp.text)
        for s in fam.samples
    }
    assert samples[("wafleet_sessions", (("state", "CONNECTED"),))] == 1
    assert samples[("wafleet_sessions", (("state", "DISCONNECTED"),))] == 1
    assert samples[("wafleet_tenants", (("status", "ACTIVE"),))] == 2
    assert samples[("wafleet_workers", (("status", "RUNNING"),))] == 1
    assert samples[("wafleet_workers", (("status", "STALE"),))] == 1
    assert samples[("wafleet_reconnect_attempts", ())] == 4
    assert samples[("wafleet_sessions_reconnecting", ())] == 1
    assert samples[("wafleet_messages_total", (("direction", "in"),))] == 6
    assert samples[("wafleet_messages_total", (("direction", "out"),))] == 1
    assert samples[("wafleet_outbox_pending", ())] == 1
    # only the RUNNING worker's heartbeat stats are summed
    assert samples[("wafleet_worker_queue_depth", ())] == 2
    assert samples[("wafleet_worker_outbox_backlog", ())] == 1
    assert samples[("wafleet_worker_tenants", ())] == 1
    assert ("wafleet_worker_heartbeat_age_seconds", (("worker", "w2"),)) in samples


async def _broken_app(tmp_path: Path, settings: Settings) -> FastAPI:
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not a database file" * 100)
    return create_app(
        settings.model_copy(update={"database_url": f"sqlite:///{bad}"}), run_jobs=False
    )


@pytest.mark.parametrize(
    ("path", "hdrs"),
    [
        ("/healthz", {}),
        ("/metrics", {}),
        ("/portal/tenant/current/status", headers(ALICE)),
        ("/admin/workers", ADM),
    ],
)
async def test_database_down_is_503_json(
    tmp_path: Path, settings: Settings, path: str, hdrs: dict[str, str]
):
    app = await _broken_app(tmp_path, settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
            resp = await c.get(path, headers=hdrs)
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "database_unavailable"


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient):
    resp = await client.get("/nope")
    assert (resp.status_code, resp.json()["error"]["code"]) == (404, "not_found")
    resp = await client.delete("/portal/tenant/current/status", headers=headers(ALICE))
    assert (resp.status_code, resp.json()["error"]["code"]) == (405, "method_not_allowed")
    assert "GET" in resp.headers["allow"]


async def test_unexpected_error_is_generic_500_json(settings: Settings, fleet: Fleet):
    app = create_app(settings, run_jobs=False)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
            resp = await c.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in resp.text


def test_create_app_refuses_without_portal_key(tmp_path: Path):
    from wafleet.config import load_settings
    from wafleet.errors import ConfigError

    cfg = load_settings(data_dir=tmp_path / "empty")
    with pytest.raises(ConfigError, match="WAFLEET_PORTAL_KEY"):
        create_app(cfg)


def test_openapi_requires_both_headers(settings: Settings):
    schema = create_app(settings, run_jobs=False).openapi()
    op = schema["paths"]["/portal/tenant/current/status"]["get"]
    assert op["security"] == [{"PortalKey": [], "UserEmail": []}]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_undecodable_body_is_422(client: httpx.AsyncClient, fleet: Fleet):
    resp = await client.post(
        "/portal/tenant/current/messages",
        content=b"\xff\xfe\x00garbage",
        headers={**headers(ALICE), "content-type": "application/json"},
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"
