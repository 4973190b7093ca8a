"""The session state machine of a TenantBot: states, the allowed transitions, and how
each disconnect cause is handled (the contract's cause → action table)."""

from __future__ import annotations

from wafleet.states import SessionState as S

# from-state → the states it may move to. Anything else is a bug and is refused.
TRANSITIONS: dict[S, frozenset[S]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING, S.LOGGED_OUT, S.DISCONNECTED}),
    S.CONNECTING: frozenset({S.QR_READY, S.CONNECTED, S.DISCONNECTED, S.LOGGED_OUT}),
    S.QR_READY: frozenset({S.QR_READY, S.CONNECTED, S.DISCONNECTED, S.LOGGED_OUT}),
    S.CONNECTED: frozenset({S.DISCONNECTED, S.LOGGED_OUT}),
    S.LOGGED_OUT: frozenset({S.CONNECTING, S.DISCONNECTED, S.LOGGED_OUT}),
}


class InvalidTransition(RuntimeError):
    pass


def check_transition(current: S, target: S) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"{current.value} → {target.value} is not a valid transition")
