"""Portal authentication: argon2 login against the shared ``users`` table (read-only),
and a signed HttpOnly SameSite=Lax session cookie carrying the email and the CSRF token.

The cookie is signed with a key *derived* from the portal key (HMAC with a purpose
label), so the portal key itself never signs anything a browser holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wafleet.db.engine import Database
from wafleet.db.models import Tenant, TenantMember, User
from wafleet.security import hash_password, verify_password

SESSION_COOKIE = "wafleet_session"
SESSION_MAX_AGE_S = 12 * 3600
MAX_PASSWORD_LEN = 4096
_SALT = "wafleet.portal.session.v1"


def derive_key(portal_key: str, purpose: str) -> bytes:
    return hmac.new(
        portal_key.encode(), f"wafleet-portal:{purpose}".encode(), hashlib.sha256
    ).digest()


@dataclass(frozen=True)
class WebSession:
    csrf: str
    email: str | None = None
    issued: float = 0.0


class SessionCodec:
    def __init__(self, portal_key: str, *, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._s = URLSafeTimedSerializer(derive_key(portal_key, "session-cookie"), salt=_SALT)

    def dumps(self, session: WebSession) -> str:
        return self._s.dumps({"c": session.csrf, "e": session.email, "t": session.issued})

    def loads(self, raw: str | None) -> WebSession | None:
        if not raw:
            return None
        try:
            data = self._s.loads(raw, max_age=self.max_age_s)
        except (BadSignature, ValueError, TypeError):
            return None  # forged, expired (SignatureExpired is a BadSignature) or garbage
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        email = data.get("e")
        issued = data.get("t")
        return WebSession(
            csrf=data["c"],
            email=email if isinstance(email, str) else None,
            issued=float(issued) if isinstance(issued, int | float) else 0.0,
        )


@dataclass
class SessionHolder:
    """Per-request view of the session; the middleware writes the cookie when changed."""

    session: WebSession | None
    dirty: bool = False

    def ensure(self, new_token: Callable[[], str]) -> WebSession:
        if self.session is None:
            self.session = WebSession(csrf=new_token())
            self.dirty = True
        return self.session

    def login(self, email: str, csrf: str) -> None:
        # A fresh CSRF token at login: a token seen before authentication is not reused.
        self.session = WebSession(csrf=csrf, email=email, issued=time.time())
        self.dirty = True

    def logout(self, csrf: str) -> None:
        self.session = WebSession(csrf=csrf)
        self.dirty = True


class SessionCookieMiddleware:
    """Decodes the session cookie into ``request.state.websession`` and re-issues it when
    a route changed it (pure ASGI, so streaming responses are untouched)."""

    def __init__(self, app: ASGIApp, codec: SessionCodec) -> None:
        self.app = app
        self.codec = codec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = Request(scope).cookies.get(SESSION_COOKIE)
        holder = SessionHolder(self.codec.loads(raw))
        scope.setdefault("state", {})["websession"] = holder
        secure = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and holder.dirty:
                headers = MutableHeaders(scope=message)
                if holder.session is None:
                    headers.append("set-cookie", self._cookie("", 0, secure))
                else:
                    value = self.codec.dumps(holder.session)
                    headers.append("set-cookie", self._cookie(value, self.codec.max_age_s, secure))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    def _cookie(value: str, max_age: int, secure: bool) -> str:
        parts = [f"{SESSION_COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly"]
        parts.append("SameSite=Lax")
        if secure:
            parts.append("Secure")
        return "; ".join(parts)


def session_holder(request: Request) -> SessionHolder:
    holder = getattr(request.state, "websession", None)
    if not isinstance(holder, SessionHolder):  # only if the middleware is missing
        holder = SessionHolder(None)
        request.state.websession = holder
    return holder


@dataclass(frozen=True)
class CurrentUser:
    email: str
    is_admin: bool
    tenants: tuple[str, ...]  # slugs the user is a member of, sorted


_dummy_hash: str | None = None


def _dummy() -> str:
    # Verifying against a real hash when the account does not exist keeps the answer
    # time the same, so the login form does not reveal which emails have accounts.
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password("wafleet-not-a-real-password")
    return _dummy_hash


async def authenticate(db: Database, email: str, password: str) -> str | None:
    """The normalised email when the credentials are right, else None."""
    email = email.strip().lower()
    if not email or not password or len(password) > MAX_PASSWORD_LEN or len(email) > 320:
        return None
    async with db.session() as s:
        user = (await s.execute(select(User).where(User.email == email))).scalar_one_or_none()
        stored = user.password_hash if user is not None else _dummy()
    # argon2 is deliberately slow (~50 ms): keep it off the event loop.
    ok = await asyncio.to_thread(verify_password, stored, password)
    return email if ok and user is not None else None


async def load_user(db: Database, email: str) -> CurrentUser | None:
    """The user behind a session, re-read at every request so a deleted user or a
    revoked admin flag takes effect at once."""
    async with db.session() as s:
        user = (await s.execute(select(User).where(User.email == email))).scalar_one_or_none()
        if user is None:
            return None
        rows = await s.execute(
            select(Tenant.slug)
            .join(TenantMember, TenantMember.tenant_id == Tenant.id)
            .where(TenantMember.user_id == user.id)
            .order_by(Tenant.slug)
        )
        return CurrentUser(
            email=user.email, is_admin=bool(user.is_admin), tenants=tuple(r[0] for r in rows)
        )
