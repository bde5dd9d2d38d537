"""POST /webhooks/hubspot: HubSpot's contact webhooks, verified by their signature
and published unchanged to the topic the pipeline's `marketing` source reads.

No API key here: HubSpot cannot send one, the signature is the authentication.
The answer is 204 only once the topic has acknowledged the batch; anything
else (401, 413, 400, 503) makes HubSpot retry or tells its operator why not,
and nothing reaches the topic.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Iterator

import anyio
from fastapi import APIRouter, Depends, Request, Response

from ...formats._common import iso_utc, load_json
from ...io.topics import Message, Topic, open_topic
from ...model import DecodeError
from ..config import Settings
from ..deps import SettingsDep, from_state
from ..errors import ApiError, ErrorBody
from ..hubspot_signature import SignatureError, verify_v2, verify_v3

log = logging.getLogger("singleview.serving")

RECEIVED_AT = "received_at"
# Publishes waiting for an acknowledgement at once; their own pool, so a slow
# topic cannot take the threads the rest of the API runs on.
PUBLISHERS = 8

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@contextmanager
def hubspot_publisher(state, settings: Settings) -> Iterator[None]:
    """Open the webhook's topic once per app (in the lifespan) and close it on the way out."""
    state.hubspot_topic = open_topic(settings.hubspot_topic) if settings.hubspot_topic else None
    state.webhook_publishers = anyio.CapacityLimiter(PUBLISHERS)
    try:
        yield
    finally:
        if state.hubspot_topic is not None:
            state.hubspot_topic.close()


def unavailable(detail: str) -> ApiError:
    return ApiError(503, "unavailable", detail, headers={"Retry-After": "30"})


async def client_secret(settings: SettingsDep) -> str:
    secret = settings.hubspot_client_secret
    if not secret:
        raise unavailable("HUBSPOT_CLIENT_SECRET is not set: this service cannot verify HubSpot's signatures")
    return secret


async def hubspot_topic(topic: Annotated[Topic | None, Depends(from_state("hubspot_topic"))]) -> Topic:
    if topic is None:
        raise unavailable("SINGLEVIEW_HUBSPOT_TOPIC is not set: there is nowhere to publish the events")
    return topic


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (never held whole)."""
    too_large = ApiError(413, "too_large", f"the body is over {limit} bytes, more than HubSpot sends "
                                           "(at most 100 events a request)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def signed_uri(request: Request, settings: Settings) -> str:
    """The target URL HubSpot signed: the configured one, else this request's URL with the
    path as sent on the wire (Starlette's `url` would show it percent-decoded)."""
    if settings.hubspot_webhook_url:
        return settings.hubspot_webhook_url
    path = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string", b"")
    uri = f"{request.url.scheme}://{request.url.netloc}{path.decode('latin-1')}"
    return f"{uri}?{query.decode('latin-1')}" if query else uri


def authenticate(request: Request, body: bytes, secret: str, settings: Settings) -> None:
    """v3 whenever its header is there (or v2 is not accepted); v2 only if allowed and announced."""
    headers = request.headers
    uri, method, now_ms = signed_uri(request, settings), request.method, time.time_ns() // 1_000_000
    try:
        if "x-hubspot-signature-v3" in headers or not settings.hubspot_accept_v2:
            verify_v3(secret, method, uri, body, headers.get("x-hubspot-signature-v3"),
                      headers.get("x-hubspot-request-timestamp"), now_ms)
        elif headers.get("x-hubspot-signature-version") == "v2":
            verify_v2(secret, method, uri, body, headers.get("x-hubspot-signature"))
        else:
            raise SignatureError("missing X-HubSpot-Signature-v3 (or X-HubSpot-Signature-Version: v2)")
    except SignatureError as exc:
        # HubSpot does not retry a 401: say here why, and over which URI, so a proxy that
        # changes the URL is found before many batches are refused.
        log.warning("HubSpot webhook refused: %s (signed URI %s)", exc, uri)
        raise ApiError(401, "unauthorized", f"not a verified HubSpot request: {exc}") from None


def check_batch(body: bytes) -> int:
    """HubSpot sends a JSON array of events; the events themselves are the pipeline's to judge."""
    try:
        batch = load_json(body)  # as the pipeline's decoders read it: UTF-8 JSON
    except DecodeError as exc:
        raise ApiError(400, "invalid_body", f"{str(exc).replace('message', 'the body', 1)[:200]}; "
                                            "HubSpot sends a JSON array of events") from None
    if batch is None:
        raise ApiError(400, "invalid_body", "the body is empty; HubSpot sends a JSON array of events")
    if not isinstance(batch, list):
        raise ApiError(400, "invalid_body", f"the body is a JSON {type(batch).__name__}, not an array of events")
    if not batch:
        raise ApiError(400, "invalid_body", "the body is an empty array: no events")
    return len(batch)


async def publish(topic: Topic, message: Message, publishers: anyio.CapacityLimiter) -> None:
    """Off the event loop (the publish blocks until acknowledged); a failure is a 503 so HubSpot retries."""
    try:
        await anyio.to_thread.run_sync(topic.publish, [message], limiter=publishers)
    except Exception as exc:
        log.warning("HubSpot batch not published to %s: %s: %s", topic.url, type(exc).__name__, str(exc)[:300])
        raise unavailable("the events could not be published; HubSpot retries the request") from None


RESPONSES = {
    204: {"description": "Published: the topic acknowledged the batch"},
    400: {"model": ErrorBody, "description": "The body is not a non-empty JSON array"},
    401: {"model": ErrorBody, "description": "Signature missing, wrong, or timestamp over 5 minutes off"},
    413: {"model": ErrorBody, "description": "Body over the byte cap (SINGLEVIEW_HUBSPOT_MAX_BODY_BYTES)"},
    503: {"model": ErrorBody, "description": "Secret or topic not configured, or the publish failed"},
}


@router.post("/hubspot", status_code=204, response_class=Response, responses=RESPONSES,
             summary="Receive HubSpot contact webhooks (signature v3) and publish them unchanged")
async def receive_hubspot(
    request: Request,
    secret: Annotated[str, Depends(client_secret)],
    topic: Annotated[Topic, Depends(hubspot_topic)],
    publishers: Annotated[anyio.CapacityLimiter, Depends(from_state("webhook_publishers"))],
    settings: SettingsDep,
) -> Response:
    received_at = iso_utc(datetime.now(timezone.utc))
    body = await read_capped(request, settings.hubspot_max_body_bytes)
    authenticate(request, body, secret, settings)
    check_batch(body)
    await publish(topic, Message(data=body, attributes={RECEIVED_AT: received_at}), publishers)
    return Response(status_code=204)
