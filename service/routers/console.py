"""`/console`: the ops console, a static page with plain JavaScript served from package data.

The page itself is open (it holds no data); everything it shows comes from the `/v1` routes with
the key the operator types in, which stays in that browser tab's sessionStorage.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from contract.errors import NotFoundError

router = APIRouter(tags=["console"], include_in_schema=False)

ASSETS = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    media = ASSETS.get(name)
    if media is None:
        raise NotFoundError(f"no console file {name}")
    body = resources.files("service.console").joinpath(name).read_bytes()
    return Response(body, media_type=f"{media}; charset=utf-8", headers=HEADERS)


@router.get("/console")
def console() -> Response:
    """The ops console."""
    return _asset("index.html")


@router.get("/console/{name}")
def console_asset(name: str) -> Response:
    return _asset(name)
