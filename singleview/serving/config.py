"""Settings for the serving layer, from the environment and the command line."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from ..io import indexes

DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27017"
DEFAULT_DATABASE = "singleview"


class ConfigError(RuntimeError):
    """The service must not start with this configuration."""


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
        if env.get("SINGLEVIEW_DEV", "").lower() in ("1", "true", "yes"):
            values["dev"] = True
        if env.get(indexes.CURRENCIES_ENV):
            values["index_currencies"] = indexes.index_currencies(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def check(self) -> None:
        """Refuse to run without API keys unless in development mode."""
        if not self.api_keys and not self.dev:
            raise ConfigError(
                "no API key configured: set SINGLEVIEW_API_KEYS (comma-separated) "
                "or start with --dev for local development"
            )
