"""GET /portal: the support agent's page (docs/design.md section 5).

Plain HTML, CSS and JS from singleview/serving/static/, no build step. The page
and its assets are served without a key; the page's own fetches to
/customers-sv send `Authorization: Bearer <key>` (kept in sessionStorage).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from .errors import ApiError

router = APIRouter(tags=["portal"], include_in_schema=False)

ASSETS = {
    "portal.html": "text/html; charset=utf-8",
    "portal.js": "text/javascript; charset=utf-8",
    "portal.css": "text/css; charset=utf-8",
}

# Everything from our own origin, nothing inline: customer data is rendered with
# textContent, and this stops any script that might slip in anyway.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=None)
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


@router.get("/portal", response_class=Response)
def portal() -> Response:
    return _serve("portal.html")


@router.get("/portal/{asset}", response_class=Response)
def portal_asset(asset: str) -> Response:
    if asset not in ASSETS or asset == "portal.html":
        raise ApiError(404, "not_found", f"no portal asset {asset!r}")
    return _serve(asset)
