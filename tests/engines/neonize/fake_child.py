"""A scripted engine child: the real framed protocol, no neonize.

WhatsApp is unreachable from this machine, so a *live* neonize connection cannot be made
offline. This process stands in for the child where a test needs one (crash after
connect, QR rotation, a hung request), so the parent's real code paths — process
spawning, framing, crash and hang detection — run for real.

Behaviour is chosen by ``FAKE_CHILD_MODE`` (comma-separated):
``qr`` — connect answers "qr" and sends one QR code; ``connected`` — connect answers
"connected" and sends Connected; ``keepalive`` — after Connected, one KeepAliveTimeout;
``qr6`` — six rotated QR codes at once; ``drop_on_ping`` — a ping is answered, then the
connection "closes" (ConnectionLost network, as whatsmeow's Disconnected maps);
``hang_send`` — never answer send_text; ``abort_on_send`` — die like a Go fatal error
(SIGABRT, exit 134) on send_text.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading

from wafleet.engines.base import Connected, ConnectionLost, KeepAliveTimeout, QrCode
from wafleet.engines.neonize.protocol import encode_event, encode_frame, read_frame_sync


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    modes = set(os.environ.get("FAKE_CHILD_MODE", "qr").split(","))
    sock = socket.socket(fileno=args.fd)
    lock = threading.Lock()

    def send(obj: dict[str, object]) -> None:
        with lock:
            sock.sendall(encode_frame(obj))

    send({"hello": {"pid": os.getpid(), "neonize": "fake"}})
    send({"log": {"level": "INFO", "logger": "whatsmeow.Client", "msg": "fake child up"}})
    while True:
        frame = read_frame_sync(sock)
        if frame is None:
            return 0
        req_id, op = frame["id"], frame["op"]
        if op == "connect":
            if "connected" in modes:
                send({"id": req_id, "ok": True, "result": {"state": "connected"}})
                send({"event": encode_event(Connected(phone="+15550001", jid="15550001@s"))})
                if "keepalive" in modes:
                    send({"event": encode_event(KeepAliveTimeout())})
            elif "qr6" in modes:
                for i in range(1, 7):
                    send({"event": encode_event(QrCode(code=f"2@fake-{i}"))})
                send({"id": req_id, "ok": True, "result": {"state": "qr"}})
            else:
                send({"event": encode_event(QrCode(code="2@fake-1"))})
                send({"id": req_id, "ok": True, "result": {"state": "qr"}})
        elif op == "send_text":
            if "abort_on_send" in modes:
                os.kill(os.getpid(), signal.SIGABRT)
            if "hang_send" in modes:
                continue
            send({"id": req_id, "ok": True, "result": {"wa_id": "W1"}})
        elif op == "ping" and "drop_on_ping" in modes:
            send({"id": req_id, "ok": True, "result": {}})
            lost = ConnectionLost(detail="connection closed")
            send({"event": encode_event(lost)})
        elif op == "shutdown":
            send({"id": req_id, "ok": True, "result": {}})
            return 0
        else:
            send({"id": req_id, "ok": True, "result": {}})


if __name__ == "__main__":
    sys.exit(main())
