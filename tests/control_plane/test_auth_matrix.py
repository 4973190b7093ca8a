"""Every route x every kind of caller → the right status, and a member of one tenant can
never see anything of another."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.control_plane.conftest import NOW, headers
from tests.control_plane.seed import (
    ADMIN,
    ALICE,
    BOB,
    KEY,
    LONER,
    MULTI,
    SECRET_A,
    SECRET_B,
    UNKNOWN,
    seed_fleet,
)
from wafleet.config import load_settings
from wafleet.control_plane.app import create_app
from wafleet.db.engine import Database

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def module_db_url(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("matrix") / "wafleet.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(module_db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One seeded database and app for the whole matrix (a few hundred requests): the
    writes some routes make never change who may see what."""
    async with Database(module_db_url) as db:
        await seed_fleet(db, NOW)
    cfg = load_settings(database_url=module_db_url, portal_key=KEY)
    app = create_app(cfg, clock=lambda: NOW, run_jobs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
            yield c


PORTAL = "/portal/tenant/current"
# (method, path, json body, success status)
PORTAL_ROUTES: list[tuple[str, str, Any, int]] = [
    ("GET", f"{PORTAL}/status", None, 200),
    ("GET", f"{PORTAL}/qr", None, 200),
    ("GET", f"{PORTAL}/logs", None, 200),
    ("GET", f"{PORTAL}/events", None, 200),
    ("GET", f"{PORTAL}/stats/hourly", None, 200),
    ("GET", f"{PORTAL}/config", None, 200),
    ("PUT", f"{PORTAL}/config", {"rules": [{"match": "any", "reply": "hi"}]}, 200),
    ("POST", f"{PORTAL}/messages", {"to": "+15559999", "text": "hello"}, 202),
    *[("POST", f"{PORTAL}/actions/{a}", None, 202) for a in ("restart", "relink", "logout")],
    *[("POST", f"{PORTAL}/actions/{a}", None, 202) for a in ("pause", "resume")],
    # authorised, then refused on its merits: the session is not waiting for a link
    ("POST", f"{PORTAL}/actions/pair-phone", {"phone": "+15550001"}, 409),
]
ADMIN_ROUTES: list[tuple[str, str, Any, int]] = [
    ("GET", "/admin/tenants", None, 200),
    ("GET", "/admin/workers", None, 200),
]
WRONG_KEY = "w" * 40

# caller → (headers, expected status for tenant a's portal routes, for admin routes);
# None means "the route's success status".
CALLERS: dict[str, tuple[dict[str, str], int | None, int | None]] = {
    "no-key": (headers(ALICE, key=None), 401, 401),
    "wrong-key": (headers(ALICE, key=WRONG_KEY), 401, 401),
    "short-wrong-key": (headers(ALICE, key="x"), 401, 401),
    "no-user": (headers(None), 401, 401),
    "empty-user": (headers(""), 401, 401),
    "unknown-user": (headers(UNKNOWN), 403, 403),
    "member-of-other": (headers(BOB), 403, 403),
    "user-without-tenant": (headers(LONER), 403, 403),
    "member": (headers(ALICE), None, 403),
    "member-upper-case": (headers(ALICE.upper()), None, 403),
    "member-of-both": (headers(MULTI), None, 403),
    "admin": (headers(ADMIN), None, None),
}


async def _call(client: httpx.AsyncClient, method: str, path: str, body: Any, h: dict[str, str]):
    return await client.request(method, path, json=body, headers=h)


def _assert_error_shape(resp: httpx.Response) -> None:
    data = resp.json()
    assert set(data) == {"error"}, data
    assert isinstance(data["error"]["code"], str)
    assert data["error"]["code"]
    assert isinstance(data["error"]["message"], str)
    assert data["error"]["message"]


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("method", "path", "body", "ok"), PORTAL_ROUTES)
async def test_portal_route_matrix(
    client: httpx.AsyncClient, caller: str, method: str, path: str, body: Any, ok: int
) -> None:
    h, expected, _ = CALLERS[caller]
    # everyone asks for tenant a explicitly: members of b must be refused
    resp = await client.request(method, path, params={"tenant": "a"}, json=body, headers=h)
    assert resp.status_code == (expected or ok), resp.text
    if resp.status_code >= 400:
        _assert_error_shape(resp)
    else:
        assert SECRET_B not in resp.text


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("method", "path", "body", "ok"), ADMIN_ROUTES)
async def test_admin_route_matrix(
    client: httpx.AsyncClient, caller: str, method: str, path: str, body: Any, ok: int
) -> None:
    h, _, expected = CALLERS[caller]
    resp = await client.request(method, path, json=body, headers=h)
    assert resp.status_code == (expected or ok), resp.text
    if resp.status_code >= 400:
        _assert_error_shape(resp)
    else:
        assert isinstance(resp.json()["items"], list)
        assert SECRET_A not in resp.text or path == "/admin/tenants"


@pytest.mark.parametrize("caller", ["no-key", "wrong-key", "member"])
@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_open_routes_need_no_auth(client: httpx.AsyncClient, caller: str, path: str) -> None:
    resp = await client.get(path, headers=CALLERS[caller][0])
    assert resp.status_code == 200


@pytest.mark.parametrize(("method", "path", "body", "ok"), PORTAL_ROUTES)
async def test_current_is_the_callers_own_tenant(
    client: httpx.AsyncClient, method: str, path: str, body: Any, ok: int
) -> None:
    """Bob, without ?tenant, gets tenant b — never a byte of tenant a."""
    resp = await client.request(method, path, json=body, headers=headers(BOB))
    assert resp.status_code == ok, resp.text
    assert SECRET_A not in resp.text
    if path.endswith("/status"):
        assert resp.json()["tenant"]["slug"] == "b"
    if path.endswith("/logs"):
        bodies = [i["body"] for i in resp.json()["items"]]
        assert bodies
        assert all(SECRET_B in b for b in bodies)


@pytest.mark.parametrize(
    ("email", "tenant", "status", "code"),
    [
        (MULTI, None, 422, "tenant_required"),
        (MULTI, "a", 200, None),
        (MULTI, "b", 200, None),
        (MULTI, "nope", 403, "not_a_member"),
        (ADMIN, None, 422, "tenant_required"),
        (ADMIN, "b", 200, None),
        (ADMIN, "nope", 404, "tenant_not_found"),
        (ALICE, "nope", 403, "not_a_member"),  # existence is not revealed
        (ALICE, "b", 403, "not_a_member"),
        (ALICE, "", 403, "not_a_member"),
        (LONER, None, 403, "no_tenant"),
        (UNKNOWN, None, 403, "unknown_user"),
    ],
)
async def test_tenant_resolution(
    client: httpx.AsyncClient, email: str, tenant: str | None, status: int, code: str | None
) -> None:
    params = {"tenant": tenant} if tenant is not None else {}
    resp = await client.get(f"{PORTAL}/status", params=params, headers=headers(email))
    assert resp.status_code == status, resp.text
    if code:
        assert resp.json()["error"]["code"] == code
    else:
        assert resp.json()["tenant"]["slug"] == tenant


async def test_bad_input_after_bad_key_is_still_401(client: httpx.AsyncClient) -> None:
    """Authentication is checked before anything about the request is revealed."""
    resp = await client.get(f"{PORTAL}/logs", params={"limit": "x"}, headers=headers(None))
    assert resp.status_code == 401
