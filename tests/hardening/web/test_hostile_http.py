"""Hostile HTTP input against the real control plane and portal servers: oversized bodies
(413), oversized fields and query parameters (422; a request line beyond uvicorn's parser
limit is its own 400 before any app code runs), broken JSON and encodings (422), and
Unicode that must come back byte-identical. Never a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.control_plane.seed import ALICE, KEY
from tests.hardening.web.conftest import WebStack, portal_login
from wafleet.control_plane.app import MAX_BODY_BYTES as CP_MAX
from wafleet.control_plane.schemas import MAX_TEXT_LEN
from wafleet.portal.app import MAX_BODY_BYTES as PORTAL_MAX

pytestmark = pytest.mark.slow  # real uvicorn servers

MSGS = "/portal/tenant/current/messages"
LOGS = "/portal/tenant/current/logs"
API = "/api/portal/tenant/current"

# Texts that must round-trip byte-identical (simulator → DB → API → page is covered by
# the browser test; here: control plane outbox → logs JSON).
UNICODE_TEXTS = {
    "emoji": "👍🏽 ok 🎉",
    "zwj-family": "👨\u200d👩\u200d👧\u200d👦",
    "flag-and-keycap": "🇧🇷 1\ufe0f\u20e3",
    "arabic-rtl": "مرحبا بالعالم، كيف حالك؟",
    "hebrew-rtl": "שלום עולם",
    "bidi-override": "abc\u202edcba\u202c xyz",
    "zero-width": "zero\u200bwidth\u200cnon\u200djoiner\ufeff",
    "combining": "e\u0301 a\u0308 Z\u0324\u0354\u0367\u0311\u0343",
    "cjk": "你好，世界 こんにちは 안녕하세요",  # noqa: RUF001
    "astral-math": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚",  # noqa: RUF001
    "nul-and-controls": "a\x00b\x07c\x1b[31m",
    "leading-trailing-space": "  padded text \t\n",
    "max-length-emoji": "👍" * MAX_TEXT_LEN,
}


@pytest.fixture(scope="module")
def cp(web_stack: WebStack) -> Iterator[httpx.Client]:
    headers = {"x-portal-key": KEY, "x-user-email": ALICE}
    with httpx.Client(base_url=web_stack.cp_url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def portal(web_stack: WebStack) -> Iterator[httpx.Client]:
    c = portal_login(web_stack.portal_url, ALICE)
    yield c
    c.close()


def _error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    err = resp.json()["error"]
    assert err["code"]
    assert err["message"]
    assert "Traceback" not in resp.text
    return str(err["code"])


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(64 * 1024, total - sent)
        sent += n
        yield b"x" * n


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_control_plane_refuses_oversized_bodies(cp: httpx.Client, chunked: bool) -> None:
    size = CP_MAX + 1
    body = _chunks(size) if chunked else b"x" * size
    resp = cp.post(MSGS, content=body, headers={"content-type": "application/json"})
    assert _error(resp, 413) == "too_large"
    put = cp.put("/portal/tenant/current/config", content=b"{" * size)
    assert _error(put, 413) == "too_large"
    # just under the limit, the body reaches the app: invalid JSON is then a 422
    near = cp.post(MSGS, content=b"x" * (CP_MAX - 1), headers={"content-type": "application/json"})
    _error(near, 422)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_portal_refuses_oversized_bodies(
    web_stack: WebStack, portal: httpx.Client, chunked: bool
) -> None:
    size = PORTAL_MAX + 1
    for path in ("/login", "/app/settings", f"{API}/actions/restart"):
        body = _chunks(size) if chunked else b"x" * size
        resp = portal.post(
            path, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert _error(resp, 413) == "too_large", path


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"to": "+15559999", "text": "x" * (MAX_TEXT_LEN + 1)}, "text over 4096"),
        ({"to": "+15559999", "text": ""}, "empty text"),
        ({"to": "+15559999", "text": " \t\n\u3000"}, "whitespace-only text"),
        ({"to": "<script>alert(1)</script>", "text": "x"}, "html as recipient"),
        ({"to": "+1" + "5" * 100, "text": "x"}, "recipient too long"),
        ({"to": "+15559999", "text": "x", "extra": 1}, "unknown field"),
        ({"to": "+15559999", "text": ["x"]}, "text not a string"),
        ([1, 2, 3], "not an object"),
    ],
)
def test_control_plane_refuses_bad_messages(cp: httpx.Client, body: object, why: str) -> None:
    _error(cp.post(MSGS, json=body), 422)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,  # nested too deep for the JSON parser
        b'{"to": "+15559999", "text": "\xff\xfe"}',  # not UTF-8
        b'{"to": "+15559999", "text": "\\ud800"}',  # a lone surrogate
        b'{"to": "+15559999", "text": "x"',  # truncated
        b"\x00" * 1000,
    ],
    ids=["deep", "not-utf8", "lone-surrogate", "truncated", "nul-bytes"],
)
def test_control_plane_refuses_broken_json(cp: httpx.Client, raw: bytes) -> None:
    _error(cp.post(MSGS, content=raw, headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": str(10**30)},
        {"limit": "-1"},
        {"before": str(2**64)},
        {"before": "1e9"},
        {"direction": "sideways"},
        {"chat": "c" * 129},
        {"tenant": "t" * 65},
        {"chat": "x" * 50_000},
    ],
    ids=lambda p: f"{next(iter(p))}-{len(next(iter(p.values())))}",
)
def test_oversized_query_params_are_422(
    cp: httpx.Client, portal: httpx.Client, params: dict[str, str]
) -> None:
    _error(cp.get(LOGS, params=params), 422)
    _error(portal.get(f"{API}/logs", params=params), 422)


def _raw_get(port: int, target: bytes, headers: dict[str, str]) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        head = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nhost: x\r\n" + head + b"\r\n")
        status_line = s.recv(64).split(b"\r\n")[0]
    return int(status_line.split()[1])


@pytest.mark.parametrize("size", [60_000, 2_000_000])
def test_huge_request_lines_never_reach_500(web_stack: WebStack, size: int) -> None:
    """Within uvicorn's request-line limit the app answers 422; beyond it uvicorn's HTTP
    parser answers 400 itself. Either way: a 4xx, and the server keeps serving."""
    port = int(web_stack.cp_url.rsplit(":", 1)[1])
    auth = {"x-portal-key": KEY, "x-user-email": ALICE}
    status = _raw_get(port, LOGS.encode() + b"?chat=" + b"x" * size, auth)
    assert status == (422 if size < 65_536 else 400)
    assert httpx.get(f"{web_stack.cp_url}/healthz").status_code == 200


@pytest.mark.parametrize("name", list(UNICODE_TEXTS))
def test_unicode_round_trips_byte_identical(cp: httpx.Client, name: str) -> None:
    text = UNICODE_TEXTS[name]
    resp = cp.post(MSGS, json={"to": "+15559999", "text": text})
    assert resp.status_code == 202, resp.text
    items = cp.get(LOGS, params={"direction": "out", "limit": 5}).json()["items"]
    stored = next(i for i in items if i["body"] == text)
    assert stored["body"].encode("utf-8") == text.encode("utf-8")


def test_unicode_counts() -> None:
    print(
        f"[web-hardening] unicode texts round-tripped via the control plane: {len(UNICODE_TEXTS)}"
    )
    assert len(UNICODE_TEXTS) >= 10
