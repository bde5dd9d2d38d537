"""HubSpot request signatures, as HubSpot's "Validating requests" page defines them.

Pure (no FastAPI): the route hands over method, URI, raw body and headers.

- v3 (`X-HubSpot-Signature-v3`, `X-HubSpot-Request-Timestamp`): base64 of
  HMAC-SHA256(client secret, method + URI + body + timestamp), where the URI
  has the twelve escapes HubSpot lists decoded; a timestamp (epoch millis)
  more than five minutes away from now is refused, so a captured request
  cannot be replayed later.
- v2 (`X-HubSpot-Signature-Version: v2`, `X-HubSpot-Signature`): hex
  SHA-256 of secret + method + URI + body. No timestamp: replayable, which is
  why the route accepts it only when asked to.

Comparisons are constant-time; a failure says what failed, never what the
right signature would have been.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

MAX_AGE_MS = 5 * 60 * 1000

# The escapes HubSpot decodes before signing the URI (its table: : / ? @ ! $ ' ( ) * , ;).
_SIGNED_ESCAPES = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                   "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_ESCAPE = re.compile("|".join(_SIGNED_ESCAPES))  # upper-case hex, as HubSpot's table writes them
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


class SignatureError(ValueError):
    """The request is not proven to come from HubSpot; the message says why (no secrets, no body)."""


def signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it: only the listed escapes decoded, everything else as sent."""
    return _ESCAPE.sub(lambda m: _SIGNED_ESCAPES[m.group(0)], uri)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    source = method.encode() + signed_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def check_timestamp(timestamp: str | None, now_ms: int) -> int:
    """Epoch millis within five minutes of now (either way: a clock far ahead would widen the replay window)."""
    if timestamp is None or not timestamp.strip():
        raise SignatureError("missing X-HubSpot-Request-Timestamp")
    if not _TIMESTAMP.fullmatch(timestamp.strip()):
        raise SignatureError("X-HubSpot-Request-Timestamp is not epoch milliseconds")
    millis = int(timestamp)
    if abs(now_ms - millis) > MAX_AGE_MS:
        raise SignatureError("X-HubSpot-Request-Timestamp is more than 5 minutes from now (replayed or clock skew)")
    return millis


def verify_v3(secret: str, method: str, uri: str, body: bytes, signature: str | None,
              timestamp: str | None, now_ms: int) -> None:
    if not signature:
        raise SignatureError("missing X-HubSpot-Signature-v3")
    check_timestamp(timestamp, now_ms)
    if not _same(signature, sign_v3(secret, method, uri, body, timestamp.strip())):
        raise SignatureError("X-HubSpot-Signature-v3 does not match this request")


def verify_v2(secret: str, method: str, uri: str, body: bytes, signature: str | None) -> None:
    if not signature:
        raise SignatureError("missing X-HubSpot-Signature")
    if not _same(signature.lower(), sign_v2(secret, method, uri, body)):
        raise SignatureError("X-HubSpot-Signature (v2) does not match this request")
