"""``serve`` with several ``--model-id``: load every model, then serve them all or none.

Names are checked before anything loads; a model that cannot load stops the start with
its name and the reason, so a server never answers for some of its models only. On the
CPU, models with the same options (the same id served under two names) share one loaded
engine (an ONNX Runtime CPU session runs calls from several threads); GPU engines keep
device buffers per engine, so each name gets its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tei_ort.errors import START_ERRORS, ConfigurationError
from tei_ort.settings import Settings

if TYPE_CHECKING:
    from tei_ort.model.loading import LoadedModel
    from tei_ort.serving.registry import Registry
    from tei_ort.serving.tracing import Tracer

logger = logging.getLogger("tei_ort")


def load_models(settings: Settings) -> list[tuple[Settings, LoadedModel]]:
    """Every model of ``settings``, loaded, in flag order; raises on the first failure."""
    from tei_ort.model.loading import ModelOptions, load_model
    from tei_ort.serving.registry import check_names

    each = settings.model_settings()
    check_names(each)
    loaded: dict[ModelOptions, LoadedModel] = {}
    models: list[tuple[Settings, LoadedModel]] = []
    for index, model_settings in enumerate(each):
        options = ModelOptions.from_settings(model_settings)
        if options not in loaded or options.provider not in (None, "cpu"):
            try:
                loaded[options] = load_model(options)
            except START_ERRORS as exc:
                raise ConfigurationError(
                    f"model {index + 1} (`{model_settings.model_id}`, served as "
                    f"`{model_settings.model_name}`) cannot be served: {exc}"
                ) from exc
        models.append((model_settings, loaded[options]))
    logger.info("serving %d models: %s", len(models), ", ".join(s.model_name for s, _ in models))
    return models


def serve_models(settings: Settings, tracer: Tracer | None) -> int:
    """HTTP (or ``--grpc``) for every model; returns the exit code."""
    try:
        registry = _registry(settings, tracer)
    except START_ERRORS as exc:
        logger.error("%s", exc)
        return 1
    if settings.grpc:
        return _serve_grpc(registry)
    from tei_ort.cli.serve import run_http
    from tei_ort.http.model_routes import ModelsCompanion, create_models_app

    companions: list[ModelsCompanion] = []
    if settings.grpc_port is not None:
        from tei_ort.grpc.models import grpc_models_companion

        companions.append(grpc_models_companion(settings.bind_host, settings.grpc_port))
    app = create_models_app(registry, tracer=tracer, companions=companions)
    return run_http(settings, app)


def _registry(settings: Settings, tracer: Tracer | None) -> Registry:
    from tei_ort.serving.registry import Registry

    return Registry(load_models(settings), tracer=tracer)


def _serve_grpc(registry: Registry) -> int:
    from tei_ort.cli.serve import run_grpc
    from tei_ort.grpc.models import serve_grpc_models

    return run_grpc(registry.settings, registry, lambda: serve_grpc_models(registry))
