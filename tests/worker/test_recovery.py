"""The cause → action table as the bot applies it (pure: no I/O, no clock waits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wafleet.states import CAUSE_ACTIONS, Action, Cause, SessionState
from wafleet.worker.reconnect import BackoffPolicy, ReconnectManager
from wafleet.worker.recovery import UNKNOWN_BAN_WAIT, decide

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def manager(max_attempts: int = 3) -> ReconnectManager:
    return ReconnectManager(
        BackoffPolicy(
            initial_delay=1, max_delay=8, multiplier=2, jitter=0, max_attempts=max_attempts
        )
    )


@pytest.mark.parametrize(
    "cause",
    [
        Cause.NETWORK,
        Cause.KEEPALIVE_TIMEOUT,
        Cause.SERVER_ERROR,
        Cause.STREAM_ERROR,
        Cause.ENGINE_CRASH,
    ],
)
def test_transient_causes_retry_with_growing_backoff_then_error(cause: Cause) -> None:
    rm = manager()
    delays = []
    for _ in range(3):
        rec = decide(cause, "x", None, rm, NOW)
        assert rec.action is Action.RETRYING and not rec.park and rec.tenant is None
        assert rec.retry_at is not None
        delays.append((rec.retry_at - NOW).total_seconds())
        assert rec.session["reconnect_active"] is True
        assert rec.session["last_disconnect_cause"] == cause.value
    assert delays == [1.0, 2.0, 4.0]
    final = decide(cause, "x", None, rm, NOW)
    assert final.park and final.retry_at is None
    assert final.tenant is not None and final.tenant["status"] == "ERROR"
    assert "Gave up after 3 reconnect attempts" in final.tenant["error_message"]


def test_restart_required_reconnects_at_once_without_counting() -> None:
    rm = manager()
    rec = decide(Cause.RESTART_REQUIRED, "", None, rm, NOW)
    assert rec.retry_at == NOW and rm.attempt == 0


def test_logged_out_wipes_credentials_and_parks_logged_out() -> None:
    rec = decide(Cause.LOGGED_OUT, "unlinked", None, manager(), NOW)
    assert rec.target is SessionState.LOGGED_OUT
    assert rec.park and rec.wipe_credentials and rec.retry_at is None and rec.tenant is None


def test_qr_timeout_parks_without_wiping() -> None:
    rec = decide(Cause.QR_TIMEOUT, "", None, manager(), NOW)
    assert rec.target is SessionState.DISCONNECTED
    assert rec.park and not rec.wipe_credentials and rec.retry_at is None


@pytest.mark.parametrize(
    "cause", [Cause.REPLACED, Cause.BANNED, Cause.CLIENT_OUTDATED, Cause.AUTH_FAILURE]
)
def test_operator_causes_park_with_an_explained_error(cause: Cause) -> None:
    rec = decide(cause, "detail here", None, manager(), NOW)
    assert rec.action is Action.NEEDS_OPERATOR and rec.park and rec.retry_at is None
    assert rec.tenant is not None and rec.tenant["status"] == "ERROR"
    assert "detail here" in rec.tenant["error_message"]


def test_temp_ban_waits_until_expiry_or_an_hour_when_unknown() -> None:
    until = NOW + timedelta(minutes=7)
    rec = decide(Cause.TEMP_BANNED, "", until, manager(), NOW)
    assert rec.retry_at == until and rec.session["ban_expires_at"] == until and not rec.park
    unknown = decide(Cause.TEMP_BANNED, "", None, manager(), NOW)
    assert unknown.retry_at == NOW + UNKNOWN_BAN_WAIT


@pytest.mark.parametrize("cause", [Cause.LEASE_LOST, Cause.SHUTDOWN, Cause.PAUSED])
def test_our_own_stops_end_the_loop_without_writing(cause: Cause) -> None:
    rec = decide(cause, "", None, manager(), NOW)
    assert rec.stop and rec.session == {}


def test_every_cause_of_the_contract_is_decided() -> None:
    for cause, action in CAUSE_ACTIONS.items():
        assert decide(cause, "", None, manager(), NOW).action is action


def test_rebalancing_never_moves_a_session_being_linked() -> None:
    from wafleet.worker.leases import pick_hand_overs

    states = {
        1: SessionState.QR_READY,
        2: SessionState.CONNECTING,
        3: SessionState.CONNECTED,
        4: SessionState.DISCONNECTED,
        5: SessionState.CONNECTED,
    }
    assert pick_hand_overs(states, 5) == [4, 5, 3]  # idle first; never 1 or 2
    assert pick_hand_overs(states, 1) == [4]
    assert pick_hand_overs({1: SessionState.QR_READY}, 3) == []
