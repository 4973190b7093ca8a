"""Request and response models: they make the OpenAPI schema complete and accurate
(schemathesis checks every response against it)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from wafleet.states import SessionState, TenantStatus, WorkerStatus
from wafleet.worker.rules import BotConfig

MAX_TEXT_LEN = 4096
MAX_TO_LEN = 64
# A phone number (+15559999) or a JID (15559999@s.whatsapp.net, 1234-5678@g.us).
TO_PATTERN = r"^(\+?[0-9]{3,20}|[A-Za-z0-9._+:-]{1,40}@[A-Za-z0-9.-]{1,40})$"
NOT_BLANK_PATTERN = r"\S"


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `unauthorized`.")
    message: str = Field(description="One line for people.")


class ErrorResponse(BaseModel):
    error: ErrorBody


# ---------------------------------------------------------------- status


class TenantInfo(BaseModel):
    slug: str
    name: str
    status: TenantStatus
    error_message: str | None


class SessionInfo(BaseModel):
    state: SessionState
    phone: str | None
    last_seen_at: datetime | None
    connected_since: datetime | None
    last_qr_at: datetime | None


class WorkerInfo(BaseModel):
    id: str
    host: str
    status: WorkerStatus
    last_heartbeat_at: datetime


class ReconnectInfo(BaseModel):
    active: bool
    attempt: int
    max_attempts: int
    next_retry_at: datetime | None


class DisconnectInfo(BaseModel):
    cause: str = Field(description="A cause of the contract's table, e.g. `network`.")
    action: str | None = Field(description="`retrying`, `needs_link`, `needs_operator` ...")
    at: datetime | None
    detail: str | None


class MessageCounts(BaseModel):
    in_24h: int
    out_24h: int
    pending_out: int


class StatusResponse(BaseModel):
    tenant: TenantInfo
    session: SessionInfo
    worker: WorkerInfo | None
    reconnect: ReconnectInfo
    last_disconnect: DisconnectInfo | None
    messages: MessageCounts


class QrResponse(BaseModel):
    state: SessionState
    qr: str | None = Field(description="The raw QR string, only while QR_READY.")
    qr_png: str | None = Field(description="data:image/png;base64,... of the same code.")
    expires_at: datetime | None


# ---------------------------------------------------------------- logs / events


class LogItem(BaseModel):
    id: int
    direction: Literal["in", "out"]
    chat: str
    sender: str
    body: str
    status: str
    created_at: datetime
    error: str | None = Field(default=None, description="Why a message FAILED.")


class LogsPage(BaseModel):
    items: list[LogItem]
    next_before: int | None = Field(description="Pass as `before` for the next page.")


class EventItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    at: datetime
    kind: str
    from_: str | None = Field(alias="from")
    to: str | None
    cause: str | None
    detail: str | None


class EventsPage(BaseModel):
    items: list[EventItem]
    next_before: int | None


class HourCount(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    hour: datetime = Field(description="Start of the hour (UTC).")
    in_: int = Field(alias="in")
    out: int


class HourlyStats(BaseModel):
    hours: list[HourCount] = Field(description="The last 24 hours, oldest first.")


# ---------------------------------------------------------------- actions / messages


class ActionAccepted(BaseModel):
    action: str
    command_id: int
    status: Literal["queued"] = "queued"


def _python_search(pattern: str) -> AfterValidator:
    # Validated with Python's `re.search`, the semantics schemathesis/hypothesis use for
    # the schema's `pattern`, so documented and enforced rules never disagree.
    rx = re.compile(pattern)

    def check(value: str) -> str:
        if not rx.search(value):
            raise ValueError(f"must match {pattern}")
        return value

    return AfterValidator(check)


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    return value


ToField = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TO_LEN,
        json_schema_extra={"pattern": TO_PATTERN},
        description="A phone number like +15559999 or a WhatsApp JID.",
        examples=["+15559999"],
    ),
    _python_search(TO_PATTERN),
    AfterValidator(_utf8),
]
TextField = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TEXT_LEN,
        json_schema_extra={"pattern": NOT_BLANK_PATTERN},
        description="1-4096 characters, not only whitespace.",
    ),
    _python_search(NOT_BLANK_PATTERN),
    AfterValidator(_utf8),
]


class SendMessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: ToField
    text: TextField


class PairPhoneRequest(BaseModel):
    phone: str = Field(
        pattern=r"^\+?[0-9]{6,20}$",
        description="The account's phone number, digits with an optional leading +.",
        examples=["+15550001"],
    )


class PairPhoneResponse(BaseModel):
    status: Literal["READY", "PENDING"] = Field(
        description="READY: `code` is set. PENDING: not issued yet (GET .../status later)."
    )
    code: str | None = Field(
        description="Type it on the phone: Linked devices → Link with phone number."
    )
    command_id: int


class SendAccepted(BaseModel):
    id: str = Field(description="The outbox message's WhatsApp id (stable across resends).")
    status: Literal["PENDING"] = "PENDING"


# ---------------------------------------------------------------- config


class ConfigResponse(BaseModel):
    config: BotConfig = Field(description="The bot rules; the webhook secret shows as ***.")
    version: int


# ---------------------------------------------------------------- admin


class AdminTenantItem(BaseModel):
    slug: str
    name: str
    status: TenantStatus
    session_state: SessionState
    phone: str | None
    worker_id: str | None
    last_seen_at: datetime | None
    last_disconnect: DisconnectInfo | None


class AdminTenantsPage(BaseModel):
    items: list[AdminTenantItem]


class WorkerItem(BaseModel):
    id: str
    host: str
    pid: int
    status: WorkerStatus
    started_at: datetime
    last_heartbeat_at: datetime
    tenants: int = Field(description="How many tenant leases it holds.")


class WorkersPage(BaseModel):
    items: list[WorkerItem]


class HealthResponse(BaseModel):
    status: Literal["ok"]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route may return."""
    return {code: {"model": ErrorResponse} for code in codes}
