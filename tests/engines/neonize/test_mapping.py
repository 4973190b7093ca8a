"""neonize's real protobuf events through the mapping (no network, no child process)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
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
from neonize.proto.Neonize_pb2 import (
    JID,
    ConnectFailureReason,
    MessageInfo,
    MessageSource,
    PairStatus,
)
from neonize.proto.Neonize_pb2 import Receipt as ReceiptProto
from neonize.proto.Neonize_pb2 import TemporaryBan as TemporaryBanProto
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as E2EMessage

from wafleet.engines.base import (
    ClientOutdated,
    Connected,
    ConnectionLost,
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
from wafleet.engines.neonize import mapping
from wafleet.states import CAUSE_ACTIONS, Action, Cause

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> JID:
    return JID(User=user, Server=server, Device=device, RawAgent=0, Integrator=0, IsEmpty=False)


def one(ev: object) -> object:
    out = mapping.map_event(ev, NOW)
    assert len(out) == 1, out
    return out[0]


# ------------------------------------------------------------------ connection events


def test_qr_event_gives_the_first_code() -> None:
    got = one(QREv(Codes=["2@abc,def", "2@ghi,jkl"]))
    assert got == QrCode(code="2@abc,def")
    assert mapping.map_event(QREv(Codes=[]), NOW) == []


def test_pair_success_carries_phone_and_jid() -> None:
    ev = PairStatusEv(ID=jid("15550001", device=12), Status=PairStatus.SUCCESS, Platform="android")
    assert one(ev) == PairSuccess(phone="+15550001", jid="15550001@s.whatsapp.net")


def test_pair_error_ends_the_link_attempt() -> None:
    got = one(PairStatusEv(Status=PairStatus.ERROR, Error="bad signature"))
    assert isinstance(got, ConnectionLost)
    assert got.cause is Cause.AUTH_FAILURE
    assert "bad signature" in got.detail


def test_connected() -> None:
    assert isinstance(one(ConnectedEv(status=True)), Connected)


def test_disconnected_is_a_network_loss() -> None:
    got = one(DisconnectedEv(status=True))
    assert type(got) is ConnectionLost
    assert got.cause is Cause.NETWORK


@pytest.mark.parametrize("on_connect", [True, False])
def test_logged_out(on_connect: bool) -> None:
    got = one(LoggedOutEv(OnConnect=on_connect, Reason=ConnectFailureReason.LOGGED_OUT))
    assert isinstance(got, LoggedOut)
    assert got.cause is Cause.LOGGED_OUT
    assert ("at connect" if on_connect else "while connected") in got.detail
    assert "LOGGED_OUT" in got.detail


def test_logged_out_without_reason() -> None:
    got = one(LoggedOutEv())
    assert isinstance(got, LoggedOut)
    assert got.cause is Cause.LOGGED_OUT


def test_stream_replaced() -> None:
    got = one(StreamReplacedEv())
    assert isinstance(got, Replaced)
    assert CAUSE_ACTIONS[got.cause] is Action.NEEDS_OPERATOR


def test_temporary_ban_expiry_is_a_duration_from_now() -> None:
    ev = TemporaryBanEv(Code=TemporaryBanProto.SEND_TO_TOO_MANY_PEOPLE, Expire=3600)
    got = one(ev)
    assert isinstance(got, TemporaryBan)
    assert got.cause is Cause.TEMP_BANNED
    assert got.expires_at == NOW + timedelta(hours=1)
    assert "send_to_too_many_people" in got.detail


def test_temporary_ban_without_expiry() -> None:
    got = one(TemporaryBanEv())
    assert isinstance(got, TemporaryBan)
    assert got.expires_at is None


EXPECTED_REASON_CAUSES = {
    0: Cause.SERVER_ERROR,  # unset
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


def test_every_reason_of_the_enum_is_covered() -> None:
    assert set(EXPECTED_REASON_CAUSES) - {0} == set(ConnectFailureReason.values())


@pytest.mark.parametrize(
    ("reason", "cause"),
    list(EXPECTED_REASON_CAUSES.items()),
    ids=["UNSET"] + [ConnectFailureReason.Name(r) for r in list(EXPECTED_REASON_CAUSES)[1:]],
)
def test_connect_failure_reason(reason: int, cause: Cause) -> None:
    ev = (
        ConnectFailureEv(Message="refused")
        if reason == 0
        else ConnectFailureEv(Reason=reason, Message="refused")
    )
    assert ev.HasField("Reason") is (reason != 0)
    got = one(ev)
    assert isinstance(got, ConnectionLost)
    assert got.cause is cause
    assert "refused" in got.detail
    expected_type = {
        Cause.LOGGED_OUT: LoggedOut,
        Cause.TEMP_BANNED: TemporaryBan,
        Cause.CLIENT_OUTDATED: ClientOutdated,
    }.get(cause, ConnectionLost)
    assert type(got) is expected_type


def test_connect_failure_naming_a_ban_is_banned() -> None:
    got = one(ConnectFailureEv(Reason=ConnectFailureReason.GENERIC, Message="account banned"))
    assert isinstance(got, ConnectionLost)
    assert got.cause is Cause.BANNED


def test_client_outdated() -> None:
    got = one(ClientOutdatedEv())
    assert isinstance(got, ClientOutdated)
    assert got.cause is Cause.CLIENT_OUTDATED


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("515", Cause.RESTART_REQUIRED),
        ("503", Cause.SERVER_ERROR),
        ("500", Cause.STREAM_ERROR),
        ("", Cause.STREAM_ERROR),
    ],
)
def test_stream_error(code: str, cause: Cause) -> None:
    got = one(StreamErrorEv(Code=code))
    assert isinstance(got, ConnectionLost)
    assert got.cause is cause


def test_keepalive_timeout_and_restored() -> None:
    assert isinstance(one(KeepAliveTimeoutEv(ErrorCount=2, LastSuccess=1)), KeepAliveTimeout)
    assert isinstance(one(KeepAliveRestoredEv()), KeepAliveRestored)


def test_every_subscribed_event_maps_to_something_or_is_a_message() -> None:
    assert QREv not in mapping.SUBSCRIBED_EVENTS  # QR codes come through the qr callback
    for cls in mapping.SUBSCRIBED_EVENTS:
        assert cls in {MessageEv, ReceiptEv} or mapping.map_event(cls(), NOW)


# ------------------------------------------------------------------ messages and receipts


def message(
    text_msg: E2EMessage,
    *,
    from_me: bool = False,
    chat: JID | None = None,
    sender: JID | None = None,
    ts: int = 1772366400,
) -> MessageEv:
    source = MessageSource(
        Chat=chat or jid("15559999"), Sender=sender or jid("15559999"), IsFromMe=from_me
    )
    return MessageEv(
        Info=MessageInfo(MessageSource=source, ID="3EB0ABC", Timestamp=ts), Message=text_msg
    )


def test_conversation_message() -> None:
    got = one(message(E2EMessage(conversation="price?")))
    assert got == IncomingMessage(
        id="3EB0ABC",
        chat="+15559999",
        sender="+15559999",
        text="price?",
        at=datetime.fromtimestamp(1772366400, UTC),
    )


def test_extended_text_message() -> None:
    got = one(message(E2EMessage(extendedTextMessage=ExtendedTextMessage(text="hello there"))))
    assert isinstance(got, IncomingMessage)
    assert got.text == "hello there"


def test_group_message_keeps_the_group_chat() -> None:
    got = one(
        message(
            E2EMessage(conversation="hi"),
            chat=jid("1203630", "g.us"),
            sender=jid("15551234", device=3),
        )
    )
    assert isinstance(got, IncomingMessage)
    assert (got.chat, got.sender) == ("1203630@g.us", "+15551234")


def test_lid_sender_uses_the_phone_number_when_known() -> None:
    source = MessageSource(
        Chat=jid("987", "lid"), Sender=jid("987", "lid"), SenderAlt=jid("15557777")
    )
    ev = MessageEv(
        Info=MessageInfo(MessageSource=source, ID="X1", Timestamp=1),
        Message=E2EMessage(conversation="hey"),
    )
    got = one(ev)
    assert isinstance(got, IncomingMessage)
    assert got.sender == "+15557777"
    assert got.chat == "987@lid"


@pytest.mark.parametrize(
    "ev",
    [
        message(E2EMessage(conversation="echo"), from_me=True),
        message(E2EMessage()),  # media / unsupported: no text
        message(E2EMessage(conversation="story"), chat=jid("status", "broadcast")),
    ],
    ids=["from-me", "no-text", "status-broadcast"],
)
def test_messages_we_do_not_answer(ev: MessageEv) -> None:
    assert mapping.map_event(ev, NOW) == []


def test_missing_timestamp_uses_now() -> None:
    got = one(message(E2EMessage(conversation="x"), ts=0))
    assert isinstance(got, IncomingMessage)
    assert got.at == NOW


@pytest.mark.parametrize(
    ("rtype", "status"),
    [
        (ReceiptProto.DELIVERED, "DELIVERED"),
        (ReceiptProto.READ, "READ"),
        (ReceiptProto.PLAYED, "READ"),
    ],
)
def test_receipts(rtype: int, status: str) -> None:
    ev = ReceiptEv(
        MessageSource=MessageSource(Chat=jid("15559999"), Sender=jid("15559999")),
        MessageIDs=["A1", "A2"],
        Timestamp=1772366400,
        Type=rtype,
    )
    at = datetime.fromtimestamp(1772366400, UTC)
    assert mapping.map_event(ev, NOW) == [
        Receipt(message_id="A1", status=status, at=at),
        Receipt(message_id="A2", status=status, at=at),
    ]


@pytest.mark.parametrize(
    "rtype",
    [ReceiptProto.SENDER, ReceiptProto.RETRY, ReceiptProto.READ_SELF, ReceiptProto.SERVER_ERROR],
)
def test_receipts_we_ignore(rtype: int) -> None:
    ev = ReceiptEv(MessageSource=MessageSource(Chat=jid("1")), MessageIDs=["A1"], Type=rtype)
    assert mapping.map_event(ev, NOW) == []


# ------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("address", "user", "server"),
    [
        ("+15550001", "15550001", "s.whatsapp.net"),
        ("15550001", "15550001", "s.whatsapp.net"),
        ("1203630@g.us", "1203630", "g.us"),
        ("15550001:4@s.whatsapp.net", "15550001", "s.whatsapp.net"),
    ],
)
def test_address_to_jid(address: str, user: str, server: str) -> None:
    got = mapping.address_to_jid(address)
    assert (got.User, got.Server) == (user, server)
    assert mapping.jid_to_address(got) in {address, f"+{user}", f"{user}@{server}"}


@pytest.mark.parametrize("bad", ["", "+", "hello", "+1 555"])
def test_address_to_jid_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        mapping.address_to_jid(bad)


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            "failed to dial whatsapp web websocket: dial tcp: lookup web.whatsapp.com on "
            "10.0.0.53:53: no such host",
            Cause.NETWORK,
        ),
        ("dial tcp 127.0.0.1:1: connect: connection refused", Cause.NETWORK),
        ("websocket: bad handshake (405 outdated)", Cause.CLIENT_OUTDATED),
        ("something unexpected", Cause.SERVER_ERROR),
    ],
)
def test_classify_connect_error(message: str, cause: Cause) -> None:
    assert mapping.classify_connect_error(message) is cause
