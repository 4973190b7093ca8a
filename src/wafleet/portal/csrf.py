"""CSRF protection: a random token lives in the signed session cookie; every state-
changing request must echo it, as the ``csrf_token`` form field or the ``x-csrf-token``
header (JavaScript fetches). Compared in constant time."""

from __future__ import annotations

import secrets

from fastapi import Request

from wafleet.security import constant_time_equals

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class CsrfError(Exception):
    """The request did not carry the session's CSRF token (→ 403)."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def submitted_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in _FORM_TYPES:
        form = await request.form()  # cached on the request: the endpoint reads it again
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def check_csrf(request: Request, expected: str | None) -> None:
    if not constant_time_equals(await submitted_token(request), expected):
        raise CsrfError("missing or invalid CSRF token; reload the page and try again")
