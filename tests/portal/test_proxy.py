"""Unit-level tests of the proxy's error mapping, against a small fake control plane
(a real FastAPI app on loopback serving the contract's JSON, with answers a real control
plane only gives when something is wrong)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tests.portal.conftest import ALICE, KEY, PASSWORD
from tests.portal.servers import login, serving
from tests.support.procs import free_port
from wafleet.portal.cp_client import ControlPlaneClient, ControlPlaneUnavailable

STATUS = {
    "tenant": {"slug": "alpha", "name": "Alpha", "status": "ACTIVE", "error_message": None},
    "session": {
        "state": "CONNECTED",
        "phone": "+1555",
        "last_seen_at": None,
        "connected_since": None,
        "last_qr_at": None,
    },
    "worker": None,
    "reconnect": {"active": False, "attempt": 0, "max_attempts": 20, "next_retry_at": None},
    "last_disconnect": None,
    "messages": {"in_24h": 0, "out_24h": 0, "pending_out": 0},
}


@dataclass
class FakeCP:
    answers: dict[str, Response] = field(default_factory=dict)
    seen: list[dict[str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT"])
        async def anything(request: Request, path: str) -> Response:
            self.seen.append(
                {
                    "path": "/" + path,
                    "key": request.headers.get("x-portal-key", ""),
                    "user": request.headers.get("x-user-email", ""),
                    "tenant": request.query_params.get("tenant", ""),
                }
            )
            self.queries.append(f"/{path}?{request.url.query}")
            answer = self.answers.get("/" + path)
            if answer is not None:
                return answer
            if path.endswith("status"):
                return JSONResponse(STATUS)
            return JSONResponse({"error": {"code": "not_found", "message": "no"}}, 404)

        return app


@pytest.fixture
def fake(make_settings: Any) -> Iterator[tuple[FakeCP, str]]:
    from wafleet.portal.app import create_app

    cp = FakeCP()
    with serving(cp.app()) as cp_srv:
        app = create_app(make_settings(control_plane_url=cp_srv.url))
        with serving(app) as portal:
            yield cp, portal.url


def test_calls_carry_the_portal_key_and_the_user(fake: tuple[FakeCP, str]) -> None:
    cp, url = fake
    client = login(url, ALICE, PASSWORD)
    assert client.get("/api/portal/tenant/current/status").json() == STATUS
    call = cp.seen[-1]
    assert call == {
        "path": "/portal/tenant/current/status",
        "key": KEY,
        "user": ALICE,
        "tenant": "alpha",
    }


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (
            JSONResponse({"error": {"code": "tenant_busy", "message": "busy"}}, 409),
            409,
            "tenant_busy",
        ),
        (
            JSONResponse({"error": {"code": "unauthorized", "message": "bad key"}}, 401),
            502,
            "control_plane_auth",
        ),
        (PlainTextResponse("Internal Server Error", 500), 502, "control_plane_error"),
        (PlainTextResponse("not json at all", 200), 502, "control_plane_error"),
    ],
)
def test_control_plane_errors_are_mapped(
    fake: tuple[FakeCP, str], answer: Response, status: int, code: str
) -> None:
    cp, url = fake
    client = login(url, ALICE, PASSWORD)
    cp.answers["/portal/tenant/current/status"] = answer
    resp = client.get("/api/portal/tenant/current/status")
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    page = client.get("/app/status")
    assert page.status_code == status
    assert "<html" in page.text  # pages get an HTML error page, never a trace


def test_hourly_stats_route_feeds_the_chart_when_present(fake: tuple[FakeCP, str]) -> None:
    cp, url = fake
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    cp.answers["/portal/tenant/current/stats/hourly"] = JSONResponse(
        {"hours": [{"hour": hour.isoformat(), "in": 12, "out": 5}]}
    )
    html = login(url, ALICE, PASSWORD).get("/app/status").text
    assert "Messages in the last 24 hours: 12 in, 5 out" in html
    # no paging through the logs for the chart when the route answers
    assert not [q for q in cp.queries if "/logs?" in q and "limit=100" in q]


def test_control_plane_down_is_503(make_settings: Any) -> None:
    from wafleet.portal.app import create_app

    dead = f"http://127.0.0.1:{free_port()}"
    with serving(create_app(make_settings(control_plane_url=dead))) as portal:
        client = login(portal.url, ALICE, PASSWORD)
        api = client.get("/api/portal/tenant/current/status")
        assert api.status_code == 503
        assert api.json()["error"]["code"] == "control_plane_unavailable"
        page = client.get("/app/status")
        assert page.status_code == 503
        assert "Temporarily unavailable" in page.text
        token = client.cookies  # the session is intact: the problem is not the user's
        assert token


def test_client_timeout_is_unavailable() -> None:
    async def go() -> None:
        slow = FastAPI()

        @slow.get("/x")
        async def x() -> dict[str, str]:
            await asyncio.sleep(1)
            return {}

        with serving(slow) as srv:
            client = ControlPlaneClient(srv.url, KEY, timeout=0.2)
            try:
                with pytest.raises(ControlPlaneUnavailable, match="did not answer in time"):
                    await client.get("/x", user="a@x.test")
            finally:
                await client.aclose()

    asyncio.run(go())
