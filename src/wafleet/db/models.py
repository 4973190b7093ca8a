"""The data model of ARCHITECTURE.md ("The data model")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wafleet.db.base import Base, UTCDateTime, utcnow
from wafleet.states import SessionState, TenantStatus, WorkerStatus

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[TenantMember]] = relationship(back_populates="user")


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.ACTIVE.value)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    # Bot rules and webhook, as validated by wafleet.worker.rules.BotConfig.
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    members: Mapped[list[TenantMember]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan"
    )
    session: Mapped[WhatsAppSession | None] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", uselist=False
    )


class TenantMember(Base):
    __tablename__ = "tenant_members"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16), default="owner")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class WhatsAppSession(Base):
    """One per tenant: the connection's health indicators."""

    __tablename__ = "whatsapp_sessions"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(
        String(16), default=SessionState.DISCONNECTED.value, index=True
    )
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    jid: Mapped[str | None] = mapped_column(String(128), default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    connected_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_qr: Mapped[str | None] = mapped_column(Text, default=None)
    last_qr_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    qr_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    pair_code: Mapped[str | None] = mapped_column(String(32), default=None)
    last_disconnect_cause: Mapped[str | None] = mapped_column(String(32), default=None)
    last_disconnect_action: Mapped[str | None] = mapped_column(String(32), default=None)
    last_disconnect_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_disconnect_detail: Mapped[str | None] = mapped_column(Text, default=None)
    reconnect_active: Mapped[bool] = mapped_column(Boolean, default=False)
    reconnect_attempt: Mapped[int] = mapped_column(Integer, default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ban_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="session")


class SessionCredential(Base):
    """Engine credentials kept in the shared database (multi-worker mode)."""

    __tablename__ = "session_credentials"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    engine: Mapped[str] = mapped_column(String(16), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WorkerProcess(Base):
    __tablename__ = "worker_processes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=WorkerStatus.RUNNING.value, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    capacity: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    # Written with each heartbeat: tenants held, connected, queue depths, outbox backlog.
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TenantLease(Base):
    """Which worker runs a tenant; ``epoch`` is the fencing token, bumped at every claim."""

    __tablename__ = "tenant_leases"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class MessageLog(Base):
    """Inbound RECEIVED→PROCESSED|FAILED; outbound PENDING→SENT→DELIVERED→READ|FAILED."""

    __tablename__ = "message_logs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "direction", "wa_id", name="uq_message_logs_wa_id"),
        Index("ix_message_logs_tenant_status", "tenant_id", "direction", "status"),
        Index("ix_message_logs_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(3))
    wa_id: Mapped[str] = mapped_column(String(128))
    chat: Mapped[str] = mapped_column(String(128))
    sender: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # outbound reply: the inbound row it answers
    reply_to_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ConnectionEvent(Base):
    """The connection timeline: every state transition, disconnect and operator action."""

    __tablename__ = "connection_events"
    __table_args__ = (Index("ix_connection_events_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16), default=None)
    to_state: Mapped[str | None] = mapped_column(String(16), default=None)
    cause: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None)
    # the lease epoch the writing worker held: an audit trail of fencing
    epoch: Mapped[int | None] = mapped_column(BigInteger, default=None)


class TenantCommand(Base):
    """Requests (restart, relink, logout, pause, resume, send, pair-phone, config) waiting
    for the worker that holds the tenant; ``processed_at`` set once applied."""

    __tablename__ = "tenant_commands"
    __table_args__ = (Index("ix_tenant_commands_pending", "processed_at", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str | None] = mapped_column(String(320), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)
