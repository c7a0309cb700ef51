"""The Starlette application: routes, API-key check, CORS, and the engine's life cycle.

``create_app(settings, model)`` takes a loaded model (``tei_ort.model.loading.LoadedModel`` or
anything with ``info``, ``tokenizer`` and ``engine``; an optional ``dense`` callable maps
pooled vectors through the model's Dense layers) and returns an ASGI app whose lifespan
starts and stops the inference threads. ``companions`` run beside HTTP on the same
``Infer`` (one queue, batcher and engine): each is entered after the engine threads start
and left before they stop (the gRPC server of ``--grpc-port``). ``tracer`` turns tracing on
(see tracing.py).
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tei_ort.http.docs import docs_routes
from tei_ort.http.framework import http_exception
from tei_ort.http.routes import Routes
from tei_ort.serving.handlers import Handlers
from tei_ort.serving.infer import Infer, ServedModel
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.tracing import Tracer, TracingMiddleware
from tei_ort.settings import Settings

T = TypeVar("T", bound="Served")

#: something that serves beside HTTP on the app's Infer while the app runs
Companion = Callable[[Infer], AbstractAsyncContextManager[Any]]


class ApiKeyMiddleware:
    """``--api-key``: the guarded routes need ``Authorization: Bearer <key>``.

    As TEI's auth layer: a guarded path (and ``POST /``) without the key gets a bare 401
    whatever the method (with the key, a wrong method is a 405); health, metrics, the
    docs, ``GET /`` and paths that do not exist (404) stay open.
    """

    def __init__(
        self,
        app: ASGIApp,
        api_key: str,
        guarded: frozenset[str],
        roots: frozenset[str] = frozenset({"/"}),
    ) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.guarded = guarded
        self.roots = roots  # GET is health (open), POST is inference (guarded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._guarded(scope) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        await Response(status_code=401)(scope, receive, send)

    def _guarded(self, scope: Scope) -> bool:
        method = scope["method"]
        if method == "OPTIONS":  # CORS preflights are answered before the key is checked
            return False
        path = scope["path"]
        return path in self.guarded or (path in self.roots and method == "POST")

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self.expected)
        return False


def create_app(
    settings: Settings,
    model: ServedModel,
    *,
    metrics: Metrics | None = None,
    tracer: Tracer | None = None,
    companions: Sequence[Companion] = (),
) -> Starlette:
    """The HTTP server for ``model`` under ``settings`` (see the module docstring)."""
    infer = Infer(settings, model, metrics=metrics, tracer=tracer)
    api = Routes(Handlers(settings, infer))

    lifespan = serving_lifespan(infer, companions)

    public = [
        Route("/health", api.health, methods=["GET"]),
        Route("/ping", api.health, methods=["GET"]),
        Route("/metrics", api.metrics_route, methods=["GET"]),
        *docs_routes(),
        Route("/api-doc/openapi.json", api.openapi, methods=["GET"]),
    ]
    guarded = [
        Route("/info", api.info_route, methods=["GET"]),
        Route("/embed", api.embed, methods=["POST"]),
        Route("/embed_all", api.embed_all, methods=["POST"]),
        Route("/embed_sparse", api.embed_sparse, methods=["POST"]),
        Route("/predict", api.predict, methods=["POST"]),
        Route("/rerank", api.rerank, methods=["POST"]),
        Route("/v1/rerank", api.rerank_documents, methods=["POST"]),
        Route("/v2/rerank", api.rerank_documents, methods=["POST"]),
        Route("/v2/embed", api.cohere_embed_v2, methods=["POST"]),
        Route("/v1/embed", api.cohere_embed_v1, methods=["POST"]),
        Route("/similarity", api.similarity, methods=["POST"]),
        Route("/tokenize", api.tokenize, methods=["POST"]),
        Route("/decode", api.decode, methods=["POST"]),
        Route("/v1/embeddings", api.openai_embeddings, methods=["POST"]),
        Route("/embeddings", api.openai_embeddings, methods=["POST"]),
        Route("/vertex", api.vertex, methods=["POST"]),
        Route("/invocations", api.default, methods=["POST"]),
    ]
    routes = [*public, *guarded, Route("/", _root(api), methods=["GET", "POST"])]
    guarded_paths = frozenset(route.path for route in guarded)
    app = assemble_app(
        settings, routes, lifespan, tracer, guarded_paths, frozenset({"/"}), api, infer.metrics
    )
    app.state.infer = infer
    return app


def assemble_app(
    settings: Settings,
    routes: Sequence[BaseRoute],
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]],
    tracer: Tracer | None,
    guarded: frozenset[str],
    roots: frozenset[str],
    api: object,
    metrics: object,
) -> Starlette:
    """The Starlette app of the one-model and several-model servers: the middleware stack
    (``guarded`` and ``roots`` as in ApiKeyMiddleware), the framework's error answers, and
    the ``app.state`` that the process layer and the tests read."""
    app = Starlette(
        routes=routes,
        middleware=middleware_stack(settings, tracer, guarded, roots),
        lifespan=lifespan,
        exception_handlers={HTTPException: http_exception},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.api = api
    return app


def _root(api: Routes) -> Callable[..., Any]:
    async def root(request: Any) -> Any:
        if request.method == "POST":
            return await api.default(request)
        return await api.health(request)

    return root


class Served(Protocol):
    """What an app's lifespan starts and stops: one model's Infer, or the several models'."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def serving_lifespan(
    served: T, companions: Sequence[Callable[[T], AbstractAsyncContextManager[Any]]]
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Start ``served``, enter each companion (the gRPC server beside HTTP), and undo both
    in reverse when the app stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await served.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                for companion in companions:
                    await stack.enter_async_context(companion(served))
                yield
        finally:
            await served.stop()

    return lifespan


def middleware_stack(
    settings: Settings, tracer: Tracer | None, guarded: frozenset[str], roots: frozenset[str]
) -> list[Middleware]:
    """Tracing (outermost: its span covers refusals too), CORS, then the API key."""
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origin or ("*",)),
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "authorization"],
        ),
    ]
    if settings.api_key:
        key = settings.api_key
        middleware.append(Middleware(ApiKeyMiddleware, api_key=key, guarded=guarded, roots=roots))
    if tracer is not None:
        middleware.insert(0, Middleware(TracingMiddleware, tracer=tracer))
    return middleware
