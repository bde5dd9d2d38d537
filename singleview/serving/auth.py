"""API-key authentication: `Authorization: Bearer <key>`, compared in constant time."""
from __future__ import annotations

import hmac

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .deps import SettingsDep
from .errors import ApiError

bearer = HTTPBearer(auto_error=False, description="API key from SINGLEVIEW_API_KEYS")


def key_matches(given: str, keys: tuple[str, ...]) -> bool:
    """Constant time in the key material: every configured key is compared."""
    given_b = given.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given_b, key.encode())
    return ok


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    if not settings.api_keys and settings.dev:
        return  # development mode without keys: open (warned loudly at start-up)
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": "Bearer"})
    if not key_matches(credentials.credentials, settings.api_keys):
        raise ApiError(403, "forbidden", "API key not accepted")
