"""Settings for the serving layer, from the environment and the command line."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from ..io import indexes
from ..io.urls import check_topic_url

DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27017"
DEFAULT_DATABASE = "singleview"
# HubSpot sends at most 100 events a request, one property each (a value is at most 65,536
# characters): 8 MiB holds that, and stays under Pub/Sub's 10 MB message limit.
HUBSPOT_MAX_BODY_BYTES = 8 * 1024 * 1024


class ConfigError(RuntimeError):
    """The service must not start with this configuration."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").lower() in ("1", "true", "yes")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    mongo_uri: str = DEFAULT_MONGO_URI
    database: str = DEFAULT_DATABASE
    collection: str = "customer_sv"
    # repr=False: keys must never reach a log line through a repr of the settings.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    dev: bool = False
    default_limit: int = 50
    max_limit: int = 200
    mongo_timeout_ms: int = 2000
    # Currencies whose stats.lifetime_value.<CUR> gets an index at start-up.
    index_currencies: tuple[str, ...] = indexes.DEFAULT_CURRENCIES
    regex_max_length: int = 256
    # POST /webhooks/hubspot: the app's client secret signs HubSpot's requests (never in a repr).
    hubspot_client_secret: str | None = field(default=None, repr=False)
    hubspot_topic: str | None = None  # pubsub://projects/P/topics/T or kafka://HOST:PORT/TOPIC
    # The target URL exactly as configured in HubSpot, when a proxy changes what the app sees.
    hubspot_webhook_url: str | None = None
    hubspot_max_body_bytes: int = HUBSPOT_MAX_BODY_BYTES
    hubspot_accept_v2: bool = False  # v2 signatures carry no timestamp: replayable, so off by default
    # The segment read model (serving/segments.py): how often it catches up with the change
    # log between queries, and how long start-up waits for its first load.
    segments_refresh_seconds: float = 5.0
    segments_start_wait: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        values: dict = {}
        if env.get("SINGLEVIEW_HOST"):
            values["host"] = env["SINGLEVIEW_HOST"]
        if env.get("SINGLEVIEW_PORT"):
            values["port"] = int(env["SINGLEVIEW_PORT"])
        if env.get("MONGODB_URI"):
            values["mongo_uri"] = env["MONGODB_URI"]
        if env.get("SINGLEVIEW_DATABASE"):
            values["database"] = env["SINGLEVIEW_DATABASE"]
        values["api_keys"] = _split(env.get("SINGLEVIEW_API_KEYS"))
        if _flag(env, "SINGLEVIEW_DEV"):
            values["dev"] = True
        if env.get(indexes.CURRENCIES_ENV):
            values["index_currencies"] = indexes.index_currencies(env)
        values.update(_hubspot_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def check(self) -> None:
        """Refuse to run without API keys unless in development mode, or with a topic that is no topic."""
        if not self.api_keys and not self.dev:
            raise ConfigError(
                "no API key configured: set SINGLEVIEW_API_KEYS (comma-separated) "
                "or start with --dev for local development"
            )
        if self.hubspot_topic:
            try:
                check_topic_url(self.hubspot_topic)
            except ValueError as exc:
                raise ConfigError(f"SINGLEVIEW_HUBSPOT_TOPIC: {exc}") from None
        if self.hubspot_max_body_bytes < 1:
            raise ConfigError("SINGLEVIEW_HUBSPOT_MAX_BODY_BYTES must be a positive number of bytes")


def _hubspot_from_env(env: Mapping[str, str]) -> dict:
    values: dict = {}
    for name, key in (("HUBSPOT_CLIENT_SECRET", "hubspot_client_secret"),
                      ("SINGLEVIEW_HUBSPOT_TOPIC", "hubspot_topic"),
                      ("SINGLEVIEW_HUBSPOT_WEBHOOK_URL", "hubspot_webhook_url")):
        if env.get(name, "").strip():
            values[key] = env[name].strip()
    if env.get("SINGLEVIEW_HUBSPOT_MAX_BODY_BYTES"):
        try:
            values["hubspot_max_body_bytes"] = int(env["SINGLEVIEW_HUBSPOT_MAX_BODY_BYTES"])
        except ValueError:
            raise ConfigError("SINGLEVIEW_HUBSPOT_MAX_BODY_BYTES must be a number of bytes") from None
    values["hubspot_accept_v2"] = _flag(env, "SINGLEVIEW_HUBSPOT_ACCEPT_V2")
    return values
