"""``serve``: load the model, then run HTTP (and gRPC) until SIGINT / SIGTERM."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tei_ort.errors import START_ERRORS
from tei_ort.settings import Settings, listen_address

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from tei_ort.model.loading import LoadedModel
    from tei_ort.serving.metrics import Renderable
    from tei_ort.serving.tracing import Tracer

logger = logging.getLogger("tei_ort")


def serve(settings: Settings) -> int:
    """Load the model, then serve until SIGINT / SIGTERM; returns the exit code."""
    from tei_ort.log import setup_logging

    setup_logging(settings.json_output)
    logger.info("Args %s", _redacted(settings))
    if listen_address(settings.hostname) != settings.hostname:
        logger.warning("Invalid hostname, defaulting to 0.0.0.0 (--hostname %r)", settings.hostname)
    from tei_ort.serving.tracing import setup_tracing

    tracer = setup_tracing(settings)
    try:
        if settings.per_model:  # several --model-id
            from tei_ort.cli.serve_models import serve_models

            return serve_models(settings, tracer)
        if settings.grpc:
            return _serve_grpc(settings, tracer)
        return _serve_http(settings, tracer)
    finally:
        if tracer is not None:
            tracer.shutdown()


def _serve_grpc(settings: Settings, tracer: Tracer | None) -> int:
    """``--grpc``: gRPC on --port (no HTTP), /metrics on --prometheus-port."""
    from tei_ort.grpc.server import serve_grpc
    from tei_ort.serving.infer import Infer

    try:
        infer = Infer(settings, _load(settings), tracer=tracer)
    except START_ERRORS as exc:
        logger.error("%s", exc)
        return 1
    return run_grpc(settings, infer.metrics, lambda: serve_grpc(settings, infer))


def run_grpc(
    settings: Settings, metrics: Renderable, serve: Callable[[], Coroutine[Any, Any, int]]
) -> int:
    """Run ``serve`` (gRPC until SIGINT / SIGTERM) with ``metrics`` on --prometheus-port."""
    import asyncio

    from tei_ort.serving.metrics import start_prometheus_listener

    listener = start_prometheus_listener(metrics, settings.bind_host, settings.prometheus_port)
    try:
        return asyncio.run(serve())
    except START_ERRORS as exc:
        logger.error("%s", exc)
        return 1
    finally:
        if listener is not None:
            listener.close()


def _serve_http(settings: Settings, tracer: Tracer | None) -> int:
    """HTTP on --port (and gRPC on --grpc-port), /metrics also on --prometheus-port."""
    try:
        from tei_ort.http.app import Companion, create_app

        model = _load(settings)
        companions: list[Companion] = []
        if settings.grpc_port is not None:
            from tei_ort.grpc.server import grpc_companion

            companions.append(grpc_companion(settings, settings.bind_host, settings.grpc_port))
        app = create_app(settings, model, tracer=tracer, companions=companions)
    except START_ERRORS as exc:
        logger.error("%s", exc)
        return 1
    return run_http(settings, app)


def run_http(settings: Settings, app: Starlette) -> int:
    """Serve ``app`` on --port (and /metrics on --prometheus-port) until SIGINT / SIGTERM."""
    import uvicorn

    from tei_ort.http.connections import ConnectionLimits, limited_protocol
    from tei_ort.serving.metrics import start_prometheus_listener

    listener = start_prometheus_listener(
        app.state.metrics, settings.bind_host, settings.prometheus_port
    )
    limits = ConnectionLimits(
        header_read_timeout=settings.header_read_timeout,
        body_read_timeout=settings.body_read_timeout,
        max_connections=settings.max_connections,
    )
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.port,
        http=limited_protocol(limits),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=settings.keep_alive_timeout,
        # None: wait for every accepted request (uvicorn stops accepting first)
        timeout_graceful_shutdown=settings.graceful_shutdown_timeout,
    )
    server = uvicorn.Server(config)
    try:
        sock = bind_listener(settings.bind_host, settings.port)
    except OSError as exc:
        logger.error("cannot serve HTTP on %s:%d: %s", settings.bind_host, settings.port, exc)
        if listener is not None:
            listener.close()
        return 1
    # the bound port: --port 0 lets the OS pick one, and the log says which
    logger.info("Starting HTTP server: %s:%d", settings.bind_host, sock.getsockname()[1])
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again for
    # the handlers it found; with these no-op handlers the process exits 0, as TEI does.
    previous = {sig: signal.signal(sig, _after_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if listener is not None:
            listener.close()
    return 0 if server.started else 1


def bind_listener(host: str, port: int) -> socket.socket:
    """The HTTP listening socket on ``host`` (an IP literal, settings.listen_address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # a restarted server may bind while the last one's connections are in TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _load(settings: Settings) -> LoadedModel:
    """The model, its download and build shown as bars on a terminal, log lines elsewhere."""
    import sys

    from tei_ort.cli.progress import download_bar, make_progress
    from tei_ort.model.loading import load_from_settings

    progress = make_progress(logger.info, json_output=settings.json_output, stream=sys.stderr)
    return load_from_settings(settings, progress, download_bar=download_bar(progress))


def _redacted(settings: Settings) -> str:
    """The settings for the start-up log line, secrets hidden."""
    shown = []
    for name, value in vars(settings).items():
        if name in ("api_key", "hf_token") and value:
            value = "<redacted>"
        shown.append(f"{name}={value!r}")
    return ", ".join(shown)


def _after_shutdown(sig: int, frame: object) -> None:
    """The signal uvicorn re-raises after its graceful shutdown: nothing left to do."""
