"""TEI's gRPC API over several models: the ``model`` metadata key selects one.

A call without ``model`` metadata goes to the first model; an unknown name ends it with
INVALID_ARGUMENT listing the served names. Each model answers through its own
``GrpcService`` (its ``Infer``: queue, batcher, engine), so a call behaves as in a
one-model server; ``grpc.health.v1`` is SERVING only when every model can run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from tei_ort.errors import RequestError
from tei_ort.grpc.server import EngineHealth, GrpcServer, running, serve_until_signal
from tei_ort.grpc.service import Core, GrpcService
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.registry import Registry, Served

logger = logging.getLogger(__name__)

#: the metadata key that names the model of a call
MODEL_KEY = "model"
#: the model of the call in progress (each gRPC call runs in its own task and context)
_CALL_MODEL: ContextVar[Served | None] = ContextVar("tei_ort_call_model", default=None)

Handler = Callable[[Any, Any], Any]


class ModelsGrpcServer(GrpcServer):
    """``GrpcServer`` whose calls go to the model their ``model`` metadata names."""

    def __init__(self, registry: Registry, *, host: str, port: int) -> None:
        super().__init__(registry.settings, registry.first.infer, host=host, port=port)
        self.registry = registry
        self.services = {
            served.name: GrpcService(served.settings, served.infer) for served in registry.models
        }
        self.health = EngineHealth(registry)

    def call_metrics(self) -> Metrics:
        served = _CALL_MODEL.get()
        return (served or self.registry.first).infer.metrics

    async def _select(self, context: Any) -> Served:
        """The model the call names (the first without ``model``); aborts when unknown."""
        await self._authorize(context)
        name = None
        for key, value in context.invocation_metadata() or ():
            if key == MODEL_KEY:
                name = value if isinstance(value, str) else bytes(value).decode()
                break
        try:
            served = self.registry.select(name)
        except RequestError as exc:
            await self._fail(context, exc)
            raise  # pragma: no cover - _fail raises
        _CALL_MODEL.set(served)
        return served

    def _unary(self, name: str, core: Core) -> Handler:
        by_model = {
            model: GrpcServer._unary(self, name, service.cores[name])
            for model, service in self.services.items()
        }

        async def handle(request: Any, context: Any) -> Any:
            served = await self._select(context)
            return await by_model[served.name](request, context)

        return handle

    def _stream(self, name: str, core: Core) -> Callable[[Any, Any], AsyncIterator[Any]]:
        by_model = {
            model: GrpcServer._stream(self, name, service.cores[name])
            for model, service in self.services.items()
        }

        async def handle(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            served = await self._select(context)
            async for response in by_model[served.name](requests, context):
                yield response

        return handle

    def _rerank_stream(self, name: str, service: GrpcService | None = None) -> Handler:
        by_model = {
            model: GrpcServer._rerank_stream(self, name, each)
            for model, each in self.services.items()
        }

        async def handle(requests: AsyncIterator[Any], context: Any) -> Any:
            served = await self._select(context)
            return await by_model[served.name](requests, context)

        return handle


def grpc_models_companion(
    host: str, port: int
) -> Callable[[Registry], contextlib.AbstractAsyncContextManager[ModelsGrpcServer]]:
    """``create_models_app(companions=[...])``: gRPC beside HTTP (``--grpc-port``)."""
    return lambda registry: running(ModelsGrpcServer(registry, host=host, port=port))


async def serve_grpc_models(registry: Registry) -> int:
    """``--grpc``: serve every model over gRPC on ``--port`` until SIGINT / SIGTERM."""
    settings = registry.settings
    return await serve_until_signal(
        registry,
        lambda: ModelsGrpcServer(registry, host=settings.bind_host, port=settings.port),
    )
