"""TEI's gRPC server (grpcio, asyncio): ``tei.v1`` plus ``grpc.health.v1`` and reflection.

The method handlers are built from the descriptor of ``tei.proto`` itself (every service,
method, message and streaming kind as the .proto declares them) around the coroutines of
``grpc_service.GrpcService``; start-up fails if a method has none. All methods share the
server's one ``Infer``: inputs of unary calls, of every stream and of HTTP requests (with
``--grpc-port``) go through the same queue and batcher.

- ``--api-key``: every ``tei.v1`` call needs ``authorization: Bearer <key>`` metadata
  (UNAUTHENTICATED otherwise); health and reflection stay open, as /health does over HTTP.
- Errors: ``RequestError.grpc_code`` (errors.py, next to the HTTP status) with the error's
  message as details; anything else is INTERNAL.
- Streams answer in request order; the first failing message ends the stream with its
  error. Each stream keeps at most ``--max-concurrent-requests`` messages in flight (the
  back-pressure TEI gets from awaiting a permit before reading on).
- Tracing (tracing.py): one SERVER span per unary call and per stream message, the
  caller's ``traceparent`` metadata as its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tei_ort.errors import ConfigurationError, RequestError
from tei_ort.grpc.service import Core, GrpcService
from tei_ort.proto import tei_pb2
from tei_ort.serving.fanout import cancel_all
from tei_ort.serving.infer import Infer, failure_label
from tei_ort.serving.metrics import Metrics
from tei_ort.serving.reply import Reply
from tei_ort.serving.tracing import Tracer, metadata_carrier
from tei_ort.settings import Settings

logger = logging.getLogger(__name__)

#: grpc's ``stop(None)`` aborts every call at once, so "wait for all of them" (the default
#: of --graceful-shutdown-timeout, as in TEI) is a grace longer than any call
_UNTIL_DONE_S = 365 * 24 * 3600.0
#: every service of tei.proto, by full name (tei.v1.Embed, ...)
SERVICE_NAMES = tuple(service.full_name for service in tei_pb2.DESCRIPTOR.services_by_name.values())


def grpc_status(exc: RequestError) -> grpc.StatusCode:
    """The gRPC status of a request error (TEI's mapping; see errors.py)."""
    return grpc.StatusCode[exc.grpc_code]


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Healthy(Protocol):
    """What answers health: one model's ``Infer``, or every model's ``Registry``."""

    async def health(self) -> bool: ...


class EngineHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1`` that answers what ``/health`` answers: each Check asks the engine.

    NOT_SERVING while the engine cannot run (a probe through it fails), SERVING again once
    it can; after shutdown begins, grpcio's servicer keeps every service NOT_SERVING.
    """

    def __init__(self, infer: Healthy) -> None:
        super().__init__()
        self._infer = infer

    async def Check(self, request: Any, context: Any) -> Any:
        healthy = await self._infer.health()
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.set(name, status)  # ignored by grpcio once shutting down
        return await super().Check(request, context)


class GrpcServer:
    """The gRPC server of one ``Infer``; ``start`` binds ``host:port`` (0: any free port)."""

    def __init__(self, settings: Settings, infer: Infer, *, host: str, port: int) -> None:
        self.settings = settings
        self.infer = infer
        self.service = GrpcService(settings, infer)
        self.tracer: Tracer | None = infer.tracer
        self.host = host
        self.requested_port = port
        self.port = port
        self.health = EngineHealth(infer)
        self._expected = (
            f"Bearer {settings.api_key}".encode() if settings.api_key is not None else None
        )
        self._window = settings.max_concurrent_requests
        self._server: Any = None

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> int:
        # no SO_REUSEPORT: a second server on a port in use must fail, not share it
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(tuple(self._handlers()))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        target = address(self.host, self.requested_port)
        try:
            port = server.add_insecure_port(target)
        except RuntimeError as exc:
            raise ConfigurationError(f"cannot serve gRPC on {target}: {exc}") from None
        if not port:
            raise ConfigurationError(f"cannot serve gRPC on {target}")
        await server.start()
        self._server = server
        self.port = int(port)
        serving = health_pb2.HealthCheckResponse.SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, serving)
        logger.info("Starting gRPC server: %s", address(self.host, self.port))
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls; those in flight finish within ``grace`` seconds (by default
        --graceful-shutdown-timeout, unset: however long they take)."""
        if self._server is None:
            return
        if grace is None:
            configured = self.settings.graceful_shutdown_timeout
            grace = _UNTIL_DONE_S if configured is None else float(configured)
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # -- handlers --------------------------------------------------------------------------

    def _handlers(self) -> list[Any]:
        handlers = []
        for service in tei_pb2.DESCRIPTOR.services_by_name.values():
            methods: dict[str, Any] = {}
            for method in service.methods:
                name = f"/{service.full_name}/{method.name}"
                request = getattr(tei_pb2, method.input_type.name)
                response = getattr(tei_pb2, method.output_type.name)
                codec: dict[str, Any] = {
                    "request_deserializer": request.FromString,
                    "response_serializer": response.SerializeToString,
                }
                if method.client_streaming and not method.server_streaming:
                    if name != "/tei.v1.Rerank/RerankStream":
                        raise ConfigurationError(f"no implementation of {name}")
                    methods[method.name] = grpc.stream_unary_rpc_method_handler(
                        self._rerank_stream(name), **codec
                    )
                    continue
                core = self.service.cores.get(name)
                if core is None or method.server_streaming != method.client_streaming:
                    raise ConfigurationError(f"no implementation of {name}")
                if method.server_streaming:
                    methods[method.name] = grpc.stream_stream_rpc_method_handler(
                        self._stream(name, core), **codec
                    )
                else:
                    methods[method.name] = grpc.unary_unary_rpc_method_handler(
                        self._unary(name, core), **codec
                    )
            handlers.append(grpc.method_handlers_generic_handler(service.full_name, methods))
        return handlers

    async def _authorize(self, context: Any) -> None:
        if self._expected is None:
            return
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                if hmac.compare_digest(given, self._expected):
                    return
                break
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "No valid auth token")

    def call_metrics(self) -> Metrics:
        """Where the current call's failures are counted."""
        return self.infer.metrics

    async def _fail(self, context: Any, exc: BaseException, span: Any = None) -> None:
        """Answer ``exc`` with its status (this raises, ending the call)."""
        if isinstance(exc, RequestError):
            self.call_metrics().failure(failure_label(exc))
            logger.error("%s", exc.message)
            if span is not None:
                Tracer.fail(span, exc, exc.error_type)
            await context.abort(grpc_status(exc), exc.message)
        logger.error("unexpected error", exc_info=exc)
        self.call_metrics().failure("inference")
        if span is not None:
            Tracer.fail(span, exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    async def _traced(self, name: str, context: Any, work: Callable[[], Any]) -> Reply:
        """Run ``work`` (a coroutine factory) under a request span, errors recorded on it."""
        tracer = self.tracer
        if tracer is None:
            reply: Reply = await work()
            return reply
        service, _, method = name[1:].partition("/")
        span = tracer.start_request(
            name[1:],
            metadata_carrier(context.invocation_metadata()),
            {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        token = tracer.activate(span)
        try:
            reply = await work()
            span.set_attribute("rpc.grpc.status_code", 0)
        except RequestError as exc:
            span.set_attribute("rpc.grpc.status_code", grpc_status(exc).value[0])
            Tracer.fail(span, exc, exc.error_type)
            raise
        except BaseException as exc:
            Tracer.fail(span, exc)
            raise
        finally:
            tracer.deactivate(token)
            span.end()
        return reply

    def _unary(self, name: str, core: Core) -> Callable[[Any, Any], Any]:
        async def handle(request: Any, context: Any) -> Any:
            await self._authorize(context)
            try:
                reply = await self._traced(name, context, lambda: core(request, True))
            except Exception as exc:
                await self._fail(context, exc)
                raise  # pragma: no cover - _fail raises
            if reply.timed:
                await context.send_initial_metadata(self.service.headers(reply))
            return reply.content

        return handle

    def _stream(self, name: str, core: Core) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def handle(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            await self._authorize(context)
            window = asyncio.Semaphore(self._window)
            pending: asyncio.Queue[asyncio.Future[Reply] | None] = asyncio.Queue()

            async def read() -> None:
                try:
                    async for request in requests:
                        await window.acquire()
                        work = _bind(core, request)
                        pending.put_nowait(asyncio.ensure_future(self._traced(name, context, work)))
                finally:
                    pending.put_nowait(None)

            reader = asyncio.ensure_future(read())
            try:
                while True:
                    future = await pending.get()
                    if future is None:
                        break
                    try:
                        reply = await future
                    finally:
                        window.release()
                    yield reply.content
                await reader  # a failure to read the stream surfaces here
            except Exception as exc:
                await self._fail(context, exc)
            finally:
                # the stream failed or its client went away: stop reading, and let every
                # message still in flight withdraw its inputs before the call ends
                left: list[asyncio.Future[Any]] = [reader]
                while not pending.empty():
                    queued = pending.get_nowait()
                    if queued is not None:
                        left.append(queued)
                await cancel_all(left)

        return handle

    def _rerank_stream(
        self, name: str, service: GrpcService | None = None
    ) -> Callable[[Any, Any], Any]:
        scorer = service or self.service

        async def handle(requests: AsyncIterator[Any], context: Any) -> Any:
            await self._authorize(context)
            try:
                reply = await self._traced(
                    name, context, lambda: scorer.rerank_stream(requests, self._window)
                )
            except Exception as exc:
                await self._fail(context, exc)
                raise  # pragma: no cover - _fail raises
            await context.send_initial_metadata(scorer.headers(reply))
            return reply.content

        return handle


def _bind(core: Core, request: Any) -> Callable[[], Any]:
    """A stream message's work: the unary core, waiting for a permit (not refusing)."""
    return lambda: core(request, False)


ServerT = TypeVar("ServerT", bound=GrpcServer)


def grpc_companion(
    settings: Settings, host: str, port: int
) -> Callable[[Infer], contextlib.AbstractAsyncContextManager[GrpcServer]]:
    """``create_app(companions=[...])``: gRPC on ``host:port`` beside HTTP (``--grpc-port``)."""
    return lambda infer: running(GrpcServer(settings, infer, host=host, port=port))


@contextlib.asynccontextmanager
async def running(server: ServerT) -> AsyncIterator[ServerT]:
    """``server`` started for the ``async with`` block and stopped after it."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def serve_grpc(settings: Settings, infer: Infer) -> int:
    """``--grpc``: serve gRPC on ``--port`` until SIGINT / SIGTERM, then stop gracefully."""
    return await serve_until_signal(
        infer, lambda: GrpcServer(settings, infer, host=settings.bind_host, port=settings.port)
    )


class Stoppable(Protocol):
    async def start(self) -> object: ...

    async def stop(self) -> None: ...


async def serve_until_signal(served: Stoppable, make_server: Callable[[], Stoppable]) -> int:
    """Start ``served`` and its gRPC server, wait for SIGINT / SIGTERM, stop both."""
    await served.start()
    try:
        server = make_server()
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
            logger.info("Shutting down the gRPC server")
            await server.stop()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    finally:
        await served.stop()
    return 0
