"""Service settings, read from ``NEGOTIATION_*`` environment variables."""

from __future__ import annotations

import hashlib
import hmac
import os
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The documented development key, accepted only when no keys are configured outside production.
DEFAULT_API_KEY = "default-api-key"


class Settings(BaseSettings):
    """All configuration; each field is the environment variable ``NEGOTIATION_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="NEGOTIATION_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///./loads.db"
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    max_rounds: int = Field(3, ge=1, le=20)
    max_markup: Decimal = Field(Decimal("0.10"), ge=0, le=10)
    session_ttl_seconds: int = Field(3600, ge=1)
    require_sessions: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    #: Worker processes of ``negotiation serve``; unset: :func:`default_workers`.
    workers: int | None = Field(None, ge=1, le=64)
    log_level: str = "INFO"
    #: SQLite ``PRAGMA synchronous``: FULL survives power loss, NORMAL survives a killed process.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: Milliseconds a SQLite connection waits for another process's write lock.
    sqlite_busy_timeout_ms: int = Field(5000, ge=0)
    #: Database connections per worker process (SQLite: reader threads). PostgreSQL serves a
    #: round with less CPU from fewer busy backends; see docs/PERFORMANCE.md, sixth round.
    db_pool_size: int = Field(8, ge=1)
    #: PostgreSQL: how long a unit waits for a pooled connection before answering 503.
    db_pool_timeout_ms: int = Field(5000, ge=0)
    #: PostgreSQL: how long a statement waits for a row lock before the attempt counts as busy.
    lock_timeout_ms: int = Field(5000, ge=0)
    #: Extra attempts of a transaction that hit a lock, a serialization failure or a deadlock.
    db_retries: int = Field(3, ge=0, le=20)
    #: How long a completed ``Idempotency-Key`` is remembered (its response replayed).
    idempotency_retention_seconds: int = Field(24 * 3600, ge=60)
    #: How long an in-flight claim holds its key; after that a retry may take it over.
    idempotency_lease_seconds: int = Field(30, ge=1)
    #: How long a retry waits for an in-flight first request to finish before answering 409.
    idempotency_wait_ms: int = Field(2000, ge=0, le=60_000)
    #: Browser origins allowed to call the API (CORS); empty: no CORS headers at all.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    #: ``GET /metrics`` without an API key (for a scraper inside a trusted network).
    metrics_public: bool = False
    #: Encrypts and signs the pages' login cookie; unset: derived from the API keys (so every
    #: worker and copy of the service agrees, and changing the keys ends every login).
    ui_secret: SecretStr | None = None

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @model_validator(mode="after")
    def _production_needs_keys(self) -> Settings:
        if self.env != "production":
            return self
        if not self.api_keys:
            raise ValueError(
                "NEGOTIATION_ENV=production requires NEGOTIATION_API_KEYS "
                "(comma-separated); the development key is refused in production"
            )
        if any(k.get_secret_value() == DEFAULT_API_KEY for k in self.api_keys):
            raise ValueError(
                f"NEGOTIATION_API_KEYS contains the development key {DEFAULT_API_KEY!r}, "
                "which is refused in production: configure keys of your own"
            )
        return self

    @property
    def uses_default_key(self) -> bool:
        """True when no keys are configured and the development key is in force."""
        return not self.api_keys

    @cached_property
    def ui_cookie_secret(self) -> bytes:
        """The 32-byte key of the login cookie: from ``UI_SECRET``, else from the API keys."""
        if self.ui_secret is not None:
            material = self.ui_secret.get_secret_value().encode()
        else:
            material = b"\0".join(sorted(self.accepted_keys))
        return hmac.new(b"negotiation ui login cookie", material, hashlib.sha256).digest()

    @cached_property
    def accepted_keys(self) -> tuple[bytes, ...]:
        """The keys a request may present, as bytes for constant-time comparison."""
        if not self.api_keys:
            return (DEFAULT_API_KEY.encode(),)
        return tuple(k.get_secret_value().encode() for k in self.api_keys)


def get_settings() -> Settings:
    """Settings from the environment (a new object each call, so tests can change the env)."""
    return Settings()


class ConfigurationError(SystemExit):
    """Invalid settings: exits the process with a message naming each problem (no traceback)."""


#: The most workers ``negotiation serve`` starts unless told: each holds up to
#: ``DB_POOL_SIZE`` PostgreSQL connections, and PostgreSQL allows 100 by default.
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One worker per CPU this process may run on, at most :data:`MAX_DEFAULT_WORKERS`.

    One process runs one event loop on one core: with a single worker a second core served
    nothing (docs/PERFORMANCE.md, "The process and the framework").
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, MAX_DEFAULT_WORKERS))


def settings_or_exit() -> Settings:
    """:func:`get_settings`, or :class:`ConfigurationError` saying plainly what to fix.

    The message names the variables and the problems, never the values (they may be keys).
    """
    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = "_".join(str(part) for part in error["loc"]).upper()
            where = f"NEGOTIATION_{name}: " if name else ""
            problems.append(f"  - {where}{error['msg'].removeprefix('Value error, ')}")
        heading = "negotiation: invalid configuration, the service will not start:"
        raise ConfigurationError("\n".join([heading, *problems])) from None
