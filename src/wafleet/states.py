"""The contract's state names, disconnect causes and the cause → action table.

Everything that crosses a process boundary (database rows, JSON, CLI output) uses these
string values, exactly as ARCHITECTURE.md spells them.
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    QR_READY = "QR_READY"
    CONNECTED = "CONNECTED"
    LOGGED_OUT = "LOGGED_OUT"


class TenantStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ERROR = "ERROR"


class WorkerStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    STALE = "STALE"
    ERROR = "ERROR"


class Cause(StrEnum):
    NETWORK = "network"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    SERVER_ERROR = "server_error"
    STREAM_ERROR = "stream_error"
    ENGINE_CRASH = "engine_crash"
    RESTART_REQUIRED = "restart_required"
    QR_TIMEOUT = "qr_timeout"
    LOGGED_OUT = "logged_out"
    REPLACED = "replaced"
    TEMP_BANNED = "temp_banned"
    BANNED = "banned"
    CLIENT_OUTDATED = "client_outdated"
    AUTH_FAILURE = "auth_failure"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"
    PAUSED = "paused"
    # Not a disconnect seen by an engine: the control plane's stale-worker job marks the
    # sessions of a silent worker with it.
    WORKER_STALE = "worker_stale"


class Action(StrEnum):
    RETRYING = "retrying"
    NEEDS_LINK = "needs_link"
    NEEDS_OPERATOR = "needs_operator"
    WAITING_UNTIL = "waiting_until"
    NONE = "none"


CAUSE_ACTIONS: dict[Cause, Action] = {
    Cause.NETWORK: Action.RETRYING,
    Cause.KEEPALIVE_TIMEOUT: Action.RETRYING,
    Cause.SERVER_ERROR: Action.RETRYING,
    Cause.STREAM_ERROR: Action.RETRYING,
    Cause.ENGINE_CRASH: Action.RETRYING,
    Cause.RESTART_REQUIRED: Action.RETRYING,
    Cause.QR_TIMEOUT: Action.NEEDS_LINK,
    Cause.LOGGED_OUT: Action.NEEDS_LINK,
    Cause.REPLACED: Action.NEEDS_OPERATOR,
    Cause.TEMP_BANNED: Action.WAITING_UNTIL,
    Cause.BANNED: Action.NEEDS_OPERATOR,
    Cause.CLIENT_OUTDATED: Action.NEEDS_OPERATOR,
    Cause.AUTH_FAILURE: Action.NEEDS_OPERATOR,
    Cause.LEASE_LOST: Action.NONE,
    Cause.SHUTDOWN: Action.NONE,
    Cause.PAUSED: Action.NONE,
    Cause.WORKER_STALE: Action.RETRYING,
}


def action_for(cause: Cause) -> Action:
    return CAUSE_ACTIONS[cause]


# Plain-words explanation and next step, used by the portal, `wafleet status` and alerts.
CAUSE_EXPLANATIONS: dict[Cause, tuple[str, str]] = {
    Cause.NETWORK: (
        "The connection to WhatsApp failed or dropped (network).",
        "Nothing to do: wafleet reconnects by itself with backoff. If it persists, check "
        "the worker host's outbound network (wafleet doctor).",
    ),
    Cause.KEEPALIVE_TIMEOUT: (
        "WhatsApp stopped answering keepalive pings (dead connection).",
        "Nothing to do: wafleet reconnects by itself.",
    ),
    Cause.SERVER_ERROR: (
        "WhatsApp's servers returned an error.",
        "Nothing to do: wafleet retries with backoff.",
    ),
    Cause.STREAM_ERROR: (
        "The WhatsApp stream failed.",
        "Nothing to do: wafleet retries with backoff.",
    ),
    Cause.ENGINE_CRASH: (
        "The WhatsApp engine process crashed or hung and was replaced.",
        "Nothing to do: wafleet restarted it. Repeated crashes: see the tenant log.",
    ),
    Cause.RESTART_REQUIRED: (
        "WhatsApp asked for a reconnect (normal right after linking).",
        "Nothing to do.",
    ),
    Cause.QR_TIMEOUT: (
        "Nobody scanned the QR code in time.",
        "Ask for a new QR code: press Re-link (wafleet tenant relink SLUG) and scan it.",
    ),
    Cause.LOGGED_OUT: (
        "The account was logged out from the phone (linked device removed).",
        "Scan a new QR code: press Re-link (wafleet tenant relink SLUG).",
    ),
    Cause.REPLACED: (
        "Another client took over this WhatsApp session.",
        "Make sure the account is linked to wafleet only, then press Restart.",
    ),
    Cause.TEMP_BANNED: (
        "WhatsApp temporarily banned this account.",
        "Wait: wafleet retries once the ban expires. Reduce message volume.",
    ),
    Cause.BANNED: (
        "WhatsApp banned this account.",
        "Contact WhatsApp support; wafleet will not reconnect it.",
    ),
    Cause.CLIENT_OUTDATED: (
        "WhatsApp rejected the client version as outdated.",
        "Upgrade wafleet (the engine library), then press Restart.",
    ),
    Cause.AUTH_FAILURE: (
        "WhatsApp rejected the stored credentials.",
        "Press Re-link and scan a new QR code.",
    ),
    Cause.LEASE_LOST: (
        "This worker lost the tenant's lease; another worker takes over.",
        "Nothing to do.",
    ),
    Cause.SHUTDOWN: ("The worker was shut down.", "Nothing to do: the tenant resumes on start."),
    Cause.PAUSED: ("The tenant was paused.", "Press Resume to reconnect."),
    Cause.WORKER_STALE: (
        "The worker holding this tenant stopped sending heartbeats.",
        "Nothing to do: another worker (or the restarted one) takes it over. "
        "Check the worker host if it persists.",
    ),
}


class MessageDirection(StrEnum):
    IN = "in"
    OUT = "out"


class MessageStatus(StrEnum):
    RECEIVED = "RECEIVED"
    PROCESSED = "PROCESSED"
    PENDING = "PENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    FAILED = "FAILED"


class CommandKind(StrEnum):
    """Requests from the portal/CLI that a worker applies to a tenant."""

    RESTART = "restart"
    RELINK = "relink"
    LOGOUT = "logout"
    PAUSE = "pause"
    RESUME = "resume"
    SEND = "send"  # an outbox message was added: wake the sender
    PAIR_PHONE = "pair-phone"
    CONFIG = "config"  # bot rules changed: reload
