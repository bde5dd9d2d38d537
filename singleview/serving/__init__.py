"""The serving layer: FastAPI over customer_sv (docs/design.md section 5)."""
from .app import create_app
from .config import ConfigError, Settings

__all__ = ["create_app", "ConfigError", "Settings"]
