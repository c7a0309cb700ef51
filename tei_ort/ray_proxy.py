"""Serve's HTTP proxy: a request whose replica died answers 503, never a bare 500.

Ray Serve's proxy sends nothing when the replica running a request dies (its HTTP server
then answers ``500 Internal Server Error``). For a client that is the same state as "no
replica is up": retry later. ``AnswerUnavailable`` sends TEI's 503 body in that case; a
response the app started is passed through untouched.

Serve loads it from an environment variable read by the proxy process, so it must be set
where Ray starts (serve-ray sets it for the local Ray it starts; a cluster sets it in its
pods, see deploy/kuberay-rayservice.yaml)::

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=tei_ort.ray_proxy:proxy_middlewares
"""

from __future__ import annotations

import logging

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tei_ort.errors import UnhealthyError
from tei_ort.http.responses import error_response

logger = logging.getLogger(__name__)

#: routes whose errors have OpenAI's body
OPENAI_PATHS = frozenset({"/v1/embeddings", "/embeddings"})
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "tei_ort.ray_proxy:proxy_middlewares"


class AnswerUnavailable:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if started:
                raise
            logger.warning("request failed before its response started", exc_info=True)
        if not started:
            error = UnhealthyError("the replica serving this request stopped; retry")
            response = error_response(error, openai=scope["path"] in OPENAI_PATHS)
            await response(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    return [Middleware(AnswerUnavailable)]
