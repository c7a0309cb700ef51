"""The HTTP server of several models (``--model-id`` repeated): TEI's routes, routed by name.

- TEI's routes answer for the first model unless the body names another in a ``"model"``
  field (the OpenAI and Cohere routes carry it anyway); an unknown name is 422.
- ``/models/{name}/...`` answers every route of one model (``/models/{name}/info``,
  ``POST /models/{name}`` as ``POST /``), for clients that cannot add a body field.
- ``/v1/models`` lists the served models as OpenAI does; ``/info`` describes the first
  model; ``/health`` is 200 only when every model can run; ``/metrics`` carries a ``model``
  label on every ``te_*`` series.

Each model is served by its own ``Routes`` (the one-model endpoints), so every route
behaves per model exactly as in a one-model server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from tei_ort.errors import RequestError
from tei_ort.http.app import assemble_app, serving_lifespan
from tei_ort.http.docs import docs_routes
from tei_ort.http.openapi import openapi_document
from tei_ort.http.responses import error_response, json_response, read_body
from tei_ort.http.routes import Routes
from tei_ort.http.schemas import parse_json
from tei_ort.serving.infer import failure_label
from tei_ort.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tei_ort.serving.registry import Registry, Served
from tei_ort.serving.tracing import Tracer
from tei_ort.settings import Settings

#: something that serves beside HTTP on the models while the app runs (gRPC)
ModelsCompanion = Callable[[Registry], AbstractAsyncContextManager[Any]]

#: POST routes: path -> the ``Routes`` endpoint that answers it
POST_ROUTES = {
    "/embed": "embed",
    "/embed_all": "embed_all",
    "/embed_sparse": "embed_sparse",
    "/predict": "predict",
    "/rerank": "rerank",
    "/v1/rerank": "rerank_documents",
    "/v2/rerank": "rerank_documents",
    "/v2/embed": "cohere_embed_v2",
    "/v1/embed": "cohere_embed_v1",
    "/similarity": "similarity",
    "/tokenize": "tokenize",
    "/decode": "decode",
    "/v1/embeddings": "openai_embeddings",
    "/embeddings": "openai_embeddings",
    "/vertex": "vertex",
    "/invocations": "default",
    "/": "default",
}
#: the OpenAI routes answer errors in OpenAI's shape
OPENAI_PATHS = frozenset({"/v1/embeddings", "/embeddings"})
#: Cohere's embed routes answer errors in Cohere's shape
COHERE_PATHS = frozenset({"/v2/embed", "/v1/embed"})
#: GET routes of one model under /models/{name}
MODEL_GET_ROUTES = {
    "/": "health",
    "/health": "health",
    "/ping": "health",
    "/info": "info_route",
    "/metrics": "metrics_route",
    "/api-doc/openapi.json": "openapi",
}


def requested_model(data: Any) -> str | None:
    """The ``"model"`` a body names (also inside Hugging Face's ``"parameters"``)."""
    if not isinstance(data, dict):
        return None
    name = data.get("model")
    parameters = data.get("parameters")
    if name is None and isinstance(parameters, dict):
        name = parameters.get("model")
    return name if isinstance(name, str) else None


def replayed(request: Request, body: bytes) -> Request:
    """``request`` again with its body already read: the chosen model's route reads it."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()  # a disconnect, watched by the route

    return Request(request.scope, receive)


class ModelRoutes:
    """The endpoints of a several-model server over one ``Routes`` per model."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.settings = registry.settings
        self.routes: dict[str, Routes] = {
            served.name: Routes(served.handlers) for served in registry.models
        }
        # longest first, so that a name that extends another one (`a` and `a/b`) wins
        self._prefixes = sorted(self.routes, key=len, reverse=True)
        self.created = int(time.time())
        # the first model's requests and limits, with the routes of every model
        limits = replace(self.first.limits, served_models=tuple(registry.names))
        self.openapi_bytes = orjson.dumps(openapi_document(limits))

    @property
    def first(self) -> Routes:
        return self.routes[self.registry.first.name]

    def _refuse(self, exc: RequestError, path: str) -> Response:
        self.registry.first.infer.metrics.failure(failure_label(exc))
        return error_response(exc, openai=path in OPENAI_PATHS, cohere=path in COHERE_PATHS)

    # -- TEI's routes, selected by the body ---------------------------------------------------

    def post(self, path: str) -> Callable[[Request], Any]:
        endpoint = POST_ROUTES[path]

        async def dispatch(request: Request) -> Response:
            try:
                body = await read_body(request, self.settings.payload_limit)
                served = self.registry.select(requested_model(parse_json(body)))
            except RequestError as exc:
                return self._refuse(exc, path)
            response: Response = await getattr(self.routes[served.name], endpoint)(
                replayed(request, body)
            )
            return response

        return dispatch

    async def health(self, request: Request) -> Response:
        if await self.registry.health():
            return Response(status_code=200)
        return json_response({"error": "unhealthy", "error_type": "Unhealthy"}, 503)

    async def root(self, request: Request) -> Response:
        if request.method == "POST":
            response: Response = await self.post("/")(request)
            return response
        return await self.health(request)

    async def metrics(self, request: Request) -> Response:
        return Response(self.registry.render(), media_type=METRICS_CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(self.openapi_bytes, media_type="application/json")

    # -- OpenAI's model list ----------------------------------------------------------------

    def _model_object(self, served: Served) -> dict[str, Any]:
        return {
            "id": served.name,
            "object": "model",
            "created": self.created,
            "owned_by": "tei-ort",
        }

    async def list_models(self, request: Request) -> Response:
        data = [self._model_object(served) for served in self.registry.models]
        return json_response({"object": "list", "data": data})

    async def retrieve_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        for served in self.registry.models:
            if served.name == name:
                return json_response(self._model_object(served))
        return self._not_served(name, openai=True)

    # -- /models/{name}/... ----------------------------------------------------------------

    def split(self, rest: str) -> tuple[str, str] | None:
        """``name/sub/path`` -> (the served name, ``/sub/path``), or None."""
        for name in self._prefixes:
            if rest == name or rest == name + "/":
                return name, "/"
            if rest.startswith(name + "/"):
                return name, rest[len(name) :]
        return None

    async def by_path(self, request: Request) -> Response:
        rest = request.path_params["rest"]
        found = self.split(rest)
        if found is None:
            return self._not_served(rest.split("/", 1)[0])
        name, sub = found
        table = POST_ROUTES if request.method == "POST" else MODEL_GET_ROUTES
        endpoint = table.get(sub)
        if endpoint is None:
            allowed = sub in POST_ROUTES or sub in MODEL_GET_ROUTES
            return Response(status_code=405 if allowed else 404)
        response: Response = await getattr(self.routes[name], endpoint)(request)
        return response

    def _not_served(self, name: str, *, openai: bool = False) -> Response:
        names = ", ".join(f"`{each}`" for each in self.registry.names)
        message = f"model `{name}` is not served here; the served models are {names}"
        if openai:
            return json_response({"message": message, "code": 404, "type": "NotFound"}, 404)
        return json_response({"error": message, "error_type": "NotFound"}, 404)


def guarded_paths(names: Sequence[str]) -> frozenset[str]:
    """What ``--api-key`` guards: the inference routes and /info, at the top and under each
    model's ``/models/{name}`` (health, metrics and the docs stay open, as in TEI)."""
    guarded = {path for path in POST_ROUTES if path != "/"} | {"/info", "/v1/models"}
    for name in names:
        prefix = f"/models/{name}"
        guarded.update(prefix + path for path in POST_ROUTES if path != "/")
        guarded.update((prefix + "/info", f"/v1/models/{name}"))
    return frozenset(guarded)


def root_paths(names: Sequence[str]) -> frozenset[str]:
    """The paths where GET is health and POST the model kind's inference route."""
    return frozenset({"/", *(f"/models/{name}{end}" for name in names for end in ("", "/"))})


def create_models_app(
    registry: Registry,
    *,
    tracer: Tracer | None = None,
    companions: Sequence[ModelsCompanion] = (),
) -> Starlette:
    """The HTTP server of every model of ``registry`` (see the module docstring)."""
    api = ModelRoutes(registry)
    settings: Settings = registry.settings

    lifespan = serving_lifespan(registry, companions)

    first = api.first
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/ping", api.health, methods=["GET"]),
        Route("/info", first.info_route, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        *docs_routes(),
        Route("/api-doc/openapi.json", api.openapi, methods=["GET"]),
        Route("/v1/models", api.list_models, methods=["GET"]),
        Route("/v1/models/{name:path}", api.retrieve_model, methods=["GET"]),
        Route("/models/{rest:path}", api.by_path, methods=["GET", "POST"]),
        *(Route(path, api.post(path), methods=["POST"]) for path in POST_ROUTES if path != "/"),
        Route("/", api.root, methods=["GET", "POST"]),
    ]
    guarded, roots = guarded_paths(registry.names), root_paths(registry.names)
    app = assemble_app(settings, routes, lifespan, tracer, guarded, roots, api, registry)
    app.state.registry = registry
    return app
