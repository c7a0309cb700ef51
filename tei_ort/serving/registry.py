"""The models one server serves, by name.

Each model keeps what one model has alone (its own ``Infer``: queue, batcher, engine
thread, permits and ``te_*`` metrics, under its own settings); they share the tokenization
pool and the HTTP / gRPC servers. The first model answers TEI's routes when a request
names none.

The engines of different models run at the same time, each on its own engine thread, and
the OS shares the cores between their threads (ONNX Runtime's pool threads do not spin on
the CPU, ``engines/ort_engine.py``), so a burst on one model slows another model's run by
the share of the cores it takes, never by a whole batch. Taking turns batch by batch (a
first-come, first-served lock around engine runs) was measured and dropped: the idle
model then waits for the busy model's batch in progress, or at best a 1024-token piece of
it (bench/multi_model.py; bench/README.md has the figures).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tei_ort.errors import BodyError, ConfigurationError
from tei_ort.serving.executor import ServedModel
from tei_ort.serving.handlers import Handlers
from tei_ort.serving.infer import Infer
from tei_ort.serving.metrics import Metrics, render_registries
from tei_ort.serving.tracing import Tracer
from tei_ort.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One served model: its name, its settings and the request path that runs it."""

    name: str
    settings: Settings
    infer: Infer
    handlers: Handlers


def check_names(settings: Sequence[Settings]) -> None:
    """Start-up: every model needs a name of its own."""
    seen: dict[str, int] = {}
    for index, each in enumerate(settings):
        name = each.model_name
        if name in seen:
            raise ConfigurationError(
                f"models {seen[name] + 1} and {index + 1} are both served as `{name}`: give "
                f"each a name of its own with --served-model-name"
            )
        seen[name] = index


class Registry:
    """The served models in flag order (the first answers when a request names none)."""

    def __init__(
        self,
        models: Sequence[tuple[Settings, ServedModel]],
        *,
        tracer: Tracer | None = None,
    ) -> None:
        if not models:
            raise ConfigurationError("no model to serve")
        check_names([each for each, _ in models])
        self.settings = models[0][0]
        self.models: list[Served] = []
        for settings, model in models:
            try:
                infer = Infer(settings, model, tracer=tracer)
            except ConfigurationError as exc:  # a start-up rule of this model's flags
                raise ConfigurationError(f"model `{settings.model_name}`: {exc}") from exc
            handlers = Handlers(settings, infer)
            self.models.append(Served(settings.model_name, settings, infer, handlers))
        self._by_name = {served.name: served for served in self.models}
        self._pool: ThreadPoolExecutor | None = None

    @property
    def first(self) -> Served:
        return self.models[0]

    @property
    def names(self) -> list[str]:
        return [served.name for served in self.models]

    def select(self, name: str | None) -> Served:
        """The model a request names (its served name, or its model id), the first for None.

        An unknown name is the client's mistake: 422, listing the served names.
        """
        if name is None:
            return self.first
        served = self._by_name.get(name)
        if served is not None:
            return served
        for served in self.models:
            if served.settings.model_id == name:
                return served
        names = ", ".join(f"`{each}`" for each in self.names)
        raise BodyError(f"model `{name}` is not served here; the served models are {names}")

    def render(self) -> bytes:
        """/metrics: every model's ``te_*`` series with a ``model`` label."""
        return render_registries(
            [(served.infer.metrics.registry, {"model": served.name}) for served in self.models]
        )

    def metrics(self, name: str | None = None) -> Metrics:
        return self.select(name).infer.metrics

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every model's engine threads over one tokenization pool."""
        self._pool = ThreadPoolExecutor(
            self.settings.tokenization_workers, thread_name_prefix="tei-ort-tokenize"
        )
        started: list[Infer] = []
        try:
            for served in self.models:
                await served.infer.start(self._pool)
                started.append(served.infer)
        except BaseException:
            await asyncio.gather(*(infer.stop() for infer in started))
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise

    async def stop(self) -> None:
        await asyncio.gather(*(served.infer.stop() for served in self.models))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def health(self) -> bool:
        """True only when every model can run (each answers as one model's /health)."""
        answers = await asyncio.gather(*(served.infer.health() for served in self.models))
        return all(answers)
