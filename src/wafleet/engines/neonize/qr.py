"""Our own QR expiry: neonize never tells Python that the QR codes ran out.

whatsmeow rotates the codes of one pairing attempt itself (the first lives 60 s, each of
the next five 20 s) and hands each new one to the qr callback; after the last one it just
stops. `QrSchedule` mirrors that rotation from the codes we see, so the engine knows each
code's expiry and when the attempt as a whole has timed out (→ `QrTimeout`).
"""

from __future__ import annotations

from dataclasses import dataclass

QR_FIRST_TTL = 60.0
QR_NEXT_TTL = 20.0
QR_CODES = 6
# How long past a code's expiry we wait for whatsmeow's next code before giving up: the
# rotation runs in another process, so allow for a little scheduling slack.
QR_ROTATION_GRACE = 5.0


@dataclass
class QrSchedule:
    first_ttl: float = QR_FIRST_TTL
    next_ttl: float = QR_NEXT_TTL
    codes: int = QR_CODES
    grace: float = QR_ROTATION_GRACE
    seen: int = 0
    expires: float | None = None  # monotonic expiry of the current code

    def on_code(self, now: float) -> float:
        """Record a new code shown at ``now``; returns its TTL in seconds."""
        ttl = self.first_ttl if self.seen == 0 else self.next_ttl
        self.seen += 1
        self.expires = now + ttl
        return ttl

    @property
    def last(self) -> bool:
        return self.seen >= self.codes

    def deadline(self) -> float | None:
        """Monotonic time at which the pairing attempt times out, None before any code."""
        if self.expires is None:
            return None
        return self.expires if self.last else self.expires + self.grace

    def timed_out(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def reset(self) -> None:
        self.seen = 0
        self.expires = None
