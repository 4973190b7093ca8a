"""Settings: every ``WAFLEET_*`` variable of the contract, validated at start-up.

`load_settings()` turns any validation failure into a `ConfigError` whose message is one
line naming the variable and the rule, so every process can exit 2 with it.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wafleet.errors import ConfigError

ENV_PREFIX = "WAFLEET_"
PORTAL_KEY_FILE = "portal.key"
MIN_PORTAL_KEY_LEN = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # "inf"/"nan" parse as floats but are never a sensible interval or bound
        allow_inf_nan=False,
    )

    data_dir: Path = Path("./wafleet-data")
    database_url: str = ""
    portal_key: str | None = None
    control_plane_url: str = "http://127.0.0.1:8100"
    engine: Literal["neonize", "simulator"] = "neonize"
    simulator_url: str = "ws://127.0.0.1:8300/ws"

    heartbeat_interval: float = Field(10.0, gt=0)
    stale_after: float = Field(30.0, gt=0)
    lease_ttl: float = Field(20.0, gt=0)

    reconnect_initial_delay: float = Field(1.0, gt=0)
    reconnect_max_delay: float = Field(120.0, gt=0)
    reconnect_max_attempts: int = Field(20, ge=1)
    reconnect_multiplier: float = Field(2.0, ge=1.0)
    reconnect_jitter: float = Field(0.2, ge=0.0, le=1.0)

    keepalive_interval: float = Field(15.0, gt=0)
    keepalive_timeout: float = Field(10.0, gt=0)

    chat_queue_max: int = Field(100, ge=1)
    worker_capacity: int = Field(5000, ge=1)
    connect_concurrency: int = Field(50, ge=1)

    webhook_allow_private: bool = False
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_timeout: float = Field(10.0, gt=0)

    alert_webhook_url: str | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["pretty", "json", "auto"] = "auto"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("engine", "log_format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, v: str) -> str:
        if v == "":
            return v  # filled from data_dir below
        scheme = urlsplit(v).scheme.split("+")[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must start with sqlite:/// or postgresql://")
        if scheme == "sqlite" and not v.split("+")[0].startswith("sqlite:///"):
            if not v.startswith("sqlite+aiosqlite:///"):
                raise ValueError("a SQLite URL is sqlite:///PATH")
        if scheme in {"postgresql", "postgres"}:
            parts = urlsplit(v)
            if not parts.hostname and "host=" not in v:
                raise ValueError("a PostgreSQL URL needs a host: postgresql://USER@HOST/DB")
            try:
                parts.port  # noqa: B018 - raises on a non-numeric or out-of-range port
            except ValueError:
                raise ValueError(
                    "invalid port in PostgreSQL URL: postgresql://USER@HOST:PORT/DB"
                ) from None
        return v

    @field_validator("portal_key")
    @classmethod
    def _check_portal_key(cls, v: str | None) -> str | None:
        if v == "":
            return None  # set but empty (e.g. `WAFLEET_PORTAL_KEY=` in .env) means unset
        if v is not None and len(v) < MIN_PORTAL_KEY_LEN:
            raise ValueError(f"must be at least {MIN_PORTAL_KEY_LEN} characters")
        return v

    @field_validator("control_plane_url", "alert_webhook_url")
    @classmethod
    def _check_http_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None if v == "" else v
        parts = urlsplit(v)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("simulator_url")
    @classmethod
    def _check_ws_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in {"ws", "wss"} or not parts.hostname:
            raise ValueError("must be a ws:// URL")
        return v

    @model_validator(mode="after")
    def _defaults_and_cross_checks(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'wafleet.db'}"
        if self.reconnect_max_delay < self.reconnect_initial_delay:
            raise ValueError(
                "WAFLEET_RECONNECT_MAX_DELAY: must be >= WAFLEET_RECONNECT_INITIAL_DELAY"
            )
        # A worker beats every HEARTBEAT_INTERVAL and renews its leases with the beat: a
        # shorter STALE_AFTER or LEASE_TTL would declare healthy workers dead.
        if self.stale_after <= self.heartbeat_interval:
            raise ValueError("WAFLEET_STALE_AFTER: must be > WAFLEET_HEARTBEAT_INTERVAL")
        if self.lease_ttl <= self.heartbeat_interval:
            raise ValueError("WAFLEET_LEASE_TTL: must be > WAFLEET_HEARTBEAT_INTERVAL")
        return self

    # ------------------------------------------------------------------ derived

    @property
    def is_postgres(self) -> bool:
        return urlsplit(self.database_url).scheme.split("+")[0] in {"postgresql", "postgres"}

    @cached_property
    def async_database_url(self) -> str:
        """The URL for SQLAlchemy's async engine (aiosqlite / asyncpg drivers)."""
        return to_async_url(self.database_url)

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / "sessions"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def resolve_portal_key(self, *, generate: bool = False) -> str:
        """The portal key: the variable, else the data dir's key file, else (``generate``)
        a new one written 0600. Raises ConfigError when none can be had."""
        if self.portal_key:
            return self.portal_key
        path = self.data_dir / PORTAL_KEY_FILE
        if path.exists():
            key = path.read_text().strip()
            if len(key) < MIN_PORTAL_KEY_LEN:
                raise ConfigError(
                    f"WAFLEET_PORTAL_KEY: the key in {path} is shorter than "
                    f"{MIN_PORTAL_KEY_LEN} characters; delete it or set the variable"
                )
            self.portal_key = key
            return key
        if not generate:
            raise ConfigError(
                "WAFLEET_PORTAL_KEY: not set and no generated key in "
                f"{path} (set it, >= {MIN_PORTAL_KEY_LEN} characters, or run `wafleet up` once)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        self.portal_key = key
        return key


def to_async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = first.get("loc") or ()
    msg = str(first.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if loc:
        var = ENV_PREFIX + str(loc[0]).upper()
        return f"{var}: {msg}"
    # model-level validators already name their variable
    return msg


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and .env), with ``overrides`` applied on top."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None
