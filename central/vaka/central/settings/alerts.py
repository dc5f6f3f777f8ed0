"""``[alerts]``: when an alert is raised before a night check, and where the webhook goes."""

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vaka.errors import ConfigError


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> str:
    """``url`` if it may receive webhooks: http(s) only, https unless the host is loopback."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as err:
        raise ConfigError(f"alerts.webhook_url is not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"alerts.webhook_url must be an http(s) URL, not {parts.scheme or 'schemeless'!r}"
        )
    if not host:
        raise ConfigError("alerts.webhook_url has no host")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"alerts.webhook_url must use https: plain http is allowed only to a loopback host "
            f"(127.0.0.1, ::1, localhost), not {host!r}"
        )
    return url


class AlertSettings(BaseModel):
    """``[alerts]`` in central's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: str | None = None
    webhook_secret_file: Path | None = None
    lead_min: int = Field(default=60, ge=1, le=24 * 60)
    check_every_s: float = Field(default=30, ge=1, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=50)
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    retry_min_s: float = Field(default=1.0, gt=0, le=600)
    retry_max_s: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_webhook_url(value)

    @model_validator(mode="after")
    def _secret(self) -> "AlertSettings":
        _check_secret_given(self)
        return self


def _check_secret_given(settings: AlertSettings) -> None:
    if settings.webhook_url is not None and settings.webhook_secret_file is None:
        raise ValueError("webhook_url needs webhook_secret_file (the events are signed)")
