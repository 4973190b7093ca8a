"""Authentication details: CSRF on every POST route the portal has (enumerated from the
app), the session cookie's flags, login throttling, and the control plane's key check
(constant-time by construction, and the same 401 for a wrong key of any length)."""

from __future__ import annotations

import inspect
import json

import httpx
import pytest

from tests.control_plane.seed import ALICE, BOB, KEY, PASSWORD
from tests.hardening.web.conftest import WebStack, portal_login
from tests.hardening.web.test_access_matrix import app_routes
from tests.portal.servers import csrf_of
from wafleet.config import load_settings
from wafleet.portal.auth import SESSION_COOKIE
from wafleet.portal.ratelimit import LoginLimiter

pytestmark = pytest.mark.slow  # real uvicorn servers

API = "/api/portal/tenant/current"


def _post_paths(stack: WebStack) -> list[str]:
    paths = [p for m, p in app_routes(stack.portal_app.router) if m == "POST"]
    return [p.replace("{action}", "restart") for p in paths]


def test_every_post_route_requires_the_csrf_token(web_stack: WebStack) -> None:
    alice = portal_login(web_stack.portal_url, ALICE)
    bob = portal_login(web_stack.portal_url, BOB)
    bob_token = csrf_of(bob.get("/login").text)
    own_token = csrf_of(alice.get("/login").text)
    paths = _post_paths(web_stack)
    assert len(paths) >= 5  # login, logout, settings, form action, API action
    for path in paths:
        attempts = {
            "no token": ({}, {}),
            "wrong token": ({"csrf_token": "x" * 43}, {"x-csrf-token": "x" * 43}),
            "another session's token": ({"csrf_token": bob_token}, {"x-csrf-token": bob_token}),
            "empty token": ({"csrf_token": ""}, {"x-csrf-token": ""}),
        }
        for why, (form, headers) in attempts.items():
            resp = alice.post(path, data=form, headers=headers)
            assert resp.status_code == 403, (path, why, resp.status_code)
            assert "csrf" in resp.text.lower(), (path, why)
        # the token in the query string is not accepted either
        resp = alice.post(path, params={"csrf_token": own_token})
        assert resp.status_code == 403, path
    # the session survived all that, and its own token works
    ok = alice.post(f"{API}/actions/restart", headers={"x-csrf-token": own_token})
    assert ok.status_code == 202
    alice.close()
    bob.close()


def test_session_cookie_flags(web_stack: WebStack) -> None:
    with httpx.Client(base_url=web_stack.portal_url) as c:
        token = csrf_of(c.get("/login").text)
        resp = c.post("/login", data={"email": ALICE, "password": PASSWORD, "csrf_token": token})
        assert resp.status_code == 303
        cookie = resp.headers["set-cookie"]
    # uvicorn trusts x-forwarded-proto from 127.0.0.1 only (its default
    # forwarded_allow_ips), i.e. from a reverse proxy on the same host
    with httpx.Client(base_url=web_stack.portal_url) as fresh:
        https = fresh.get("/login", headers={"x-forwarded-proto": "https"})
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0].startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in parts
    assert "SameSite=Lax" in parts
    assert "Path=/" in parts
    assert "Secure" not in parts  # plain http: the browser would drop a Secure cookie
    assert "Secure" in https.headers["set-cookie"]
    for secret in web_stack.secrets().values():
        assert secret not in cookie


def test_security_headers_on_pages(web_stack: WebStack) -> None:
    with httpx.Client(base_url=web_stack.portal_url) as c:
        resp = c.get("/login")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"


@pytest.mark.asyncio
async def test_injected_login_limiter_is_used(web_stack: WebStack) -> None:
    """Regression: `create_app(limiter=...)` used `limiter or LoginLimiter()`, and an empty
    LoginLimiter is falsy (it has __len__), so the injected one was silently replaced."""
    from wafleet.portal.app import create_app, portal_context

    mine = LoginLimiter(max_failures=2)
    app = create_app(web_stack.settings, limiter=mine)
    assert portal_context(app).limiter is mine


@pytest.mark.asyncio
async def test_login_throttled_per_account_and_address(web_stack: WebStack) -> None:
    from wafleet.portal.app import create_app

    limiter = LoginLimiter(max_failures=5, window_s=300)
    app = create_app(web_stack.settings, limiter=limiter)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal") as c:
            token = csrf_of((await c.get("/login")).text)

            async def login(email: str, password: str) -> int:
                form = {"email": email, "password": password, "csrf_token": token}
                return (await c.post("/login", data=form)).status_code

            assert [await login(ALICE, "wrong") for _ in range(5)] == [401] * 5
            assert await login(ALICE, PASSWORD) == 429  # even the right password now
            assert await login(BOB, PASSWORD) == 429  # the address is throttled too
    # another address may still log in to another account
    transport2 = httpx.ASGITransport(app=app, client=("10.9.9.10", 5555))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport2, base_url="http://portal") as c2:
            token2 = csrf_of((await c2.get("/login")).text)
            form = {"email": BOB, "password": PASSWORD, "csrf_token": token2}
            assert (await c2.post("/login", data=form)).status_code == 303


def test_key_check_goes_through_constant_time_equals() -> None:
    """By inspection: the control plane compares the key with
    `wafleet.security.constant_time_equals`, which is `hmac.compare_digest`; so do the
    portal's CSRF check. No `==` on a secret anywhere in those functions."""
    import wafleet.security as security
    from wafleet.control_plane import deps
    from wafleet.portal import csrf

    assert deps.constant_time_equals is security.constant_time_equals
    assert csrf.constant_time_equals is security.constant_time_equals
    src = inspect.getsource(deps.require_caller)
    assert "constant_time_equals(key" in src
    assert "== expected" not in src and "expected ==" not in src
    assert "hmac.compare_digest(" in inspect.getsource(security.constant_time_equals)
    assert "constant_time_equals(" in inspect.getsource(csrf.check_csrf)


@pytest.mark.asyncio
async def test_key_check_calls_the_constant_time_function(
    monkeypatch: pytest.MonkeyPatch, web_stack: WebStack
) -> None:
    """Behaviour, not only source: every request's key goes through the function."""
    from wafleet.control_plane import deps
    from wafleet.control_plane.app import create_app

    seen: list[tuple[str | None, str | None]] = []
    real = deps.constant_time_equals

    def recording(a: str | None, b: str | None) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps, "constant_time_equals", recording)
    cfg = load_settings(database_url=web_stack.settings.database_url, portal_key=KEY)
    app = create_app(cfg, run_jobs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
            h = {"x-portal-key": "nope", "x-user-email": ALICE}
            assert (await c.get("/admin/workers", headers=h)).status_code == 401
    assert seen == [("nope", KEY)]


def test_wrong_keys_of_every_length_get_the_same_401(web_stack: WebStack) -> None:
    wrong: list[str | bytes] = [("w" * n) for n in range(0, 81)]
    wrong.append("é".encode() * 20)  # non-ASCII bytes on the wire
    wrong += [KEY[:-1], KEY + "k", KEY[:-1] + "K", KEY.upper(), "k k"]
    wrong += [KEY[:i] + "x" + KEY[i + 1 :] for i in range(0, len(KEY), 7)]
    answers: set[tuple[int, str]] = set()
    with httpx.Client(base_url=web_stack.cp_url, timeout=10) as c:
        for key in wrong:
            headers: dict[str, str | bytes] = {"x-user-email": ALICE}
            if key:
                headers["x-portal-key"] = key
            resp = c.get("/portal/tenant/current/status", headers=headers)
            answers.add((resp.status_code, json.dumps(resp.json(), sort_keys=True)))
    print(f"[web-hardening] wrong portal keys tried: {len(wrong)}")
    assert len(answers) == 1, answers
    status, body = answers.pop()
    assert status == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"
