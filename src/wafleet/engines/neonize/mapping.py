"""neonize (whatsmeow) events → our engine events and the contract's causes.

Pure functions over neonize's real protobuf event types. This module imports neonize, so
only the engine child process and tests import it — never the worker process.

Cause choices (whatsmeow reason codes in brackets):

* ``ConnectFailureEv`` reasons: LOGGED_OUT [401], MAIN_DEVICE_GONE [403] and
  UNKNOWN_LOGOUT [406] → ``logged_out`` (whatsmeow itself treats these three as a logout:
  the stored device is dead, a new link is the only way back); TEMP_BANNED [402] →
  ``temp_banned``; CLIENT_OUTDATED [405] and BAD_USER_AGENT [409] → ``client_outdated``
  (only a newer library helps); GENERIC [400] → ``auth_failure`` (the login itself was
  refused; retrying the same credentials does not help); INTERNAL_SERVER_ERROR [500],
  EXPERIMENTAL [501], SERVICE_UNAVAILABLE [503] and an unset reason → ``server_error``.
* whatsmeow has no distinct permanent-ban signal: a banned account is refused at login
  with one of the logout reasons above. ``banned`` is therefore only reported when the
  server's failure message says so.
* ``StreamErrorEv``: code 515 → ``restart_required`` (normal right after pairing), 503 →
  ``server_error``, anything else → ``stream_error``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from neonize.events import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    QREv,
    ReceiptEv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import JID, ConnectFailureReason, PairStatus
from neonize.proto.Neonize_pb2 import Receipt as ReceiptProto
from neonize.proto.Neonize_pb2 import TemporaryBan as TemporaryBanProto

from wafleet.engines.base import (
    ClientOutdated,
    Connected,
    ConnectionLost,
    EngineEvent,
    IncomingMessage,
    KeepAliveRestored,
    KeepAliveTimeout,
    LoggedOut,
    PairSuccess,
    QrCode,
    Receipt,
    Replaced,
    TemporaryBan,
)
from wafleet.states import Cause

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"

REASON_CAUSES: dict[int, Cause] = {
    ConnectFailureReason.GENERIC: Cause.AUTH_FAILURE,
    ConnectFailureReason.LOGGED_OUT: Cause.LOGGED_OUT,
    ConnectFailureReason.TEMP_BANNED: Cause.TEMP_BANNED,
    ConnectFailureReason.MAIN_DEVICE_GONE: Cause.LOGGED_OUT,
    ConnectFailureReason.UNKNOWN_LOGOUT: Cause.LOGGED_OUT,
    ConnectFailureReason.CLIENT_OUTDATED: Cause.CLIENT_OUTDATED,
    ConnectFailureReason.BAD_USER_AGENT: Cause.CLIENT_OUTDATED,
    ConnectFailureReason.INTERNAL_SERVER_ERROR: Cause.SERVER_ERROR,
    ConnectFailureReason.EXPERIMENTAL: Cause.SERVER_ERROR,
    ConnectFailureReason.SERVICE_UNAVAILABLE: Cause.SERVER_ERROR,
}


def reason_name(reason: int) -> str:
    try:
        return str(ConnectFailureReason.Name(reason))
    except ValueError:
        return f"reason {reason}"


def cause_for_reason(reason: int | None) -> Cause:
    """The cause for a connect-failure reason; unset (None/0) or unknown → server_error."""
    if not reason:
        return Cause.SERVER_ERROR
    return REASON_CAUSES.get(reason, Cause.SERVER_ERROR)


# --------------------------------------------------------------------------- JIDs


def jid_to_address(jid: Any) -> str:
    """A phone JID becomes ``+<number>`` (the form the rest of wafleet uses); other JIDs
    (groups, LIDs, broadcasts) stay ``user@server``. Device suffixes are dropped."""
    user, server = str(jid.User), str(jid.Server)
    if server == USER_SERVER and user:
        return f"+{user}"
    return f"{user}@{server}" if user else server


def address_to_jid(address: str) -> Any:
    """Inverse of `jid_to_address`: ``+15550001``, ``15550001`` or ``user@server``."""
    address = address.strip()
    if "@" in address:
        user, server = address.rsplit("@", 1)
        user = user.split(":", 1)[0]
    else:
        user, server = address.lstrip("+"), USER_SERVER
    if not user and server == USER_SERVER:
        raise ValueError(f"not a WhatsApp address: {address!r}")
    if server == USER_SERVER and not user.isdigit():
        raise ValueError(f"not a phone number: {address!r}")
    return JID(User=user, Server=server, Device=0, RawAgent=0, Integrator=0, IsEmpty=False)


def _sender_address(source: Any) -> str:
    sender = source.Sender
    # Newer accounts address contacts by LID; the phone number, when known, is SenderAlt.
    if sender.Server == LID_SERVER and source.HasField("SenderAlt"):
        alt = source.SenderAlt
        if alt.Server == USER_SERVER and alt.User:
            return jid_to_address(alt)
    return jid_to_address(sender)


def _ts(seconds: int, now: datetime) -> datetime:
    if seconds <= 0:
        return now
    # Go's Unix() is seconds; guard against a millisecond value all the same.
    if seconds > 10**11:
        seconds //= 1000
    return datetime.fromtimestamp(seconds, UTC)


# --------------------------------------------------------------------------- events


def message_text(msg: Any) -> str | None:
    """Text of a plain or extended text message; None for anything else (media, ...)."""
    if msg.conversation:
        return str(msg.conversation)
    if msg.HasField("extendedTextMessage") and msg.extendedTextMessage.text:
        return str(msg.extendedTextMessage.text)
    return None


def map_message(ev: Any, now: datetime) -> IncomingMessage | None:
    info = ev.Info
    source = info.MessageSource
    if source.IsFromMe:
        return None  # our own sends, echoed by other devices of the account
    text = message_text(ev.Message)
    if text is None:
        return None
    chat = jid_to_address(source.Chat)
    if chat == "status@broadcast":
        return None
    return IncomingMessage(
        id=str(info.ID),
        chat=chat,
        sender=_sender_address(source),
        text=text,
        at=_ts(int(info.Timestamp), now),
    )


_RECEIPT_STATUS = {
    ReceiptProto.DELIVERED: "DELIVERED",
    ReceiptProto.READ: "READ",
    ReceiptProto.PLAYED: "READ",
}


def map_receipt(ev: Any, now: datetime) -> list[Receipt]:
    status = _RECEIPT_STATUS.get(ev.Type)
    if status is None or ev.MessageSource.IsFromMe:
        return []  # our own devices' receipts, sender/retry/server notices
    at = _ts(int(ev.Timestamp), now)
    return [Receipt(message_id=str(mid), status=status, at=at) for mid in ev.MessageIDs]


def map_connect_failure(ev: Any) -> ConnectionLost:
    reason = int(ev.Reason) if ev.HasField("Reason") else 0
    message = str(ev.Message)
    detail = f"connect failure ({reason_name(reason) if reason else 'no reason'})"
    if message:
        detail += f": {message}"
    if "ban" in message.lower() and reason != ConnectFailureReason.TEMP_BANNED:
        return ConnectionLost(cause=Cause.BANNED, detail=detail)
    cause = cause_for_reason(reason)
    if cause is Cause.LOGGED_OUT:
        return LoggedOut(detail=detail)
    if cause is Cause.TEMP_BANNED:
        return TemporaryBan(detail=detail)
    if cause is Cause.CLIENT_OUTDATED:
        return ClientOutdated(detail=detail)
    return ConnectionLost(cause=cause, detail=detail)


def map_temporary_ban(ev: Any, now: datetime) -> TemporaryBan:
    seconds = int(ev.Expire)  # a duration (seconds from now), per goneonize's encoder
    expires_at = now + timedelta(seconds=seconds) if seconds > 0 else None
    code = TemporaryBanProto.TempBanReason.Name(ev.Code) if ev.Code else "unspecified"
    return TemporaryBan(detail=f"temporary ban ({code.lower()})", expires_at=expires_at)


def map_stream_error(ev: Any) -> ConnectionLost:
    code = str(ev.Code)
    detail = f"stream error {code}" if code else "stream error"
    if code == "515":
        return ConnectionLost(cause=Cause.RESTART_REQUIRED, detail=detail)
    if code == "503":
        return ConnectionLost(cause=Cause.SERVER_ERROR, detail=detail)
    return ConnectionLost(cause=Cause.STREAM_ERROR, detail=detail)


def map_logged_out(ev: Any) -> LoggedOut:
    reason = int(ev.Reason) if ev.HasField("Reason") else 0
    when = "at connect" if ev.OnConnect else "while connected"
    suffix = f" ({reason_name(reason)})" if reason else ""
    return LoggedOut(detail=f"logged out {when}{suffix}")


def map_pair_status(ev: Any) -> EngineEvent:
    if ev.Status == PairStatus.SUCCESS:
        jid = ev.ID
        return PairSuccess(
            phone=jid_to_address(JID(User=jid.User, Server=jid.Server)),
            jid=f"{jid.User}@{jid.Server}" if jid.User else "",
        )
    # A failed pairing handshake: the linking attempt is over, the user must rescan.
    return ConnectionLost(cause=Cause.AUTH_FAILURE, detail=f"pairing failed: {ev.Error}")


def map_event(ev: Any, now: datetime | None = None) -> list[EngineEvent]:
    """Every neonize event we care about → zero or more engine events."""
    now = now or datetime.now(UTC)
    if isinstance(ev, QREv):
        return [QrCode(code=str(ev.Codes[0]))] if ev.Codes else []
    if isinstance(ev, PairStatusEv):
        return [map_pair_status(ev)]
    if isinstance(ev, ConnectedEv):
        return [Connected(phone="")]  # the child fills phone/jid from the device store
    if isinstance(ev, DisconnectedEv):
        return [ConnectionLost(cause=Cause.NETWORK, detail="connection closed")]
    if isinstance(ev, LoggedOutEv):
        return [map_logged_out(ev)]
    if isinstance(ev, StreamReplacedEv):
        return [Replaced(detail="another client connected with this session")]
    if isinstance(ev, TemporaryBanEv):
        return [map_temporary_ban(ev, now)]
    if isinstance(ev, ConnectFailureEv):
        return [map_connect_failure(ev)]
    if isinstance(ev, ClientOutdatedEv):
        return [ClientOutdated(detail="WhatsApp rejected the client version")]
    if isinstance(ev, StreamErrorEv):
        return [map_stream_error(ev)]
    if isinstance(ev, KeepAliveTimeoutEv):
        return [KeepAliveTimeout()]
    if isinstance(ev, KeepAliveRestoredEv):
        return [KeepAliveRestored()]
    if isinstance(ev, MessageEv):
        msg = map_message(ev, now)
        return [msg] if msg is not None else []
    if isinstance(ev, ReceiptEv):
        return list(map_receipt(ev, now))
    return []


# The neonize event classes the child subscribes to (one handler per type, before connect).
SUBSCRIBED_EVENTS: tuple[type[Any], ...] = (
    PairStatusEv,
    ConnectedEv,
    DisconnectedEv,
    LoggedOutEv,
    StreamReplacedEv,
    TemporaryBanEv,
    ConnectFailureEv,
    ClientOutdatedEv,
    StreamErrorEv,
    KeepAliveTimeoutEv,
    KeepAliveRestoredEv,
    MessageEv,
    ReceiptEv,
)

_NETWORK_MARKERS = (
    "failed to dial",
    "no such host",
    "connection refused",
    "network is unreachable",
    "no route to host",
    "i/o timeout",
    "connection reset",
    "broken pipe",
    "eof",
    "tls handshake",
    "socks connect",
    "proxyconnect",
    "timeout",
)


def classify_connect_error(message: str) -> Cause:
    """The cause of an error string returned by neonize's blocking ``Neonize()`` call."""
    low = message.lower()
    if any(marker in low for marker in _NETWORK_MARKERS):
        return Cause.NETWORK
    if "outdated" in low or "405" in low:
        return Cause.CLIENT_OUTDATED
    return Cause.SERVER_ERROR
