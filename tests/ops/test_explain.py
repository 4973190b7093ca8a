"""The situation wording: every state and cause gives one sentence and a concrete next
step naming the tenant's slug."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wafleet.ops.explain import SessionFacts, explain, explain_status_json, when
from wafleet.states import Cause

AT = datetime(2026, 3, 1, 14, 2, 30, tzinfo=UTC)
LATER = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)


def test_logged_out_from_the_phone() -> None:
    e = explain(
        "acme",
        "ACTIVE",
        SessionFacts(state="LOGGED_OUT", last_disconnect_cause="logged_out", last_disconnect_at=AT),
    )
    assert e.summary.startswith("Logged out from the phone on 2026-03-01 14:02 UTC")
    assert "wafleet tenant relink acme" in e.next_step
    assert e.severity == "warning"
    assert e.text() == f"{e.summary} — {e.next_step}"
    by_request = explain(
        "acme",
        "ACTIVE",
        SessionFacts(state="LOGGED_OUT", last_disconnect_detail="logged out by request"),
    )
    assert "by request" in by_request.summary


def test_error_after_max_attempts_and_operator_causes() -> None:
    gave_up = explain(
        "beta",
        "ERROR",
        SessionFacts(
            last_disconnect_cause="network",
            last_disconnect_at=AT,
            last_disconnect_detail="connection refused",
        ),
        error_message="Gave up after 20 reconnect attempts",
        max_attempts=20,
    )
    assert "after 20 reconnect attempts failed (last cause: network (connection refused))" in (
        gave_up.summary
    )
    assert "wafleet tenant restart beta" in gave_up.next_step
    assert gave_up.severity == "error"
    steps = {
        Cause.REPLACED: "wafleet tenant restart beta",
        Cause.BANNED: "WhatsApp support",
        Cause.CLIENT_OUTDATED: "Upgrade wafleet",
        Cause.AUTH_FAILURE: "wafleet tenant relink beta",
    }
    for cause, step in steps.items():
        e = explain("beta", "ERROR", SessionFacts(last_disconnect_cause=cause.value))
        assert step in e.next_step, cause
        assert e.severity == "error"
    unknown = explain("beta", "ERROR", None, error_message="something odd.")
    assert unknown.summary == "In ERROR: something odd."


@pytest.mark.parametrize(
    ("facts", "status", "summary", "step", "severity"),
    [
        (
            SessionFacts(state="CONNECTED", phone="+1555", connected_since=AT),
            "ACTIVE",
            "Connected to WhatsApp as +1555 since 2026-03-01 14:02 UTC",
            "Nothing to do",
            "ok",
        ),
        (
            SessionFacts(state="QR_READY", qr_expires_at=LATER),
            "ACTIVE",
            "expires at 2026-03-01 15:00 UTC",
            "wafleet tenant link acme",
            "info",
        ),
        (SessionFacts(), "ACTIVE", "Not linked", "wafleet tenant link acme", "info"),
        (SessionFacts(), "PAUSED", "Paused", "wafleet tenant resume acme", "info"),
        (
            SessionFacts(last_disconnect_cause="qr_timeout", last_disconnect_at=AT),
            "ACTIVE",
            "expired unscanned",
            "wafleet tenant link acme",
            "warning",
        ),
        (
            SessionFacts(last_disconnect_cause="temp_banned", ban_expires_at=LATER),
            "ACTIVE",
            "the ban ends at 2026-03-01 15:00 UTC",
            "Wait",
            "warning",
        ),
        (
            SessionFacts(last_disconnect_cause="worker_stale", phone="+1"),
            "ACTIVE",
            "stopped sending heartbeats",
            "another worker",
            "warning",
        ),
        (
            SessionFacts(last_disconnect_cause="shutdown", phone="+1"),
            "ACTIVE",
            "Stopped with its worker",
            "wafleet worker",
            "info",
        ),
        (
            SessionFacts(state="CONNECTING", reconnect_attempt=2),
            "ACTIVE",
            "Connecting to WhatsApp (attempt 2)",
            "Nothing to do",
            "info",
        ),
    ],
)
def test_situations(
    facts: SessionFacts, status: str, summary: str, step: str, severity: str
) -> None:
    e = explain("acme", status, facts)
    assert summary in e.summary
    assert step in e.next_step
    assert e.severity == severity


def test_reconnecting_names_attempt_and_next_try() -> None:
    e = explain(
        "acme",
        "ACTIVE",
        SessionFacts(
            last_disconnect_cause="keepalive_timeout",
            last_disconnect_at=AT,
            last_disconnect_detail="pings unanswered",
            reconnect_active=True,
            reconnect_attempt=4,
            next_retry_at=LATER,
        ),
        max_attempts=20,
    )
    assert e.summary == (
        "Disconnected on 2026-03-01 14:02 UTC (keepalive_timeout: pings unanswered); "
        "reconnecting by itself — attempt 4 of 20, next try at 2026-03-01 15:00 UTC."
    )
    assert "wafleet doctor" in e.next_step
    assert e.severity == "warning"


def test_from_orm_like_rows_and_status_json() -> None:
    class Row:
        state = "LOGGED_OUT"
        last_disconnect_cause = "logged_out"
        last_disconnect_at = AT

    facts = SessionFacts.from_row(Row())
    assert facts.state == "LOGGED_OUT"
    assert facts.last_disconnect_at == AT
    assert SessionFacts.from_row({"state": "CONNECTED", "last_seen_at": "2026-03-01T14:02:30Z"})
    payload = {
        "tenant": {"slug": "acme", "name": "Acme", "status": "ACTIVE", "error_message": None},
        "session": {"state": "DISCONNECTED", "phone": "+1", "last_seen_at": None},
        "reconnect": {
            "active": True,
            "attempt": 1,
            "max_attempts": 20,
            "next_retry_at": "2026-03-01T15:00:00+00:00",
        },
        "last_disconnect": {
            "cause": "temp_banned",
            "action": "waiting_until",
            "at": "2026-03-01T14:02:30+00:00",
            "detail": None,
        },
    }
    e = explain_status_json(payload)
    assert "Temporarily banned by WhatsApp on 2026-03-01 14:02 UTC" in e.summary
    assert "ends at 2026-03-01 15:00 UTC" in e.summary
    assert when(None) == "an unknown time"
