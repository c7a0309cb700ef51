"""tei-ort on Ray Serve: replicas of the same Starlette app, scaled with the load.

Each replica loads one engine (from the engine cache; replicas starting together build a
missing entry once, see exporters/cache.py) and serves ``tei_ort.http.app.create_app``
behind Serve's proxy: the same routes, bodies, errors, headers and ``te_*`` metrics (per
replica) as ``tei-ort serve``. Serve adds and removes replicas between ``min_replicas``
and ``max_replicas`` to keep about ``target_ongoing_requests`` requests on each, and
replaces a replica whose health check (the engine probe behind /health) fails.

Two ways in: ``tei-ort serve-ray`` (``serve_ray``), and ``app``, the application builder
of Serve config files::

    applications:
      - name: tei-ort
        route_prefix: /
        import_path: tei_ort.ray_serve:app
        args: {model-id: BAAI/bge-small-en-v1.5, max-replicas: 4}
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ray import serve
from ray.serve import Application
from starlette.applications import Starlette

from tei_ort.ray_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from tei_ort.settings import Settings, export_default

logger = logging.getLogger("tei_ort")

#: the Serve application and deployment name
APP_NAME = "tei-ort"


@dataclass(frozen=True)
class Scaling:
    """How Serve runs the replicas (the serve-ray flags beyond serve's)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 16.0
    max_ongoing_requests: int = 64
    num_cpus: float = 1.0  # per replica; also its engine's thread count
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        from tei_ort.errors import ConfigurationError

        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ConfigurationError("need 0 <= --min-replicas <= --max-replicas, and 1 or more")
        if self.target_ongoing_requests <= 0 or self.num_cpus <= 0:
            raise ConfigurationError("--target-ongoing-requests and --num-cpus must be positive")

    @property
    def threads(self) -> int:
        return max(1, int(self.num_cpus))


class TeiOrtReplica:
    """One replica: a loaded model and the app around it (built after the constructor)."""

    def __init__(self, settings: Settings, threads: int) -> None:
        from tei_ort.log import setup_logging
        from tei_ort.model.loading import ModelOptions, load_model

        setup_logging(settings.json_output)
        self.settings = settings
        self.model = load_model(replace(ModelOptions.from_settings(settings), threads=threads))
        self.tei_app: Starlette | None = None  # (`app` is taken by Serve's wrapper)

    def __serve_build_asgi_app__(self) -> Starlette:
        from tei_ort.http.app import create_app
        from tei_ort.serving.tracing import setup_tracing

        self.tei_app = create_app(self.settings, self.model, tracer=setup_tracing(self.settings))
        return self.tei_app

    async def check_health(self) -> None:
        """Serve's health check: the probe /health runs (the engine's last run, or a new one)."""
        if self.tei_app is None or not await self.tei_app.state.infer.health():
            raise RuntimeError("the engine failed its health probe")


TeiOrtIngress = serve.ingress()(TeiOrtReplica)


def build_app(settings: Settings, scaling: Scaling) -> Application:
    """The Serve application for ``settings`` (serve's flags) under ``scaling``."""
    _refuse_unsupported(settings)
    deployment = serve.deployment(
        name=APP_NAME,
        autoscaling_config={
            "min_replicas": scaling.min_replicas,
            "initial_replicas": max(1, scaling.min_replicas),
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
        },
        max_ongoing_requests=scaling.max_ongoing_requests,
        ray_actor_options={"num_cpus": scaling.num_cpus},
        health_check_period_s=scaling.health_check_period_s,
        health_check_timeout_s=scaling.health_check_timeout_s,
    )(TeiOrtIngress)
    application: Application = deployment.bind(settings, scaling.threads)
    return application


def _refuse_unsupported(settings: Settings) -> None:
    from tei_ort.errors import ConfigurationError

    if settings.grpc or settings.grpc_port is not None:
        raise ConfigurationError("gRPC (--grpc, --grpc-port) is not served through Ray Serve")


def app(args: Mapping[str, Any]) -> Application:
    """Serve's application builder: ``args`` are serve-ray's flags, with or without ``--``."""
    from tei_ort.cli.ray import serve_ray_options, serve_ray_parser

    parser = serve_ray_parser()
    settings, scaling, _ = serve_ray_options(parser, parser.parse_args(args_to_argv(args)))
    return build_app(settings, scaling)


def args_to_argv(args: Mapping[str, Any]) -> list[str]:
    """``{"model-id": "m", "auto_truncate": False, "cors-allow-origin": [a, b]}`` -> argv."""
    argv: list[str] = []
    for key, value in args.items():
        flag = "--" + str(key).removeprefix("--").replace("_", "-")
        values: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
        for item in values:
            text = str(item).lower() if isinstance(item, bool) else str(item)
            argv += [flag, text]
    return argv


def serve_ray(settings: Settings, scaling: Scaling, ray_address: str | None) -> int:
    """Deploy on Ray (a local one without an address) and serve until SIGINT / SIGTERM."""
    import ray

    from tei_ort.log import setup_logging

    setup_logging(settings.json_output)
    application = build_app(settings, scaling)
    # read by the proxy processes of the local Ray started here (a cluster sets it itself)
    export_default(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    ray.init(address=ray_address, logging_level=logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init: replaces Ray's exit
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": settings.bind_host, "port": settings.port})
        serve.run(application, name=APP_NAME, route_prefix="/")
        logger.info("Serving on Ray: %s:%d", settings.bind_host, settings.port)
        while not stop.wait(0.5):
            pass
        serve.delete(APP_NAME)
    finally:
        ray.shutdown()
    return 0
