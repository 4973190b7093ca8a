"""Every route of the portal and of the control plane x every kind of caller → the right
status (or redirect), against real servers on loopback. The route lists are read from the
apps themselves: a new route without a case here FAILS `test_*_every_route_has_a_case`.
Every answer is also searched for secrets (portal key, password, password hash, webhook
secret) and for the other tenant's data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

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
)
from tests.hardening.web.conftest import WebStack, portal_login
from tests.portal.servers import csrf_of
from wafleet.portal.auth import SESSION_COOKIE

pytestmark = pytest.mark.slow  # real uvicorn servers

API = "/api/portal/tenant/current"
CP_PORTAL = "/portal/tenant/current"


@dataclass(frozen=True)
class Role:
    email: str | None
    tenant: str | None
    # data of this tenant must never reach this caller
    forbidden: str | None


ROLES: dict[str, Role] = {
    "anonymous": Role(None, None, SECRET_A),
    "anonymous?tenant=a": Role(None, "a", SECRET_A),
    "member": Role(ALICE, None, SECRET_B),
    "member?tenant=a": Role(ALICE, "a", SECRET_B),
    "other-tenant?tenant=a": Role(BOB, "a", SECRET_A),
    "admin-non-member": Role(ADMIN, None, None),
    "admin-non-member?tenant=a": Role(ADMIN, "a", None),
    "two-tenants": Role(MULTI, None, None),
    "two-tenants?tenant=b": Role(MULTI, "b", None),
    "no-tenant": Role(LONER, None, SECRET_A),
    "no-tenant?tenant=a": Role(LONER, "a", SECRET_A),
}

OK_PAGE = {"member", "member?tenant=a", "two-tenants", "two-tenants?tenant=b"}
OK_PAGE |= {"admin-non-member?tenant=a"}
ANON = {"anonymous", "anonymous?tenant=a"}
REFUSED = {"other-tenant?tenant=a", "no-tenant?tenant=a"}
NO_TENANT = {"admin-non-member", "no-tenant"}  # logged in, no tenant of their own


def _page(role: str) -> int | str:
    """A tenant page: 303 to the login for anonymous callers, 403 for another tenant,
    the "no tenant" page for a user without one."""
    if role in ANON:
        return "login"
    if role in REFUSED:
        return 403
    if role in NO_TENANT:
        return "no-tenant-page"
    return 200


def _form_post(role: str, success: int | str) -> int | str:
    if role in ANON:
        return "login"
    if role in REFUSED:
        return 403
    if role in NO_TENANT:
        return 404
    return success


def _api(role: str, ok: int) -> int:
    if role in ANON:
        return 401
    if role in REFUSED or role == "no-tenant":
        return 403
    if role == "admin-non-member":
        return 422  # tenant_required: an admin names the tenant
    return ok


def _stream(role: str) -> int:
    if role in ANON:
        return 401
    if role in REFUSED:
        return 403
    if role in NO_TENANT:
        return 404
    return 200


def _admin_page(role: str) -> int | str:
    if role in ANON:
        return "login"
    return 200 if role.startswith("admin") else 403


# (method, route path) → (request path, expected status per role; "login" = 303 to
# /login, "no-tenant-page" = 200 with the no-tenant page)
PortalCase = tuple[str, Any]
PORTAL_CASES: dict[tuple[str, str], PortalCase] = {
    ("GET", "/"): ("/", lambda r: "login" if r in ANON else 303),
    ("GET", "/login"): ("/login", lambda r: 200),
    ("POST", "/login"): ("/login", lambda r: 401),  # a wrong password, valid CSRF token
    ("POST", "/logout"): ("/logout", lambda r: "login"),
    ("GET", "/logout"): ("/logout", lambda r: "login"),
    ("GET", "/app/status"): ("/app/status", _page),
    ("GET", "/app/logs"): ("/app/logs", _page),
    ("GET", "/app/settings"): ("/app/settings", _page),
    ("POST", "/app/settings"): ("/app/settings", lambda r: _form_post(r, 303)),
    ("POST", "/app/actions/{action}"): ("/app/actions/restart", lambda r: _form_post(r, 303)),
    ("GET", "/admin"): ("/admin", _admin_page),
    ("GET", f"{API}/status"): (f"{API}/status", lambda r: _api(r, 200)),
    ("GET", f"{API}/qr"): (f"{API}/qr", lambda r: _api(r, 200)),
    ("GET", f"{API}/logs"): (f"{API}/logs", lambda r: _api(r, 200)),
    ("GET", f"{API}/events"): (f"{API}/events", lambda r: _api(r, 200)),
    ("POST", f"{API}/actions/{{action}}"): (f"{API}/actions/restart", lambda r: _api(r, 202)),
    ("GET", f"{API}/stream"): (f"{API}/stream", _stream),
    ("GET", "/static"): ("/static/portal.css", lambda r: 200),
}

SETTINGS_DOC = json.dumps({"rules": [{"match": "any", "reply": "matrix {text}"}]})


def app_routes(router: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every route, walking included routers (FastAPI keeps them as
    nested router objects); anything unknown shows up as ("?", ...) and fails."""
    found: list[tuple[str, str]] = []
    for route in getattr(router, "routes", ()):
        nested = getattr(route, "original_router", None)
        if nested is not None:
            ctx = getattr(route, "include_context", None)
            found += app_routes(nested, prefix + str(getattr(ctx, "prefix", "") or ""))
        elif isinstance(route, Mount):
            found.append(("GET", prefix + route.path))
        elif isinstance(route, APIRoute) or hasattr(route, "methods"):
            found += [(m, prefix + route.path) for m in sorted(route.methods - {"HEAD"})]
        else:
            found.append(("?", repr(route)))
    return found


def portal_routes(app: Any) -> set[tuple[str, str]]:
    return set(app_routes(app.router))


@dataclass
class Session:
    cookie: str | None
    csrf: str


@pytest.fixture(scope="module")
def sessions(web_stack: WebStack) -> dict[str, Session]:
    out: dict[str, Session] = {}
    for name, role in ROLES.items():
        if role.email is None:
            with httpx.Client(base_url=web_stack.portal_url) as c:
                token = csrf_of(c.get("/login").text)  # an anonymous session (CSRF only)
                out[name] = Session(c.cookies.get(SESSION_COOKIE), token)
            continue
        c = portal_login(web_stack.portal_url, role.email)
        token = csrf_of(c.get("/login").text)
        out[name] = Session(c.cookies.get(SESSION_COOKIE), token)
        c.close()
    return out


def test_portal_every_route_has_a_case(web_stack: WebStack) -> None:
    assert portal_routes(web_stack.portal_app) == set(PORTAL_CASES)


def _portal_request(
    stack: WebStack, session: Session, method: str, path: str, role: Role
) -> tuple[int, dict[str, str], str]:
    params = {"tenant": role.tenant} if role.tenant else {}
    cookies = {SESSION_COOKIE: session.cookie} if session.cookie else {}
    data: dict[str, str] | None = None
    headers: dict[str, str] = {}
    if method == "POST":
        if path.startswith("/api/"):
            headers["x-csrf-token"] = session.csrf
        else:
            data = {"csrf_token": session.csrf}
            if path == "/login":
                data |= {"email": role.email or "nobody@x.test", "password": "wrong-password"}
            if path == "/app/settings":
                data["document"] = SETTINGS_DOC
    with httpx.Client(base_url=stack.portal_url, cookies=cookies, timeout=15) as c:
        if path.endswith("/stream"):
            with c.stream("GET", path, params=params) as resp:
                first = b""
                if resp.status_code == 200:
                    for chunk in resp.iter_raw():  # the retry line and the first status
                        first += chunk
                        if b"event: status" in first:
                            break
                else:
                    first = resp.read()
                return resp.status_code, dict(resp.headers), first.decode(errors="replace")
        resp = c.request(method, path, params=params, data=data, headers=headers)
        return resp.status_code, dict(resp.headers), resp.text


@pytest.mark.parametrize("role_name", list(ROLES))
@pytest.mark.parametrize("route", list(PORTAL_CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_portal_route_x_role(
    web_stack: WebStack,
    sessions: dict[str, Session],
    route: tuple[str, str],
    role_name: str,
) -> None:
    method, _ = route
    path, expect = PORTAL_CASES[route]
    role = ROLES[role_name]
    status, headers, body = _portal_request(web_stack, sessions[role_name], method, path, role)
    want = expect(role_name)
    if want == "login":
        assert status == 303, (status, body[:300])
        assert headers["location"].startswith("/login"), headers["location"]
    elif want == "no-tenant-page":
        assert status == 200, body[:300]
        assert "No WhatsApp account yet" in body
    else:
        assert status == want, (status, body[:300])
    assert status < 500
    if path.startswith("/api/") and status >= 400:
        err = json.loads(body)["error"]
        assert err["code"]
        assert err["message"]
    for what, secret in web_stack.secrets().items():
        assert secret not in body, f"{what} in the answer"
        assert all(secret not in v for v in headers.values()), f"{what} in a header"
    if role.forbidden:
        assert role.forbidden not in body, "another tenant's data in the answer"


# ---------------------------------------------------------------- control plane

CP_OPEN = {"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
CP_BODIES: dict[tuple[str, str], Any] = {
    ("PUT", f"{CP_PORTAL}/config"): {"rules": [{"match": "any", "reply": "matrix"}]},
    ("POST", f"{CP_PORTAL}/messages"): {"to": "+15559999", "text": "matrix"},
    ("POST", f"{CP_PORTAL}/actions/pair-phone"): {"phone": "+15550001"},
}
CP_SUCCESS = {
    ("PUT", f"{CP_PORTAL}/config"): 200,
    ("POST", f"{CP_PORTAL}/messages"): 202,
    # authorised, then refused on its merits: no session is waiting for a link here
    ("POST", f"{CP_PORTAL}/actions/pair-phone"): 409,
}
WRONG_KEY = "w" * 40

# caller → (x-portal-key, x-user-email, ?tenant, forbidden data)
CP_CALLERS: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    "no-key": (None, ALICE, "a", None),
    "wrong-key": (WRONG_KEY, ALICE, "a", None),
    "no-user": (KEY, None, "a", None),
    "unknown-user": (KEY, UNKNOWN, "a", None),
    "member": (KEY, ALICE, None, SECRET_B),
    "other-tenant?tenant=a": (KEY, BOB, "a", SECRET_A),
    "admin-non-member": (KEY, ADMIN, None, None),
    "admin-non-member?tenant=a": (KEY, ADMIN, "a", None),
    "two-tenants": (KEY, MULTI, None, None),
    "two-tenants?tenant=b": (KEY, MULTI, "b", SECRET_A),
    "no-tenant": (KEY, LONER, None, SECRET_A),
}


def cp_routes(app: Any) -> list[tuple[str, str]]:
    return app_routes(app.router)


def _cp_expected(method: str, path: str, caller: str) -> int:
    if path in CP_OPEN:
        return 200
    if caller in ("no-key", "wrong-key", "no-user"):
        return 401
    if caller == "unknown-user":
        return 403
    if path.startswith("/admin/"):
        return 200 if caller.startswith("admin") else 403
    if caller in ("other-tenant?tenant=a", "no-tenant"):
        return 403
    if caller in ("admin-non-member", "two-tenants"):
        return 422  # tenant_required
    return CP_SUCCESS.get((method, path), 202 if method == "POST" else 200)


def _cp_cases(app: Any) -> list[tuple[str, str, str]]:
    return [(m, p, c) for m, p in cp_routes(app) for c in CP_CALLERS]


def test_cp_every_route_has_a_case(web_stack: WebStack) -> None:
    known = {
        "/healthz",
        "/metrics",
        *[r for r in CP_OPEN],
        *[
            f"{CP_PORTAL}/{x}"
            for x in ("status", "qr", "logs", "events", "stats/hourly", "config", "messages")
        ],
        f"{CP_PORTAL}/actions/{{action}}",
        f"{CP_PORTAL}/actions/pair-phone",
        "/admin/tenants",
        "/admin/workers",
    }
    routes = cp_routes(web_stack.cp_app)
    assert {p for _, p in routes} <= known, "a new control-plane route needs a case here"
    bodies_needed = {(m, p) for m, p in routes if m in ("POST", "PUT", "PATCH")}
    bodies_needed -= {("POST", f"{CP_PORTAL}/actions/{{action}}")}
    assert bodies_needed <= set(CP_BODIES), bodies_needed


@pytest.fixture(scope="module")
def cp_client(web_stack: WebStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web_stack.cp_url, timeout=15) as c:
        yield c


def test_cp_route_x_caller(web_stack: WebStack, cp_client: httpx.Client) -> None:
    """One test over the whole product (routes x callers), so the count is printed once."""
    checked = 0
    failures: list[str] = []
    for method, path, caller in _cp_cases(web_stack.cp_app):
        key, email, tenant, forbidden = CP_CALLERS[caller]
        headers = {k: v for k, v in (("x-portal-key", key), ("x-user-email", email)) if v}
        url = path.replace("{action}", "restart")
        params = {"tenant": tenant} if tenant else {}
        resp = cp_client.request(
            method, url, params=params, headers=headers, json=CP_BODIES.get((method, path))
        )
        want = _cp_expected(method, path, caller)
        checked += 1
        if resp.status_code != want:
            failures.append(f"{method} {path} as {caller}: {resp.status_code} != {want}")
        if resp.status_code >= 400 and "json" in resp.headers.get("content-type", ""):
            err = resp.json()["error"]
            assert err["code"] and err["message"]
        for what, secret in web_stack.secrets().items():
            if secret in resp.text:
                failures.append(f"{method} {path} as {caller}: {what} in the answer")
        if forbidden and path not in CP_OPEN and forbidden in resp.text:
            failures.append(f"{method} {path} as {caller}: other tenant's data")
    print(f"[web-hardening] control plane routes x callers checked: {checked}")
    assert not failures, "\n".join(failures)
    assert checked == len(cp_routes(web_stack.cp_app)) * len(CP_CALLERS)


def test_matrix_size_is_reported(web_stack: WebStack) -> None:
    portal = len(PORTAL_CASES) * len(ROLES)
    cp = len(cp_routes(web_stack.cp_app)) * len(CP_CALLERS)
    print(f"[web-hardening] routes x roles: portal {portal}, control plane {cp}")
    assert portal > 0
    assert cp > 0
