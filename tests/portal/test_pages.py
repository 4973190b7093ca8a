"""The portal against a real control plane: login, pages, tenant isolation, CSRF."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.portal.conftest import ADMIN, ALICE, BOB, MULTI, PASSWORD, Stack
from tests.portal.servers import csrf_of, login, page_csrf
from wafleet.db.models import MessageLog, Tenant


def state_text(html: str) -> str:
    m = re.search(r'id="session-state"[^>]*>([^<]*)<', html)
    assert m, "no #session-state element"
    return m.group(1)


def test_login_page_sets_hardened_session_cookie(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        resp = c.get("/login")
    assert resp.status_code == 200
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert 'name="csrf_token"' in resp.text
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    # the cookie is signed with a key derived from the portal key, never the key itself
    assert stack.settings.portal_key not in cookie


def test_pages_require_login_and_api_answers_401(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        page = c.get("/app/status?tenant=alpha")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fapp%2Fstatus%3Ftenant%3Dalpha"
        api = c.get("/api/portal/tenant/current/status")
        assert api.status_code == 401
        assert api.json()["error"]["code"] == "login_required"


def test_wrong_password_is_refused_with_a_clear_message(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        token = csrf_of(c.get("/login").text)
        resp = c.post("/login", data={"email": ALICE, "password": "nope", "csrf_token": token})
    assert resp.status_code == 401
    assert "Wrong email or password." in resp.text


def test_login_then_status_page_shows_the_state(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    resp = client.get("/app/status")
    assert resp.status_code == 200
    assert state_text(resp.text) == "DISCONNECTED"
    assert "Alpha Bakery" in resp.text
    # simulator engine: the page says so and links to the simulator's phone page
    assert 'id="simulator-link" href="http://127.0.0.1:8300/"' in resp.text
    assert '<svg class="chart"' in resp.text


def test_qr_ready_renders_the_qr_image(stack: Stack) -> None:
    now = datetime.now(UTC)
    stack.set_session(
        "alpha",
        state="QR_READY",
        last_qr="2@sim-qr-code,abc",
        last_qr_at=now,
        qr_expires_at=now + timedelta(seconds=60),
    )
    client = login(stack.url, ALICE, PASSWORD)
    html = client.get("/app/status").text
    assert state_text(html) == "QR_READY"
    assert re.search(r'<img id="qr" src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)
    api = client.get("/api/portal/tenant/current/qr").json()
    assert api["qr"] == "2@sim-qr-code,abc"


def test_disconnect_cause_explained_in_plain_words(stack: Stack) -> None:
    now = datetime.now(UTC)
    stack.set_session(
        "alpha",
        state="LOGGED_OUT",
        last_disconnect_cause="logged_out",
        last_disconnect_action="needs_link",
        last_disconnect_at=now,
    )
    html = login(stack.url, ALICE, PASSWORD).get("/app/status").text
    assert state_text(html) == "LOGGED_OUT"
    assert "The account was logged out from the phone" in html
    assert "press Re-link" in html


def test_user_text_is_escaped_everywhere(stack: Stack) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'

    async def add(s: object) -> None:
        from sqlalchemy import select

        tid = (await s.execute(select(Tenant.id).where(Tenant.slug == "alpha"))).scalar_one()  # type: ignore[attr-defined]
        s.add(  # type: ignore[attr-defined]
            MessageLog(
                tenant_id=tid,
                direction="in",
                wa_id="W1",
                chat="+15559999",
                sender=evil,
                body=evil,
                status="RECEIVED",
            )
        )

    stack.db_run(add)
    client = login(stack.url, ALICE, PASSWORD)
    for path in ("/app/logs", "/app/status"):
        html = client.get(path).text
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # a tenant name with markup (bravo is "Bravo <Bikes>") is escaped too
    html = login(stack.url, BOB, PASSWORD).get("/app/status").text
    assert "Bravo &lt;Bikes&gt;" in html


def test_other_tenant_is_forbidden_everywhere(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    for path in ("/app/status", "/app/logs", "/app/settings"):
        resp = client.get(f"{path}?tenant=bravo")
        assert resp.status_code == 403, path
        assert "not a member" in resp.text
    for res in ("status", "qr", "logs", "events", "stream"):
        resp = client.get(f"/api/portal/tenant/current/{res}?tenant=bravo")
        assert resp.status_code == 403, res
        assert resp.json()["error"]["code"] == "not_a_member"
    token = page_csrf(client)
    resp = client.post(
        "/api/portal/tenant/current/actions/restart?tenant=bravo",
        headers={"x-csrf-token": token},
    )
    assert resp.status_code == 403
    assert client.get("/admin").status_code == 403


def test_every_post_without_csrf_is_refused(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    for path in (
        "/api/portal/tenant/current/actions/restart",
        "/app/actions/pause",
        "/app/settings",
        "/logout",
        "/login",
    ):
        resp = client.post(path, data={"document": "{}"})
        assert resp.status_code == 403, path
    wrong = client.post(
        "/api/portal/tenant/current/actions/restart", headers={"x-csrf-token": "forged"}
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "csrf_failed"
    # and nothing happened: the session is still logged in, the tenant not paused
    assert client.get("/api/portal/tenant/current/status").json()["tenant"]["status"] == "ACTIVE"


def test_actions_via_api_and_form(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    token = page_csrf(client)
    resp = client.post("/api/portal/tenant/current/actions/pause", headers={"x-csrf-token": token})
    assert resp.status_code == 202
    assert resp.json()["action"] == "pause"
    assert client.get("/api/portal/tenant/current/status").json()["tenant"]["status"] == "PAUSED"
    form = client.post("/app/actions/resume", data={"csrf_token": token})
    assert form.status_code == 303
    assert form.headers["location"] == "/app/status?tenant=alpha&done=resume"
    assert "Resume requested" in client.get(form.headers["location"]).text
    assert client.get("/api/portal/tenant/current/status").json()["tenant"]["status"] == "ACTIVE"
    bad = client.post("/api/portal/tenant/current/actions/explode", headers={"x-csrf-token": token})
    assert bad.status_code == 404
    assert bad.json()["error"]["code"] == "unknown_action"


def test_user_of_two_tenants_picks_with_query(stack: Stack) -> None:
    client = login(stack.url, MULTI, PASSWORD)
    html = client.get("/app/status").text  # defaults to the first tenant
    assert "Alpha Bakery" in html
    assert 'href="/app/status?tenant=bravo"' in html
    assert "Bravo &lt;Bikes&gt;" in client.get("/app/status?tenant=bravo").text
    api = client.get("/api/portal/tenant/current/status?tenant=bravo")
    assert api.json()["tenant"]["slug"] == "bravo"


def test_logs_page_filters_and_pages(stack: Stack) -> None:
    async def add(s: object) -> None:
        from sqlalchemy import select

        tid = (await s.execute(select(Tenant.id).where(Tenant.slug == "alpha"))).scalar_one()  # type: ignore[attr-defined]
        for i in range(60):
            s.add(  # type: ignore[attr-defined]
                MessageLog(
                    tenant_id=tid,
                    direction="in" if i % 2 else "out",
                    wa_id=f"M{i}",
                    chat="+1555000" + str(i % 3),
                    sender="+1",
                    body=f"message number {i}",
                    status="RECEIVED",
                )
            )

    stack.db_run(add)
    client = login(stack.url, ALICE, PASSWORD)
    first = client.get("/app/logs").text
    assert "message number 59" in first
    assert "message number 9<" not in first
    older = re.search(r'id="older" href="([^"]+)"', first)
    assert older
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert "message number 9<" in second
    assert "message number 59" not in second
    only_in = client.get("/app/logs?direction=in").text
    assert "message number 59" in only_in
    assert "message number 58" not in only_in
    one_chat = client.get("/app/logs?chat=%2B15550001").text
    bodies = re.findall(r"message number (\d+)<", one_chat)
    assert bodies
    assert all(int(b) % 3 == 1 for b in bodies)
    assert client.get("/app/logs?direction=sideways").status_code == 422


def test_settings_save_validate_and_keep_secret(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    page = client.get("/app/settings")
    assert page.status_code == 200
    token = csrf_of(page.text)
    doc = (
        '{"rules": [{"match": "keyword", "pattern": "price", "reply": "Cheap!"}],'
        ' "webhook": {"url": "https://example.org/hook", "secret": "s3cret"}}'
    )
    saved = client.post("/app/settings", data={"csrf_token": token, "document": doc})
    assert saved.status_code == 303
    html = client.get(saved.headers["location"]).text
    assert "Saved." in html
    assert "Cheap!" in html
    assert "s3cret" not in html
    assert "***" in html
    # an invalid rule: 422 and the message names the rule and the field
    bad = '{"rules": [{"match": "regex", "pattern": "(", "reply": "x"}]}'
    resp = client.post("/app/settings", data={"csrf_token": token, "document": bad})
    assert resp.status_code == 422
    assert re.search(r'id="settings-error"[^>]*>rule 1, pattern: invalid regex', resp.text)
    assert "(" in resp.text  # the submitted text is kept in the form
    not_json = client.post("/app/settings", data={"csrf_token": token, "document": "{"})
    assert not_json.status_code == 422
    assert "not valid JSON" in not_json.text
    # saving the masked secret back keeps the stored one (the control plane's rule)
    keep = doc.replace("s3cret", "***")
    assert (
        client.post("/app/settings", data={"csrf_token": token, "document": keep}).status_code
        == 303
    )


def test_admin_fleet_view_and_forbidden_for_others(stack: Stack) -> None:
    stack.set_session("bravo", state="LOGGED_OUT", last_disconnect_cause="logged_out")
    admin = login(stack.url, ADMIN, PASSWORD)
    html = admin.get("/admin").text
    assert 'id="workers"' in html
    assert 'id="tenants"' in html
    attention = html[html.index('id="attention"') : html.index('id="h-tenants"')]
    assert "bravo" in attention
    assert "logged out" in attention
    # bravo (LOGGED_OUT) is listed before alpha in the tenants table
    table = html[html.index('id="tenants"') :]
    assert table.index("bravo") < table.index("alpha")
    # an admin with no tenant lands on a page that says so, and may read any tenant
    assert "not a member of any tenant" in admin.get("/app/status").text
    assert state_text(admin.get("/app/status?tenant=alpha").text) == "DISCONNECTED"
    user = login(stack.url, ALICE, PASSWORD)
    resp = user.get("/admin")
    assert resp.status_code == 403
    assert "administrators only" in resp.text


def test_logout_ends_the_session(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    token = page_csrf(client)
    resp = client.post("/logout", data={"csrf_token": token})
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login"
    assert client.get("/app/status").status_code == 303


def test_login_rate_limited_per_account(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        token = csrf_of(c.get("/login").text)
        codes = [
            c.post(
                "/login", data={"email": BOB, "password": "bad", "csrf_token": token}
            ).status_code
            for _ in range(6)
        ]
        assert codes == [401] * 5 + [429]
        right = c.post("/login", data={"email": BOB, "password": PASSWORD, "csrf_token": token})
        assert right.status_code == 429  # blocked even with the right password
        assert "Too many failed logins" in right.text


def test_open_redirect_after_login_is_refused(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        token = csrf_of(c.get("/login").text)
        resp = c.post(
            "/login",
            data={
                "email": ALICE,
                "password": PASSWORD,
                "csrf_token": token,
                "next": "//evil.example/",
            },
        )
    assert resp.status_code == 303
    assert resp.headers["location"] == "/app/status"


@pytest.mark.parametrize("path", ["/nope", "/api/portal/tenant/current/nope"])
def test_unknown_paths_are_clean_404s(stack: Stack, path: str) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    resp = client.get(path)
    assert resp.status_code == 404
    if path.startswith("/api/"):
        assert resp.json()["error"]["code"] == "not_found"


def test_login_rate_limited_per_address(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as c:
        token = csrf_of(c.get("/login").text)
        codes = [
            c.post(
                "/login", data={"email": f"nobody{i}@x.test", "password": "x", "csrf_token": token}
            ).status_code
            for i in range(6)
        ]
    assert codes == [401] * 5 + [429]


def test_cookie_is_secure_behind_https(stack: Stack) -> None:
    # uvicorn trusts X-Forwarded-Proto from loopback (a local TLS proxy)
    with httpx.Client(base_url=stack.url) as c:
        resp = c.get("/login", headers={"x-forwarded-proto": "https"})
    assert "Secure" in resp.headers["set-cookie"]
