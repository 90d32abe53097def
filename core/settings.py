"""The settings schema: every name and default of DESIGN.md, one place.

Only `app/` reads the environment (it instantiates `Settings`); every other part
receives the values it needs. Secrets are `SecretStr` so that a repr, a log line or
an exception never shows them.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]
CommaInts = Annotated[list[int], NoDecode]
Secrets = Annotated[list[SecretStr], NoDecode]


def _split(value: object) -> object:
    """Comma-separated environment values become lists; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# What each required setting should look like, for the one-line start-up error.
EXPECTED: dict[str, str] = {
    "PUBLIC_BASE_URL": "the public https URL of this backend, e.g. https://openclaw.example",
    "ADMIN_API_KEY": "a random string of at least 24 characters",
    "PADDLE_WEBHOOK_SECRETS": "Paddle notification secrets, comma-separated (pdl_ntfset_...)",
    "PADDLE_API_KEY": "a Paddle API key (pdl_live_... or pdl_sdbx_...)",
    "PADDLE_PRICE_MONTHLY": "the Paddle price id of the monthly plan (pri_...)",
    "PADDLE_PRICE_LIFETIME": "the Paddle price id of the lifetime plan (pri_...)",
    "TELEGRAM_BOT_TOKEN": "the bot token from @BotFather (123456:ABC...)",
    "OPS_CHAT_ID": "the numeric id of the operators' Telegram group (e.g. -1001234567890)",
    "ADMIN_USER_IDS": "numeric Telegram user ids of the admins, comma-separated",
    "HCLOUD_TOKEN": "a Hetzner Cloud API token with read/write access",
    "SSH_PRIVATE_KEY_PATH": "the path of the ed25519 private key used to reach customer servers",
    "BACKEND_IPS": "this backend's public IPs or CIDRs, comma-separated (SSH is allowed only "
    "from these)",
    "TRUSTED_PROXIES": "IPs or CIDRs of reverse proxies, comma-separated",
}


class Settings(BaseSettings):
    """Every setting of the service. Field names are the environment names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Required by `run`.
    public_base_url: str
    admin_api_key: SecretStr
    paddle_webhook_secrets: Secrets = Field(min_length=1)
    paddle_api_key: SecretStr
    paddle_price_monthly: str = Field(pattern=r"^pri_[A-Za-z0-9]+$")
    paddle_price_lifetime: str = Field(pattern=r"^pri_[A-Za-z0-9]+$")
    telegram_bot_token: SecretStr
    ops_chat_id: int
    admin_user_ids: CommaInts = Field(min_length=1)
    hcloud_token: SecretStr
    ssh_private_key_path: Path
    backend_ips: CommaList = Field(min_length=1)

    # Optional, with defaults.
    database_path: Path = Path("data/openclaw-hosted.db")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    trusted_proxies: CommaList = []
    admin_rate_limit_per_s: float = Field(default=10, gt=0)
    paddle_api_base: str = "https://api.paddle.com"
    paddle_signature_tolerance_s: int = Field(default=300, ge=0)
    paddle_client_token: str = ""
    paddle_environment: Literal["production", "sandbox"] = "production"
    telegram_api_base: str = "https://api.telegram.org"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: SecretStr = SecretStr("")
    hcloud_endpoint: str = "https://api.hetzner.cloud/v1"
    hcloud_server_type: str = "cax11"
    hcloud_image: str = "ubuntu-24.04"
    hcloud_locations: CommaList = ["fsn1", "nbg1", "hel1"]
    max_servers: int = Field(default=100, ge=0)
    ssh_port: int = Field(default=22, ge=1, le=65535)
    openclaw_version: str = "2026.9.6"
    gateway_port: int = Field(default=18789, ge=1, le=65535)
    smtp_url: SecretStr = SecretStr("")
    email_from: str = ""
    alert_email: str = ""
    lifetime_cap: int = Field(default=100, ge=0)
    price_monthly_usd: float = 29
    price_lifetime_usd: float = 149
    eur_usd: float = 1.08
    backup_dir: Path = Path("data/backups")
    backup_s3_url: SecretStr = SecretStr("")
    log_format: Literal["text", "json"] = "text"
    health_check_interval_s: int = Field(default=300, gt=0)
    status_check_interval_s: int = Field(default=300, gt=0)
    resource_check_interval_s: int = Field(default=3600, gt=0)
    billing_tick_s: int = Field(default=60, gt=0)
    start_grace_s: int = Field(default=90, ge=0)
    health_check_timeout_s: float = Field(default=5, gt=0)
    health_check_concurrency: int = Field(default=400, gt=0)
    disk_alert_percent: float = Field(default=85, gt=0, le=100)
    gateway_memory_alert_mb: int = Field(default=1536, gt=0)
    suspension_warning_hours: float = Field(default=24, ge=0)
    # Fleet upgrades (/upgrade, POST /api/fleet/upgrade): the defaults of a rollout.
    rollout_batch_size: int = Field(default=5, ge=1, le=100)
    rollout_max_failures: int = Field(default=2, ge=1)
    rollout_soak_s: int = Field(default=1800, ge=0, le=7 * 24 * 3600)

    # The billing policy's day counts (DESIGN.md "Billing policy").
    past_due_suspend_days: float = Field(default=7, ge=0)
    cancel_grace_days: float = Field(default=3, ge=0)
    destroy_after_days: float = Field(default=30, ge=0)
    snapshot_retention_days: float = Field(default=30, ge=0)
    login_token_days: float = Field(default=7, gt=0)

    @field_validator(
        "paddle_webhook_secrets",
        "admin_user_ids",
        "backend_ips",
        "trusted_proxies",
        "hcloud_locations",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split(value)

    @field_validator("admin_api_key")
    @classmethod
    def _long_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 24:
            raise ValueError("must be at least 24 characters")
        return value

    @field_validator("paddle_api_key", "hcloud_token")
    @classmethod
    def _present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", value.get_secret_value()):
            raise ValueError("must look like 123456:ABC-def")
        return value

    @field_validator("paddle_webhook_secrets")
    @classmethod
    def _secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not any(secret.get_secret_value() for secret in value):
            raise ValueError("needs at least one secret")
        return value

    @field_validator("backend_ips", "trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError("each entry must be an IP address or CIDR") from None
        return value

    @field_validator("public_base_url", "paddle_api_base", "telegram_api_base", "hcloud_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies]


class StorageSettings(BaseSettings):
    """The one setting `migrate` and `restore` need, so they run without the rest."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_path: Path = Path("data/openclaw-hosted.db")


def secret_values(settings: Settings) -> list[str]:
    """Every secret's value, for the log filter that keeps them out of every line."""
    values = [
        settings.admin_api_key,
        settings.paddle_api_key,
        settings.telegram_bot_token,
        settings.hcloud_token,
        settings.telegram_webhook_secret,
        settings.smtp_url,
        settings.backup_s3_url,
        *settings.paddle_webhook_secrets,
    ]
    return [v.get_secret_value() for v in values if len(v.get_secret_value()) >= 6]
