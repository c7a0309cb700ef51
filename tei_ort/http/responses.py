"""HTTP plumbing of the routes: bodies in (with the payload limit), JSON and errors out.

``error_response`` is the one place a ``RequestError`` becomes an HTTP answer: TEI's
``{"error", "error_type"}`` body, OpenAI's ``{"message", "code", "type"}`` on the
OpenAI routes, or Cohere's ``{"id", "message"}`` on Cohere's embed routes, with the status
the error class declares.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from tei_ort.errors import PayloadTooLargeError, RequestError

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

#: axum's answer to a body over ``DefaultBodyLimit`` (TEI's ``--payload-limit``)
PAYLOAD_TOO_LARGE = "Failed to buffer the request body: length limit exceeded"

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content, option=JSON_OPTIONS),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_response(exc: RequestError, *, openai: bool = False, cohere: bool = False) -> Response:
    """The one place errors become HTTP: TEI's body, OpenAI's or Cohere's on their routes.

    A body over the payload limit is refused before any route runs, as TEI's framework
    (axum) does it: plain text, on every route.
    """
    if isinstance(exc, PayloadTooLargeError):
        return PlainTextResponse(exc.message, exc.status_code)
    if cohere:
        return json_response({"id": str(uuid.uuid4()), "message": exc.message}, exc.status_code)
    if openai:
        body: dict[str, Any] = {
            "message": exc.message,
            "code": exc.status_code,
            "type": exc.error_type,
        }
    else:
        body = exc.to_dict()
    return json_response(body, exc.status_code)


def internal_error_response(*, openai: bool = False, cohere: bool = False) -> Response:
    """A bug: answered without a stack trace (it is logged)."""
    if cohere:
        return json_response({"id": str(uuid.uuid4()), "message": "internal error"}, 500)
    body: dict[str, Any] = (
        {"message": "internal error", "code": 500, "type": "Backend"}
        if openai
        else {"error": "internal error", "error_type": "Backend"}
    )
    return json_response(body, 500)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to be over ``limit`` bytes;
    ``ClientDisconnected`` when the client goes away before sending all of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(PAYLOAD_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(PAYLOAD_TOO_LARGE)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected from None
    return b"".join(chunks)


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; cancel it if the client goes away first (its queued inputs drop)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnected


async def _wait_disconnect(request: Request) -> None:
    """Return when the client disconnects (the body has already been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
