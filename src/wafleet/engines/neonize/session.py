"""Inside the engine child: one neonize client, driven by the parent's requests.

Threads (why each exists):

* the *command thread* (`Session.run_command`, fed by child.py) makes every Go-side call
  one after another — neonize's Go side keeps clients in unsynchronised maps, so two
  concurrent calls can abort the process;
* the *connection thread* runs neonize's blocking ``connect()`` (the Go ``Neonize()`` call,
  which only returns when the connection's context is cancelled or the dial fails); Go
  delivers events on it, and our handlers only map them and write frames.

Nothing here retries: a dial error, a login refusal or a dropped connection is reported
once, and the parent retires this process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from neonize.client import NewClient
from neonize.exc import NeonizeError

from wafleet.engines.base import Connected, ConnectionLost, EngineEvent, PairCode, QrCode, Receipt
from wafleet.engines.neonize import mapping
from wafleet.engines.neonize.protocol import encode_event
from wafleet.states import Cause

Send = Callable[[dict[str, Any]], None]
Schedule = Callable[[str, dict[str, Any]], None]
_SENT_IDS_MAX = 10_000


class RemoteError(Exception):
    """A request failed; serialised into the reply's ``error`` object."""

    def __init__(
        self,
        kind: str,
        message: str,
        cause: Cause | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.cause = cause
        self.expires_at = expires_at

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.cause is not None:
            out["cause"] = self.cause.value
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at.isoformat()
        return out


class Session:
    CONNECTING, LIVE, ENDED = "connecting", "live", "ended"

    def __init__(self, send: Send, schedule: Schedule) -> None:
        self._send = send
        self._schedule = schedule  # queue work for the command thread
        self._lock = threading.Lock()
        self.client: Any = None
        self.phase = self.ENDED
        self._ready = threading.Event()
        self._connect_error: RemoteError | None = None
        self._connect_state = ""
        self._thread: threading.Thread | None = None
        self._logged_in = False
        # our stable message ids by WhatsApp's ids: receipts name WhatsApp's
        self._sent_ids: OrderedDict[str, str] = OrderedDict()

    # ------------------------------------------------------------------ commands
    def run_command(self, op: str, args: dict[str, Any]) -> Any:
        if op == "connect":
            return self.connect(args)
        if op == "send_text":
            return self.send_text(str(args["to"]), str(args["text"]), str(args["message_id"]))
        if op == "pair_phone":
            return self.pair_phone(str(args["phone"]))
        if op == "logout":
            return self.logout()
        if op == "fill_connected":
            return self._fill_connected()
        raise RemoteError("bad_request", f"unknown op {op!r}")

    def connect(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.client is not None:
            raise RemoteError("bad_request", "this engine process already made its connect")
        proxy = None
        if args.get("proxy"):
            from neonize._binder import ProxySettings

            proxy = ProxySettings(proxy_address=str(args["proxy"]))
        jid = None
        if args.get("jid"):
            from neonize.utils.jid import build_jid

            user, _, server = str(args["jid"]).partition("@")
            jid = build_jid(user, server or "s.whatsapp.net")
        client = NewClient(
            str(args["db"]),
            jid=jid,
            uuid=str(args["uuid"]),
            new_device=bool(args.get("new_device")),
        )
        for ev_type in mapping.SUBSCRIBED_EVENTS:
            client.event(ev_type)(self._on_event)
        client.event.qr(self._on_qr)
        self.client = client
        self.phase = self.CONNECTING
        self._thread = threading.Thread(
            target=self._run_connection,
            args=(client, proxy),
            name="neonize-connection",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if self._connect_error is not None:
            raise self._connect_error
        return {"state": self._connect_state}

    def send_text(self, to: str, text: str, message_id: str) -> dict[str, Any]:
        if self.phase != self.LIVE or not self._logged_in:
            raise RemoteError("not_connected", "not connected to WhatsApp")
        try:
            jid = mapping.address_to_jid(to)
        except ValueError as err:
            raise RemoteError("bad_request", str(err)) from err
        # neonize 0.5.2's SendMessage does not let the caller choose the message id:
        # WhatsApp's id is remembered so receipts can be reported under ours.
        resp = self.client.send_message(jid, text)
        wa_id = str(resp.ID)
        self._sent_ids[wa_id] = message_id
        while len(self._sent_ids) > _SENT_IDS_MAX:
            self._sent_ids.popitem(last=False)
        return {"wa_id": wa_id}

    def pair_phone(self, phone: str) -> dict[str, Any]:
        if self.phase != self.LIVE or self._logged_in:
            raise RemoteError(
                "bad_request", "pairing by phone needs a connection waiting for a link"
            )
        code = str(self.client.PairPhone(phone.lstrip("+"), show_push_notification=True))
        self.emit(PairCode(code=code))
        return {"code": code}

    def logout(self) -> dict[str, Any]:
        if self.client is None or self.phase != self.LIVE:
            raise RemoteError("not_connected", "not connected to WhatsApp")
        with self._lock:
            self.phase = self.ENDED  # what follows (LoggedOut, Disconnected) was asked for
        self.client.logout()
        return {}

    def stop(self) -> None:
        """Cancel the Go-side connection (may block for a long time on a hung dial)."""
        with self._lock:
            self.phase = self.ENDED
        if self.client is not None:
            self.client.stop()

    def _fill_connected(self) -> dict[str, Any]:
        phone, jid = "", ""
        try:
            me = self.client.get_me()
            if me.JID.User:
                phone = mapping.jid_to_address(me.JID)
                jid = f"{me.JID.User}@{me.JID.Server}"
        except Exception as err:  # the event is worth more than the number
            self._send(
                {
                    "log": {
                        "level": "WARNING",
                        "logger": "wafleet.child",
                        "msg": f"could not read own JID: {err}",
                    }
                }
            )
        self.emit(Connected(phone=phone, jid=jid))
        return {}

    # ------------------------------------------------------------------ connection thread
    def _run_connection(self, client: Any, proxy: Any) -> None:
        error = ""
        try:
            client.connect(proxy)
        except NeonizeError as err:
            error = str(err) or "connect failed"
        except Exception as err:  # anything from ctypes/neonize: report, don't die silently
            error = f"{type(err).__name__}: {err}"
        if error:
            self._end(ConnectionLost(cause=mapping.classify_connect_error(error), detail=error))

    def _resolve(self, state: str = "", error: RemoteError | None = None) -> None:
        self._connect_state = state
        self._connect_error = error
        self._ready.set()

    def _end(self, lost: ConnectionLost) -> None:
        """The connection is over by itself: one ConnectionLost, or a failed connect."""
        with self._lock:
            phase = self.phase
            self.phase = self.ENDED
        if phase == self.CONNECTING:
            self._resolve(
                error=RemoteError(
                    "connect_failed",
                    lost.detail or lost.cause.value,
                    cause=lost.cause,
                    expires_at=getattr(lost, "expires_at", None),
                )
            )
        elif phase == self.LIVE:
            self.emit(lost)

    def emit(self, ev: EngineEvent) -> None:
        self._send({"event": encode_event(ev)})

    def _on_qr(self, _client: Any, code: bytes) -> None:
        with self._lock:
            phase = self.phase
            if phase == self.CONNECTING:
                self.phase = self.LIVE
        if phase == self.ENDED:
            return
        self.emit(QrCode(code=code.decode() if isinstance(code, bytes) else str(code)))
        if phase == self.CONNECTING:
            self._resolve("qr")

    def _on_event(self, _client: Any, ev: Any) -> None:
        for mapped in mapping.map_event(ev, datetime.now(UTC)):
            if isinstance(mapped, ConnectionLost):
                self._end(mapped)
            elif isinstance(mapped, Connected):
                with self._lock:
                    phase = self.phase
                    if phase == self.CONNECTING:
                        self.phase = self.LIVE
                    self._logged_in = True
                if phase == self.ENDED:
                    continue
                # Reading our own JID is a Go call: the command thread makes it (serialised).
                self._schedule("fill_connected", {})
                if phase == self.CONNECTING:
                    self._resolve("connected")
            elif self.phase != self.ENDED:
                if isinstance(mapped, Receipt):
                    ours = self._sent_ids.get(mapped.message_id)
                    if ours is not None:
                        mapped = Receipt(message_id=ours, status=mapped.status, at=mapped.at)
                self.emit(mapped)
