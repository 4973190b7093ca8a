"""The control API's refusal: raised by the simulator core, answered by `http_api`."""

from __future__ import annotations


class ApiError(Exception):
    """A control-API refusal: HTTP ``status`` with a JSON ``{"error": {code, message}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
