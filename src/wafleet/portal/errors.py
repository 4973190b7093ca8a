"""Errors a portal route turns into an answer: JSON ``{"error": {"code", "message"}}``
under ``/api/``, an HTML error page elsewhere."""

from __future__ import annotations

from typing import Any


class PortalError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class LoginRequired(PortalError):
    def __init__(self) -> None:
        super().__init__(401, "login_required", "log in first")
