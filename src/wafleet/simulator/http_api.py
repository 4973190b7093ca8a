"""The simulator's HTTP control API (the contract's ``/sim/*`` routes, plus extensions).

Contract routes: ``POST /sim/scan``, ``POST /sim/inbound``, ``GET /sim/outbound?phone=``,
``POST /sim/faults``, ``DELETE /sim/faults``, ``GET /sim/stats``, ``GET /`` (phone page).
Extensions (for benchmarks and the phone page):
``POST /sim/inbound/batch`` ``{"messages": [{"phone","from","text"}, ...]}`` → ``{"ids": [...]}``
(all-or-nothing: every phone is checked first); ``GET /sim/qr`` → ``[{"qr","expires_at",
"session"}]`` codes waiting for a scan; ``GET /sim/accounts``; ``GET /sim/faults``;
``GET /sim/outbound`` without ``phone`` → every account's messages with a ``phone`` field.
Every refusal is ``{"error": {"code","message"}}`` with a 4xx status, never a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from wafleet.simulator import views
from wafleet.simulator.core import Simulator
from wafleet.simulator.errors import ApiError
from wafleet.simulator.faults import ALL

PHONE_RE: Final = re.compile(r"^\+?[0-9]{4,20}$")
MAX_TEXT: Final = 65536
MAX_BATCH: Final = 100_000

Handler = Callable[[Simulator, dict[str, str], Any], tuple[int, Any]]


def parse_json(body: bytes, *, required: bool = True) -> Any:
    if not body.strip():
        if required:
            raise ApiError(422, "invalid_body", "a JSON object body is required")
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    return body


def _str(obj: dict[str, Any], key: str, *, max_len: int = 256, allow_empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ApiError(422, "invalid_field", f"{key!r} must be a non-empty string")
    if len(value) > max_len:
        raise ApiError(422, "invalid_field", f"{key!r} is longer than {max_len} characters")
    return value


def _phone(obj: dict[str, Any], key: str = "phone") -> str:
    value = _str(obj, key, max_len=32)
    if not PHONE_RE.match(value):
        raise ApiError(422, "invalid_phone", f"{key!r} must be a phone number like +15550001")
    return value


def _message(obj: Any) -> tuple[str, str, str]:
    m = _obj(obj)
    return _phone(m), _str(m, "from", max_len=64), _str(m, "text", max_len=MAX_TEXT)


def scan(sim: Simulator, _q: dict[str, str], body: Any) -> tuple[int, Any]:
    b = _obj(body)
    return 200, sim.scan(_str(b, "qr", max_len=512), _phone(b))


def inbound(sim: Simulator, _q: dict[str, str], body: Any) -> tuple[int, Any]:
    ids = sim.inbound([_message(body)])
    return 200, {"id": ids[0]}


def inbound_batch(sim: Simulator, _q: dict[str, str], body: Any) -> tuple[int, Any]:
    msgs = _obj(body).get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(422, "invalid_field", "'messages' must be a non-empty list")
    if len(msgs) > MAX_BATCH:
        raise ApiError(422, "invalid_field", f"at most {MAX_BATCH} messages per batch")
    return 200, {"ids": sim.inbound([_message(m) for m in msgs])}


def outbound(sim: Simulator, query: dict[str, str], _b: Any) -> tuple[int, Any]:
    phone = query.get("phone")
    if phone is not None and phone.startswith(" "):
        phone = "+" + phone[1:]  # an unencoded "+" in a query string arrives as a space
    if phone is None:
        return 200, [{**m, "phone": a.phone} for a in sim.accounts.values() for m in a.outbound]
    if not PHONE_RE.match(phone):
        raise ApiError(422, "invalid_phone", "'phone' must be a phone number like +15550001")
    return 200, sim.account(phone).outbound


def add_fault(sim: Simulator, _q: dict[str, str], body: Any) -> tuple[int, Any]:
    b = _obj(body)
    kind = _str(b, "kind", max_len=32)
    phone = b.get("phone")
    if phone != ALL:
        phone = _phone(b)
    duration = b.get("duration_s")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not 0 < duration <= 10**7
    ):
        raise ApiError(422, "invalid_field", "'duration_s' must be a positive number of seconds")
    result = sim.add_fault(kind, phone, float(duration) if duration is not None else None)
    return 200, result


def clear_faults(sim: Simulator, _q: dict[str, str], body: Any) -> tuple[int, Any]:
    if body is None:
        return 200, {"cleared": sim.clear_faults(None)}
    b = _obj(body)
    if "phone" not in b:
        return 200, {"cleared": sim.clear_faults(None)}
    phone = b["phone"]
    if phone != ALL:
        phone = _phone(b)
        sim.account(phone)
    return 200, {"cleared": sim.clear_faults(phone)}


def list_faults(sim: Simulator, _q: dict[str, str], _b: Any) -> tuple[int, Any]:
    return 200, views.faults(sim)


def stats(sim: Simulator, _q: dict[str, str], _b: Any) -> tuple[int, Any]:
    return 200, views.stats(sim)


def qr_codes(sim: Simulator, _q: dict[str, str], _b: Any) -> tuple[int, Any]:
    return 200, views.pending_qr(sim)


def accounts(sim: Simulator, _q: dict[str, str], _b: Any) -> tuple[int, Any]:
    return 200, views.accounts(sim)


# (method, path) → (handler, takes a body, body required)
ROUTES: Final[dict[tuple[str, str], tuple[Handler, bool]]] = {
    ("POST", "/sim/scan"): (scan, True),
    ("POST", "/sim/inbound"): (inbound, True),
    ("POST", "/sim/inbound/batch"): (inbound_batch, True),
    ("GET", "/sim/outbound"): (outbound, False),
    ("POST", "/sim/faults"): (add_fault, True),
    ("DELETE", "/sim/faults"): (clear_faults, False),
    ("GET", "/sim/faults"): (list_faults, False),
    ("GET", "/sim/stats"): (stats, False),
    ("GET", "/sim/qr"): (qr_codes, False),
    ("GET", "/sim/accounts"): (accounts, False),
}
PATHS: Final = frozenset(path for _, path in ROUTES)


def dispatch(
    sim: Simulator, method: str, path: str, query: dict[str, str], body: bytes
) -> tuple[int, Any]:
    """Route one request; returns (status, JSON-able payload). Never raises."""
    route = ROUTES.get((method, path))
    if route is None:
        if path in PATHS:
            return _error(405, "method_not_allowed", f"{method} is not allowed on {path}")
        return _error(404, "not_found", f"no route {path}")
    handler, needs_body = route
    try:
        payload = parse_json(body, required=needs_body) if (needs_body or body) else None
        return handler(sim, query, payload)
    except ApiError as err:
        return _error(err.status, err.code, err.message)


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message}}
