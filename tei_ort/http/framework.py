"""The answers TEI's web framework (axum) gives before any route runs, copied.

- A POST body must be declared JSON (``Content-Type: application/json``, or a ``+json``
  type; parameters such as ``charset`` are fine): else **415** with axum's plain-text
  body. This also keeps a ``text/plain`` cross-origin POST (one a browser sends without a
  CORS preflight) from reaching a route behind a restrictive ``--cors-allow-origin``.
- An unknown path is **404** and a known path with another method **405** (with ``allow``,
  comma-joined as axum writes it), both with an empty body.
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

#: axum's ``MissingJsonContentType`` rejection text
JSON_CONTENT_TYPE_REQUIRED = "Expected request with `Content-Type: application/json`"

# RFC 7230 token characters (what a MIME type and subtype are made of)
_TOKEN = r"[!#$%&'*+.^_`|~0-9a-z-]+"
_MIME = re.compile(rf"({_TOKEN})/({_TOKEN})")
#: the order axum lists methods in ``allow`` (POST first on ``/``, HEAD after GET)
_METHOD_ORDER = ("POST", "GET", "HEAD")


def is_json_content_type(value: str | None) -> bool:
    """Whether a ``Content-Type`` value is JSON as axum's ``Json`` extractor decides it."""
    if value is None:
        return False
    essence = value.split(";", 1)[0].strip().lower()
    match = _MIME.fullmatch(essence)
    if match is None:
        return False
    kind, subtype = match.groups()
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def unsupported_media_type() -> Response:
    return PlainTextResponse(JSON_CONTENT_TYPE_REQUIRED, status_code=415)


def _allow(value: str) -> str:
    methods = {method.strip().upper() for method in value.split(",") if method.strip()}
    ordered = [m for m in _METHOD_ORDER if m in methods]
    return ",".join(ordered + sorted(methods - set(ordered)))


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (404, 405) as axum answers them: no body."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    for name in list(headers):
        if name.lower() == "allow":
            headers["allow"] = _allow(headers.pop(name))
    return Response(status_code=exc.status_code, headers=headers)
