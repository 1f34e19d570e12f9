"""Service settings, read from ``NEGOTIATION_*`` environment variables."""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
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
    log_level: str = "INFO"
    #: SQLite ``PRAGMA synchronous``: FULL survives power loss, NORMAL survives a killed process.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: Milliseconds a SQLite connection waits for another process's write lock.
    sqlite_busy_timeout_ms: int = Field(5000, ge=0)
    db_pool_size: int = Field(10, ge=1)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @model_validator(mode="after")
    def _production_needs_keys(self) -> Settings:
        if self.env == "production" and not self.api_keys:
            raise ValueError(
                "NEGOTIATION_ENV=production requires NEGOTIATION_API_KEYS "
                "(comma-separated); the development key is refused in production"
            )
        return self

    @property
    def uses_default_key(self) -> bool:
        """True when no keys are configured and the development key is in force."""
        return not self.api_keys

    @cached_property
    def accepted_keys(self) -> tuple[bytes, ...]:
        """The keys a request may present, as bytes for constant-time comparison."""
        if not self.api_keys:
            return (DEFAULT_API_KEY.encode(),)
        return tuple(k.get_secret_value().encode() for k in self.api_keys)


def get_settings() -> Settings:
    """Settings from the environment (a new object each call, so tests can change the env)."""
    return Settings()
