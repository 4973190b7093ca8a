"""Pure pieces of the portal: throttling, session cookie, stream diffing, chart,
presentation rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import APIRouter

from wafleet.portal.auth import SessionCodec, WebSession, derive_key
from wafleet.portal.chart import bucket_logs, buckets_from_stats, render_svg
from wafleet.portal.present import attention_rank, build_status_view, relative
from wafleet.portal.ratelimit import LoginLimiter
from wafleet.portal.routes.auth_pages import safe_next
from wafleet.portal.stream import StreamDiffer, sse

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
KEY = "q" * 40


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_limiter_blocks_after_five_failures_and_frees_after_the_window() -> None:
    clock = FakeClock()
    lim = LoginLimiter(max_failures=5, window_s=300, clock=clock)
    keys = ["acct:a@x", "addr:1.2.3.4"]
    for _ in range(4):
        lim.record_failure(keys)
    assert lim.retry_after(keys) == 0
    lim.record_failure(keys)
    assert lim.retry_after(keys) == pytest.approx(300)
    assert lim.retry_after(["acct:other@x"]) == 0
    clock.t += 120
    assert lim.retry_after(["addr:1.2.3.4"]) == pytest.approx(180)
    clock.t += 180
    assert lim.retry_after(keys) == 0


def test_limiter_success_clears_the_account_but_not_the_address() -> None:
    lim = LoginLimiter(max_failures=2, clock=FakeClock())
    lim.record_failure(["acct:a", "addr:x"])
    lim.record_failure(["acct:a", "addr:x"])
    lim.clear("acct:a")
    assert lim.retry_after(["acct:a"]) == 0
    assert lim.retry_after(["addr:x"]) > 0


def test_limiter_memory_is_bounded() -> None:
    lim = LoginLimiter(max_failures=3, max_keys=100, clock=FakeClock())
    for i in range(10_000):
        lim.record_failure([f"acct:{i}@x"])
    assert len(lim) == 100
    # the newest keys are the ones kept
    lim.record_failure(["acct:9999@x"])
    lim.record_failure(["acct:9999@x"])
    assert lim.retry_after(["acct:9999@x"]) > 0


def test_session_cookie_roundtrip_and_tamper_detection() -> None:
    codec = SessionCodec(KEY)
    raw = codec.dumps(WebSession(csrf="tok", email="a@x.test", issued=5.0))
    back = codec.loads(raw)
    assert back == WebSession(csrf="tok", email="a@x.test", issued=5.0)
    assert codec.loads(raw[:-2] + ("A" if raw[-2] != "A" else "B") + raw[-1]) is None
    assert SessionCodec("z" * 40).loads(raw) is None  # another portal key
    assert codec.loads("garbage") is None
    assert codec.loads("") is None
    assert KEY not in raw


def test_cookie_key_is_derived_not_the_portal_key() -> None:
    k = derive_key(KEY, "session-cookie")
    assert k != KEY.encode()
    assert k != derive_key(KEY, "other")
    assert k == derive_key(KEY, "session-cookie")


def test_stream_differ_sends_only_changes() -> None:
    d = StreamDiffer(since_log=10)
    assert d.status_changed({"s": 1})
    assert not d.status_changed({"s": 1})
    assert d.status_changed({"s": 2})
    assert d.qr_changed("a")
    assert not d.qr_changed("a")
    assert d.qr_changed(None)
    page = {"items": [{"id": 12}, {"id": 11}, {"id": 10}, {"id": 9}]}
    assert [i["id"] for i in d.new_logs(page)] == [11, 12]  # oldest first
    assert d.new_logs(page) == []
    assert d.events_changed({"items": [1]})
    assert not d.events_changed({"items": [1]})
    d.reset_status()
    assert d.status_changed({"s": 2})


def test_sse_frames_are_single_line_json() -> None:
    frame = sse("log", {"body": "two\nlines"})
    assert frame == 'event: log\ndata: {"body":"two\\nlines"}\n\n'


def test_hourly_buckets_count_by_direction_and_hour() -> None:
    items = [
        {"direction": "in", "created_at": (NOW - timedelta(minutes=5)).isoformat()},
        {"direction": "out", "created_at": (NOW - timedelta(minutes=10)).isoformat()},
        {"direction": "in", "created_at": (NOW - timedelta(hours=3)).isoformat()},
        {"direction": "in", "created_at": (NOW - timedelta(hours=30)).isoformat()},  # too old
        {"direction": "in", "created_at": "not a time"},
    ]
    buckets = bucket_logs(items, NOW)
    assert len(buckets) == 24
    assert buckets[-1].start == NOW.replace(minute=0)
    assert (buckets[-1].inbound, buckets[-1].outbound) == (1, 1)
    assert buckets[-4].inbound == 1
    assert sum(b.inbound for b in buckets) == 2


def test_hourly_buckets_from_the_stats_route() -> None:
    hour = NOW.replace(minute=0)
    data = {"hours": [{"hour": hour.isoformat(), "in": 7, "out": 3}]}
    buckets = buckets_from_stats(data, NOW)
    assert buckets is not None
    assert (buckets[-1].inbound, buckets[-1].outbound) == (7, 3)
    assert buckets_from_stats({"hours": "nope"}, NOW) is None
    assert buckets_from_stats({"hours": [{"hour": "bad"}]}, NOW) is None


def test_chart_svg_is_labelled_and_holds_no_markup_from_data() -> None:
    buckets = bucket_logs(
        [{"direction": "in", "created_at": NOW.isoformat()}] * 4
        + [{"direction": "out", "created_at": NOW.isoformat()}] * 2,
        NOW,
    )
    svg = str(render_svg(buckets))
    assert svg.startswith('<svg class="chart"')
    assert "4 in, 2 out" in svg
    assert svg.count("<rect") == 48
    assert "partial" in str(render_svg(buckets, partial=True))


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (0, "just now"),
        (30, "30 s ago"),
        (600, "10 min ago"),
        (7200, "2 h ago"),
        (3 * 86400, "3 d ago"),
        (-15, "in 15 s"),
    ],
)
def test_relative_times(delta: int, text: str) -> None:
    assert relative(NOW - timedelta(seconds=delta), NOW) == text


def _status(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenant": {"slug": "a", "name": "A", "status": "ACTIVE", "error_message": None},
        "session": {
            "state": "DISCONNECTED",
            "phone": None,
            "last_seen_at": None,
            "connected_since": None,
            "last_qr_at": None,
        },
        "worker": None,
        "reconnect": {"active": False, "attempt": 0, "max_attempts": 20, "next_retry_at": None},
        "last_disconnect": None,
        "messages": {"in_24h": 3, "out_24h": 2, "pending_out": 1},
    }
    base.update(over)
    return base


def test_status_view_explains_the_disconnect_and_counts_down() -> None:
    view = build_status_view(
        _status(
            reconnect={
                "active": True,
                "attempt": 3,
                "max_attempts": 20,
                "next_retry_at": (NOW + timedelta(seconds=8)).isoformat(),
            },
            last_disconnect={
                "cause": "network",
                "action": "retrying",
                "at": NOW.isoformat(),
                "detail": "connection reset",
            },
        ),
        NOW,
        stale_after=30,
    )
    assert view["text"]["reconnect-attempt"] == "3 of 20"
    assert view["text"]["retry-countdown"] == "in 8 s"
    assert view["text"]["disconnect-what"].startswith("The connection to WhatsApp failed")
    assert view["show"]["reconnect-block"]
    assert view["show"]["disconnect-block"]
    assert view["text"]["msg-in"] == "3"
    assert not view["show"]["qr-block"]


def test_status_view_flags_a_stale_worker() -> None:
    late = (NOW - timedelta(seconds=45)).isoformat()
    worker = {"id": "w1", "host": "h", "status": "RUNNING", "last_heartbeat_at": late}
    view = build_status_view(_status(worker=worker), NOW, stale_after=30)
    assert view["show"]["worker-stale"]
    assert view["text"]["worker-heartbeat"] == "45 s ago"
    fresh = {**worker, "last_heartbeat_at": NOW.isoformat()}
    assert not build_status_view(_status(worker=fresh), NOW, stale_after=30)["show"]["worker-stale"]


def test_unknown_cause_still_gets_words() -> None:
    view = build_status_view(
        _status(last_disconnect={"cause": "cosmic_ray", "action": "none", "at": None}),
        NOW,
        stale_after=30,
    )
    assert "cosmic_ray" in view["text"]["disconnect-what"]


def test_attention_order() -> None:
    old = (NOW - timedelta(hours=2)).isoformat()
    recent = NOW.isoformat()
    assert attention_rank({"status": "ERROR", "session_state": "CONNECTED"}, NOW) == 0
    assert attention_rank({"status": "ACTIVE", "session_state": "LOGGED_OUT"}, NOW) == 1
    long_down = {"status": "ACTIVE", "session_state": "DISCONNECTED", "last_seen_at": old}
    assert attention_rank(long_down, NOW) == 2
    just_down = {"status": "ACTIVE", "session_state": "DISCONNECTED", "last_seen_at": recent}
    assert attention_rank(just_down, NOW) == 9
    paused = {"status": "PAUSED", "session_state": "DISCONNECTED", "last_seen_at": old}
    assert attention_rank(paused, NOW) == 9


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("/app/logs?x=1", True),
        ("//evil.test/", False),
        ("https://evil.test/", False),
        ("/\\evil.test", False),
        ("", False),
        (None, False),
    ],
)
def test_safe_next(value: str | None, ok: bool) -> None:
    assert safe_next(value) == (value if ok else None)


def test_a_post_route_without_csrf_cannot_be_built(make_settings: Any) -> None:
    from wafleet.portal import app as portal_app

    application = portal_app.create_app(make_settings())
    portal_app._check_csrf_everywhere(application.router)  # the real app passes
    rogue = APIRouter()

    @rogue.post("/rogue")
    async def _rogue() -> None:
        return None

    application.include_router(rogue)
    with pytest.raises(RuntimeError, match="/rogue lacks the CSRF check"):
        portal_app._check_csrf_everywhere(application.router)


@pytest.mark.parametrize(
    ("url", "page"),
    [
        ("ws://127.0.0.1:8301/ws", "http://127.0.0.1:8301/"),
        ("wss://sim.example:9000/ws", "https://sim.example:9000/"),
    ],
)
def test_simulator_page_url(make_settings: Any, url: str, page: str) -> None:
    from wafleet.portal.app import create_app, portal_context

    app = create_app(make_settings(engine="simulator", simulator_url=url))
    assert portal_context(app).simulator_page_url == page
    real = create_app(make_settings(engine="neonize"))
    assert portal_context(real).simulator_page_url is None
