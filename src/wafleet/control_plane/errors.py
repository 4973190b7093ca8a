"""One error format for every failure: ``{"error": {"code": "...", "message": "..."}}``.

Bad input is a 4xx with a one-line message, a database outage a 503, and anything else a
generic 500 that is logged (with the trace) but never shown to the caller.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DatabaseError, DataError, DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from wafleet.logging import get_logger

log = get_logger("wafleet.control_plane")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by dependencies and routes; rendered by the handler below."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_json(status: int, code: str, message: str, **kw: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, **kw)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "request"


def validation_message(exc: RequestValidationError) -> str:
    errors = list(exc.errors())
    if not errors:
        return "invalid request"
    first = errors[0]
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = _loc(tuple(first.get("loc", ())))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_json(exc.status, exc.code, exc.message, headers=exc.headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (not UTF-8, broken form data): bad input is
        # 422 everywhere in this API.
        return error_json(422, "invalid_request", "body: could not be parsed (send UTF-8 JSON)")
    code = _CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_json(exc.status_code, code, detail, headers=exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_json(422, "invalid_request", validation_message(exc))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    first = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else type(exc).__name__
    log.warning("database error", path=request.url.path, error=first)
    return error_json(503, "database_unavailable", "the database is unavailable; try again")


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    return error_json(422, "invalid_data", "the database refused a value of this request")


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    kind = "response_validation" if isinstance(exc, ResponseValidationError) else "unhandled"
    log.error("internal error", path=request.url.path, kind=kind, exc_info=exc)
    return error_json(500, "internal_error", "internal error (logged by the control plane)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # A locked or unreachable database is an outage, not a bug in the request.
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(InterfaceError, _database_error)
    # Not a database file, no schema (never migrated), lost connection ...
    app.add_exception_handler(DatabaseError, _database_error)
    # The driver's own connection failures (PostgreSQL stopped: connection refused, "the
    # database system is shutting down") arrive unwrapped or as a bare DBAPIError.
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    try:
        import asyncpg

        app.add_exception_handler(asyncpg.PostgresConnectionError, _database_error)
        app.add_exception_handler(asyncpg.CannotConnectNowError, _database_error)
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        pass
    # e.g. a NUL character PostgreSQL refuses in text: the caller's input.
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _server_error)
