"""Hostile content in Chromium against a real `wafleet up --simulator` (LOG_LEVEL=DEBUG):
HTML/JavaScript/template payloads as a tenant name, contact ids (chats), message texts,
rule replies, a webhook URL, and (written straight into the database) a phone, an error
message, a disconnect detail and a timeline event. Every portal page — status (also the
live SSE updates), logs, settings, admin fleet view — must show them as TEXT: no dialog,
no `window.__pwned`, no element with an `on*` attribute or a `javascript:` link.

The same stack checks Unicode round trips (simulator inbound → database → control-plane
logs JSON → page, and the bot's echo back at the simulator), that no secret reaches a log
file, stdout or an API answer, and the modes of the credential files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.support.browser import chromium, require_chromium, wafleet_up
from tests.support.procs import WAFLEET, Proc, base_env, wait_until
from wafleet.db.engine import Database
from wafleet.db.models import ConnectionEvent, Tenant, User, WhatsAppSession

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WAIT_MS = 30_000
PASSWORD = "hostile-pw-" + secrets.token_hex(8)
ALICE, ADMIN = "alice@evil.test", "ops@evil.test"
PHONE = "+15550042"
WEBHOOK_SECRET = "whsec-" + secrets.token_hex(16)

# Each payload tries to run `window.__pwned = N` (or a dialog); each is unique text.
PAYLOADS = [
    '<img src=x onerror="window.__pwned=1;alert(1)">',
    "</script><script>window.__pwned=2;alert(2)</script>",
    '"><svg onload="window.__pwned=3;alert(3)">',
    '\'><iframe src="javascript:window.parent.__pwned=4"></iframe>',
    '<a href="javascript:window.__pwned=5">click me</a>',
    "{{7*7}} {% if 1 %}tmpl{% endif %} ${7*7} #{7*7} <%= 7*7 %>",
    "<style>body{display:none}</style><b onmouseover=alert(6)>bold</b>",
    "javascript:alert(7)",
]
NAME = '<img src=x onerror="window.__pwned=10">Evil & Co'
CHATS = ['<svg onload="window.__pwned=11">', "javascript:alert(12)", '"><b>{{7*7}}</b>']
RULE_REPLY = '<img src=x onerror="window.__pwned=13"> {{7*7}} reply to {text}'
HOOK_URL = "https://example.org/hook?q=<script>window.__pwned=14</script>&x=\"'>"
GHOST = {
    "phone": '<b onclick="window.__pwned=15">',
    "error": '<img src=x onerror="window.__pwned=16">ERR',
    "detail": '"><script>window.__pwned=17</script>DETAIL',
    "event": "<svg/onload=window.__pwned=18>EVENT {{7*7}}",
}
UNICODE = {
    "emoji": "👍🏽 ok 🎉 👨\u200d👩\u200d👧",
    "arabic": "مرحبا بالعالم",
    "hebrew": "שלום עולם",
    "zwj-zwnj": "a\u200db\u200cc\u200bd",
    "combining": "e\u0301 Z\u0324\u0354\u0367",
    "whitespace-only": "   ",
}


@dataclass
class Up:
    portal: str
    sim: str
    data: Path
    proc: Proc
    env: dict[str, str]
    key: str
    responses: list[tuple[str, str]] = field(default_factory=list)


def cli(env: dict[str, str], *args: str) -> None:
    res = subprocess.run([*WAFLEET, *args], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


async def _poison_ghost(url: str) -> None:
    """Payloads where no API lets them in: a phone, an error, a disconnect, an event."""
    from datetime import UTC, datetime

    async with Database(url) as db, db.session() as s, s.begin():
        tenant = (await s.execute(select(Tenant).where(Tenant.slug == "ghost"))).scalar_one()
        tenant.error_message = GHOST["error"]
        tenant.status = "ERROR"
        ws = await s.get(WhatsAppSession, tenant.id)
        assert ws is not None
        ws.phone = GHOST["phone"]
        ws.last_disconnect_cause = "banned"
        ws.last_disconnect_action = "needs_operator"
        ws.last_disconnect_at = datetime.now(UTC)
        ws.last_disconnect_detail = GHOST["detail"]
        s.add(
            ConnectionEvent(
                tenant_id=tenant.id, at=datetime.now(UTC), kind="transition", detail=GHOST["event"]
            )
        )


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    require_chromium()
    data = tmp_path_factory.mktemp("hostile-up")
    env = base_env(data, WAFLEET_LOG_LEVEL="DEBUG")
    # No WAFLEET_PORTAL_KEY: `up` generates data/portal.key (its mode is checked below).
    env.pop("WAFLEET_PORTAL_KEY")
    cli(env, "migrate")
    cli(env, "user", "create", ALICE, "--password", PASSWORD)
    cli(env, "user", "create", ADMIN, "--password", PASSWORD, "--admin")
    cli(env, "tenant", "create", "evil", "--name", NAME, "--owner", ALICE)
    cli(env, "tenant", "create", "ghost", "--name", "Ghost <b>Bold</b>", "--owner", ADMIN)
    rules = {
        "rules": [
            {"match": "keyword", "pattern": "ping", "reply": RULE_REPLY},
            {"match": "regex", "pattern": "(a+)+$", "reply": "regex {text}"},
            {"match": "any", "reply": "You said: {text}"},
        ],
        "webhook": {"url": HOOK_URL, "secret": WEBHOOK_SECRET},
    }
    rules_file = data / "rules.json"
    rules_file.write_text(json.dumps(rules))
    cli(env, "tenant", "configure", "evil", "--rules", str(rules_file))
    rules_file.unlink()
    cli(env, "tenant", "pause", "ghost")  # no worker touches its poisoned rows
    asyncio.run(_poison_ghost(f"sqlite:///{data / 'wafleet.db'}"))
    with wafleet_up(env, data) as stack:
        key = (data / "portal.key").read_text().strip()
        yield Up(stack.portal, stack.sim, data, stack.proc, env, key)


@pytest.fixture(scope="module")
def browser(up: Up) -> Iterator[Any]:
    with chromium() as b:
        yield b


class Trap:
    """A page with a `window.__pwned` trap, a dialog recorder, and a JSON-answer log."""

    def __init__(self, browser: Any, up: Up, email: str) -> None:
        self.dialogs: list[str] = []
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.context.add_init_script("window.__pwned = 0;")
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.page.on("dialog", self._dialog)
        self.page.goto(f"{up.portal}/login")
        self.page.fill("#email", email)
        self.page.fill("#password", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state("domcontentloaded")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_harmless(self) -> None:
        page = self.page
        assert self.dialogs == []
        assert page.evaluate("window.__pwned") == 0
        bad = page.evaluate(
            """() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
                 .filter(a => a.name.startsWith('on')
                              || /^\\s*javascript:/i.test(a.value))
                 .map(a => e.tagName + ' ' + a.name + '=' + a.value))"""
        )
        assert bad == []
        assert page.locator("img[src=x], svg[onload], iframe, script:not([src])").count() == 0

    def text(self) -> str:
        return str(self.page.evaluate("document.body.textContent"))


def _inbound(up: Up, sender: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{up.sim}/sim/inbound", json={"phone": PHONE, "from": sender, "text": text}, timeout=10
    )


def _outbound(up: Up) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = httpx.get(
        f"{up.sim}/sim/outbound", params={"phone": PHONE}, timeout=10
    ).json()
    return out


def _link(trap: Trap, up: Up) -> None:
    from playwright.sync_api import expect

    page = trap.page
    expect(page.locator("#session-state")).to_have_text("QR_READY")

    def scanned() -> bool:
        qr = page.request.get(f"{up.portal}/api/portal/tenant/current/qr").json()["qr"]
        r = httpx.post(f"{up.sim}/sim/scan", json={"qr": qr, "phone": PHONE}, timeout=10)
        return r.status_code == 200

    wait_until(scanned, timeout=30, interval=0.5, what="a successful scan")
    expect(page.locator("#session-state")).to_have_text("CONNECTED")


def test_hostile_text_is_inert_on_every_page(browser: Any, up: Up) -> None:
    from playwright.sync_api import expect

    alice = Trap(browser, up, ALICE)
    page = alice.page
    assert page.url.endswith("/app/status")
    expect(page.locator("#tenant-name")).to_have_text(NAME)
    _link(alice, up)
    page.evaluate("window.__sameDocument = true")

    # every payload as a message text, from hostile contact ids, arriving live (SSE)
    sent = 0
    for i, text in enumerate([*PAYLOADS, "ping " + PAYLOADS[0]]):
        assert _inbound(up, CHATS[i % len(CHATS)], text).status_code == 200
        sent += 1
    last = "ping " + PAYLOADS[0]
    expect(page.locator("#recent-logs")).to_contain_text(last)
    reply = RULE_REPLY.replace("{text}", last)
    wait_until(lambda: any(m["text"] == reply for m in _outbound(up)), what="the rule's reply")
    expect(page.locator("#recent-logs")).to_contain_text(reply)  # the bot's reply, live
    assert page.evaluate("window.__sameDocument === true")  # no reload: these came by SSE
    alice.assert_harmless()
    page.screenshot(path=str(up.data / "hostile-status.png"), full_page=True)

    # the logs page: every text and every chat id, literally
    page.goto(f"{up.portal}/app/logs")
    body = alice.text()
    for text in PAYLOADS:
        assert text in body, text
        assert f"You said: {text}" in body
    for chat in CHATS:
        assert chat in body, chat
    assert "49" not in body  # no template was evaluated
    alice.assert_harmless()

    # the settings page: the reply and the webhook URL in the document, the secret masked
    page.goto(f"{up.portal}/app/settings")
    document = page.locator("textarea").first.input_value()
    doc = json.loads(document)
    assert doc["rules"][0]["reply"] == RULE_REPLY
    assert doc["webhook"]["url"] == HOOK_URL
    assert doc["webhook"]["secret"] == "***"
    assert WEBHOOK_SECRET not in page.content()
    alice.assert_harmless()
    alice.context.close()
    print(
        f"[web-hardening] hostile payloads: {len(PAYLOADS)} texts, {len(CHATS)} chat ids, "
        f"{sent} messages, plus name, reply, webhook URL and 4 database fields"
    )


def test_admin_fleet_view_and_poisoned_tenant_are_inert(browser: Any, up: Up) -> None:
    from playwright.sync_api import expect

    admin = Trap(browser, up, ADMIN)
    page = admin.page
    page.goto(f"{up.portal}/admin")
    expect(page.locator("#tenants")).to_contain_text("ghost")
    body = admin.text()
    assert NAME in body
    assert GHOST["phone"] in body
    assert "Ghost <b>Bold</b>" in body
    admin.assert_harmless()

    page.goto(f"{up.portal}/app/status?tenant=ghost")
    expect(page.locator("#phone")).to_have_text(GHOST["phone"])
    expect(page.locator("#tenant-error")).to_have_text(GHOST["error"])
    expect(page.locator("#disconnect-detail")).to_have_text(GHOST["detail"])
    expect(page.locator("#timeline")).to_contain_text(GHOST["event"])
    page.wait_for_timeout(1500)  # let the live stream repaint the same fields once
    expect(page.locator("#phone")).to_have_text(GHOST["phone"])
    admin.assert_harmless()
    page.goto(f"{up.portal}/app/logs?tenant=evil")
    assert PAYLOADS[1] in admin.text()
    admin.assert_harmless()
    admin.context.close()


def test_unicode_round_trips_through_the_whole_stack(browser: Any, up: Up) -> None:
    """Simulator inbound → database → control plane logs JSON → page, and the echo reply
    back at the simulator: byte-identical. An empty text is refused by the simulator
    (422, as WhatsApp has no empty messages)."""
    from playwright.sync_api import expect

    alice = Trap(browser, up, ALICE)
    page = alice.page
    expect(page.locator("#session-state")).to_have_text("CONNECTED")
    empty = _inbound(up, "+15557777", "")
    assert empty.status_code == 422
    assert empty.json()["error"]["code"]
    for name, text in UNICODE.items():
        assert _inbound(up, f"+1555888{len(name)}", text).status_code == 200, name
    for name, text in UNICODE.items():
        echo = f"You said: {text}"
        wait_until(lambda e=echo: any(m["text"] == e for m in _outbound(up)), what=name)
    api = page.request.get(
        f"{up.portal}/api/portal/tenant/current/logs", params={"direction": "in", "limit": 50}
    ).json()
    bodies = [i["body"] for i in api["items"]]
    for name, text in UNICODE.items():
        assert text.encode() in [b.encode() for b in bodies], name
    page.goto(f"{up.portal}/app/logs?direction=in")
    cells = page.locator("#recent-logs td.body").all_text_contents()
    for name, text in UNICODE.items():
        assert text in cells, name  # textContent: exactly what was stored
    alice.assert_harmless()
    alice.context.close()
    print(f"[web-hardening] unicode texts round-tripped end to end: {len(UNICODE)}")


def _secrets(up: Up) -> dict[str, str]:
    # plain sqlite3: Playwright's sync API already runs an event loop in this thread
    with contextlib.closing(sqlite3.connect(up.data / "wafleet.db")) as conn:
        hashes = [
            str(h) for (h,) in conn.execute(f"SELECT password_hash FROM {User.__tablename__}")
        ]
    found = {"portal key": up.key, "password": PASSWORD, "webhook secret": WEBHOOK_SECRET}
    for i, h in enumerate(hashes):
        found[f"password hash {i}"] = h
        found[f"password hash {i} (digest)"] = h.rsplit("$", 1)[-1]
    for path in (up.data / "sessions").rglob("*"):
        if path.is_file() and path.stat().st_size >= 16:
            raw = path.read_bytes()
            found[f"session credentials {path.name}"] = raw.decode("latin-1")
            with_json = re.findall(rb"[A-Za-z0-9_\-]{24,}", raw)
            for j, tok in enumerate(with_json):
                found[f"credential token {path.name} {j}"] = tok.decode()
    return found


def _api_sweep(up: Up) -> None:
    """Every JSON answer of the portal API for both users (and the stream's first
    events), recorded for the secrets search."""
    for email, tenants in ((ALICE, ["evil"]), (ADMIN, ["evil", "ghost"])):
        with httpx.Client(base_url=up.portal, timeout=15) as c:
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
            assert token
            form = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
            assert c.post("/login", data=form).status_code == 303
            for slug in tenants:
                for route in ("status", "qr", "logs", "events"):
                    url = f"/api/portal/tenant/current/{route}?tenant={slug}"
                    resp = c.get(url)
                    assert resp.status_code == 200, (url, resp.text)
                    up.responses.append((url, resp.text))
                with c.stream("GET", f"/api/portal/tenant/current/stream?tenant={slug}") as st:
                    first = b""
                    for chunk in st.iter_raw():
                        first += chunk
                        if b"event: events" in first or len(first) > 20_000:  # first poll done
                            break
                    up.responses.append((f"stream {slug}", first.decode(errors="replace")))
            for page in ("/app/status", "/app/logs", "/app/settings", "/admin"):
                up.responses.append((page, c.get(page).text))
            # a failed login with the real password of another account, at DEBUG level
            form = {"email": "nobody@evil.test", "password": PASSWORD, "csrf_token": "x"}
            c.post("/login", data=form)


def test_no_secret_in_logs_stdout_or_api_answers(up: Up) -> None:
    _api_sweep(up)
    found = _secrets(up)
    assert any(k.startswith("credential token") for k in found), "no session credentials"
    logs = [up.data / "up.log", *sorted((up.data / "logs").glob("*"))]
    assert len(logs) >= 2
    leaks = []
    for path in logs:
        text = path.read_bytes().decode("utf-8", errors="replace")
        leaks += [f"{what} in {path.name}" for what, s in found.items() if s in text]
    for url, body in up.responses:
        leaks += [f"{what} in {url}" for what, s in found.items() if s in body]
    print(
        f"[web-hardening] secrets searched: {len(found)} in {len(logs)} log files "
        f"and {len(up.responses)} answers"
    )
    assert leaks == []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credential_files_are_private(up: Up) -> None:
    sessions = up.data / "sessions"
    assert _mode(sessions) & 0o077 == 0, oct(_mode(sessions))
    tenant_dirs = [d for d in sessions.iterdir() if d.is_dir()]
    assert tenant_dirs, "no tenant session directory"
    for d in tenant_dirs:
        assert _mode(d) == 0o700, (d, oct(_mode(d)))
        for f in d.iterdir():
            assert _mode(f) == 0o600, (f, oct(_mode(f)))
    assert _mode(up.data / "portal.key") == 0o600
    assert os.stat(up.data / "portal.key").st_uid == os.getuid()
