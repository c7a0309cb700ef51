"""Several models in one server, in process: an embedder, a re-ranker and a SPLADE model
(fake engines around the real MiniLM tokenizer) through every route each kind takes, by
``"model"`` body field and under ``/models/{name}``; the openai SDK; gRPC metadata;
/health, /metrics and /v1/models across models."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import numpy as np
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.testclient import TestClient

from tei_ort.grpc.models import ModelsGrpcServer, grpc_models_companion
from tei_ort.proto import tei_pb2 as pb
from tei_ort.proto import tei_pb2_grpc as rpc
from tei_ort.serving.registry import Registry
from tests.support.app import reference_embedding, serve
from tests.support.multi import models_app

pytestmark = pytest.mark.anyio

TEXT = "What is Deep Learning?"
DOCS = ["Deep learning is machine learning.", "The cat sat on the mat.", "Paris."]


def three(make_model: Any) -> dict[str, Any]:
    return {
        "emb": make_model("embedding"),
        "rr": make_model("reranker", seed=3),
        "sp": make_model("splade"),
    }


async def post(client: httpx.AsyncClient, path: str, body: Any) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


async def test_body_field_and_path_select_the_model(make_model: Any) -> None:
    models = three(make_model)
    app = models_app(models, per_model={"rr": {"max_batch_tokens": 2048}})
    async with serve(app) as client:
        # the first model answers TEI's routes when the body names none
        first = await post(client, "/embed", {"inputs": TEXT})
        np.testing.assert_allclose(first[0], reference_embedding(models["emb"], TEXT), atol=1e-6)
        assert await post(client, "/embed", {"inputs": TEXT, "model": "emb"}) == first
        assert await post(client, "/models/emb/embed", {"inputs": TEXT}) == first
        assert len((await post(client, "/embed_all", {"inputs": TEXT}))[0][0]) == 32
        similarity = {"inputs": {"source_sentence": TEXT, "sentences": DOCS}, "model": "emb"}
        assert len(await post(client, "/similarity", similarity)) == 3
        # the re-ranker: /rerank, /predict, Cohere's /v1/rerank, under its path too
        ranks = await post(client, "/rerank", {"query": TEXT, "texts": DOCS, "model": "rr"})
        assert sorted(r["index"] for r in ranks) == [0, 1, 2]
        by_path = await post(client, "/models/rr/rerank", {"query": TEXT, "texts": DOCS})
        assert by_path == ranks
        labels = await post(client, "/predict", {"inputs": [TEXT, DOCS[0]], "model": "rr"})
        assert labels[0]["label"] == "LABEL_0"
        cohere = await post(
            client, "/v1/rerank", {"query": TEXT, "documents": DOCS, "model": "rr", "top_n": 2}
        )
        assert cohere["model"] == "rr" and len(cohere["results"]) == 2
        assert [r["index"] for r in cohere["results"]] == [r["index"] for r in ranks[:2]]
        invocations = await post(
            client, "/invocations", {"query": TEXT, "texts": DOCS, "model": "rr"}
        )
        assert invocations == ranks
        # SPLADE: /embed_sparse, POST / and /vertex route by kind
        sparse = await post(client, "/embed_sparse", {"inputs": TEXT, "model": "sp"})
        assert sparse[0] and {"index", "value"} <= set(sparse[0][0])
        assert await post(client, "/models/sp/embed_sparse", {"inputs": TEXT}) == sparse
        assert await post(client, "/", {"inputs": TEXT, "model": "sp"}) == sparse
        assert await post(client, "/models/sp", {"inputs": TEXT}) == sparse
        vertex = await post(client, "/vertex", {"instances": [{"inputs": TEXT}], "model": "sp"})
        assert vertex["predictions"] == [sparse]
        tokens = await post(client, "/tokenize", {"inputs": TEXT, "model": "sp"})
        ids = [t["id"] for t in tokens[0]]
        assert await post(client, "/decode", {"ids": ids, "model": "sp"}) == [TEXT.lower()]
        # a route the model's kind does not take fails as in a one-model server
        wrong = await client.post("/rerank", json={"query": TEXT, "texts": DOCS})
        single = await client.post("/models/emb/rerank", json={"query": TEXT, "texts": DOCS})
        assert wrong.status_code == single.status_code == 424
        # unknown names: 422 listing the served models (body), 404 (path)
        unknown = await client.post("/embed", json={"inputs": TEXT, "model": "nope"})
        assert unknown.status_code == 422
        assert unknown.json()["error_type"] == "Validation"
        assert "`emb`, `rr`, `sp`" in unknown.json()["error"]
        typed = await client.post("/embed", json={"inputs": TEXT, "model": 3})
        assert typed.status_code == 422
        assert (await client.post("/models/nope/embed", json={"inputs": TEXT})).status_code == 404
        assert (await client.get("/models/emb/embed")).status_code == 405
        # /info is the first model's; each model's under its path, with its own limits
        info = (await client.get("/info")).json()
        assert info["served_model_name"] == "emb" and "embedding" in info["model_type"]
        rr_info = (await client.get("/models/rr/info")).json()
        assert rr_info["served_model_name"] == "rr" and "reranker" in rr_info["model_type"]
        assert rr_info["max_batch_tokens"] == 2048 and info["max_batch_tokens"] == 16384
        listed = (await client.get("/v1/models")).json()
        assert listed["object"] == "list"
        assert [m["id"] for m in listed["data"]] == ["emb", "rr", "sp"]
        assert (await client.get("/v1/models/sp")).json()["id"] == "sp"
        assert (await client.get("/v1/models/nope")).status_code == 404


async def test_health_and_metrics_per_model(make_model: Any) -> None:
    models = {"emb": make_model("embedding"), "rr": make_model("reranker", fail_always=True)}
    async with serve(models_app(models)) as client:
        assert (await client.get("/health")).status_code == 503  # one model cannot run
        assert (await client.get("/models/emb/health")).status_code == 200
        assert (await client.get("/models/rr/health")).status_code == 503
        await post(client, "/embed", {"inputs": TEXT})
        failed = await client.post("/rerank", json={"query": TEXT, "texts": DOCS, "model": "rr"})
        assert failed.status_code == 424
        await client.post("/embed", json={"inputs": TEXT, "model": "nope"})
        text = (await client.get("/metrics")).text
        assert 'te_request_count{method="single",model="emb"} 1' in text
        assert 'te_request_count{method="batch",model="rr"} 1' in text
        assert 'te_request_failure{err="inference",model="rr"} 1' in text
        assert 'te_request_failure{err="validation",model="emb"} 1' in text
        assert text.count("# TYPE te_request_count counter") == 1
        assert 'te_embed_count{model="rr"} 0' in text
        own = (await client.get("/models/rr/metrics")).text
        assert 'te_request_count{method="batch"} 1' in own  # one model's, as TEI's


async def test_api_key_keeps_each_models_health_open(make_model: Any) -> None:
    app = models_app(three(make_model), api_key="secret")
    async with serve(app) as client:
        for path in ("/health", "/models/rr/health", "/models/rr", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        for path in ("/models/rr/info", "/v1/models", "/info"):
            assert (await client.get(path)).status_code == 401, path
        assert (await client.post("/models/emb/embed", json={"inputs": "x"})).status_code == 401
        auth = {"authorization": "Bearer secret"}
        ok = await client.post("/models/emb/embed", json={"inputs": "x"}, headers=auth)
        assert ok.status_code == 200


def test_openai_sdk_selects_by_model(make_model: Any) -> None:
    models = {
        "emb": make_model("embedding"),
        "cls": make_model("cls"),
        "rr": make_model("reranker"),
    }
    with TestClient(models_app(models), base_url="http://testserver") as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="sk", http_client=http)
        assert [m.id for m in client.models.list()] == ["emb", "cls", "rr"]
        for name in ("emb", "cls"):
            result = client.embeddings.create(model=name, input=TEXT, encoding_format="float")
            assert result.model == name
            expected = reference_embedding(models[name], TEXT)
            np.testing.assert_allclose(result.data[0].embedding, expected, rtol=1e-5, atol=1e-6)
        with pytest.raises(openai.UnprocessableEntityError) as unknown:
            client.embeddings.create(model="nope", input=TEXT)
        assert "`emb`, `cls`, `rr`" in unknown.value.message
        with pytest.raises(openai.APIStatusError) as wrong_kind:
            client.embeddings.create(model="rr", input=TEXT)
        assert wrong_kind.value.status_code == 424


@contextlib.asynccontextmanager
async def grpc_channel(
    app_models: dict[str, Any],
) -> AsyncIterator[tuple[grpc.aio.Channel, ModelsGrpcServer]]:
    started: list[ModelsGrpcServer] = []

    def companion(registry: Registry) -> contextlib.AbstractAsyncContextManager[Any]:
        @contextlib.asynccontextmanager
        async def run() -> AsyncIterator[ModelsGrpcServer]:
            async with grpc_models_companion("127.0.0.1", 0)(registry) as server:
                started.append(server)
                yield server

        return run()

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve(models_app(app_models, companions=(companion,))))
        target = f"127.0.0.1:{started[0].port}"  # known once the app has started
        yield await stack.enter_async_context(grpc.aio.insecure_channel(target)), started[0]


async def test_grpc_metadata_selects_the_model(make_model: Any) -> None:
    models = three(make_model)
    async with grpc_channel(models) as (channel, server):
        embed = rpc.EmbedStub(channel)
        first = await embed.Embed(pb.EmbedRequest(inputs=TEXT))
        expected = reference_embedding(models["emb"], TEXT)
        np.testing.assert_allclose(first.embeddings, expected, rtol=1e-5, atol=1e-6)
        sparse = await embed.EmbedSparse(
            pb.EmbedSparseRequest(inputs=TEXT), metadata=(("model", "sp"),)
        )
        assert len(sparse.sparse_embeddings) > 0
        requests = [pb.EmbedSparseRequest(inputs=t) for t in DOCS]

        async def gen() -> AsyncIterator[Any]:
            for request in requests:
                yield request

        streamed = [r async for r in embed.EmbedSparseStream(gen(), metadata=(("model", "sp"),))]
        assert len(streamed) == len(DOCS)
        rerank = rpc.RerankStub(channel)
        ranks = await rerank.Rerank(
            pb.RerankRequest(query=TEXT, texts=DOCS), metadata=(("model", "rr"),)
        )
        assert sorted(r.index for r in ranks.ranks) == [0, 1, 2]

        async def pairs() -> AsyncIterator[Any]:
            for doc in DOCS:
                yield pb.RerankStreamRequest(query=TEXT, text=doc)

        streamed_ranks = await rerank.RerankStream(pairs(), metadata=(("model", "rr"),))
        assert [r.index for r in streamed_ranks.ranks] == [r.index for r in ranks.ranks]
        info = rpc.InfoStub(channel)
        rr_info = await info.Info(pb.InfoRequest(), metadata=(("model", "rr"),))
        assert rr_info.model_type == pb.MODEL_TYPE_RERANKER
        assert (await info.Info(pb.InfoRequest())).model_type == pb.MODEL_TYPE_EMBEDDING
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await embed.Embed(pb.EmbedRequest(inputs=TEXT), metadata=(("model", "nope"),))
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "`emb`, `rr`, `sp`" in (unknown.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as wrong_kind:
            await embed.Embed(pb.EmbedRequest(inputs=TEXT), metadata=(("model", "rr"),))
        assert wrong_kind.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        text = server.registry.render().decode()
        assert 'te_request_failure{err="validation",model="emb"} 1' in text  # unknown name
        assert 'te_request_failure{err="model_type",model="rr"} 1' in text
        assert 'te_request_count{method="single",model="sp"} 4' in text  # 1 + 3 streamed
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_start_up_rule_names_its_model(make_model: Any) -> None:
    from tei_ort.errors import ConfigurationError

    models = {"emb": make_model("embedding"), "rr": make_model("reranker")}
    with pytest.raises(ConfigurationError, match=r"model `rr`: .*prompt"):
        models_app(models, per_model={"rr": {"default_prompt_name": "query"}})


async def test_openapi_document_states_every_models_routes(make_model: Any) -> None:
    """/docs of a several-model server: each body may name a model, and every route is also
    each model's under /models/{name}; the document and the router agree on both."""
    async with serve(models_app(three(make_model))) as client:
        document = (await client.get("/api-doc/openapi.json")).json()
        schemas = document["components"]["schemas"]
        model = schemas["EmbedRequest"]["properties"]["model"]
        assert "`emb`, `rr`, `sp`" in model["description"]
        for name, schema in schemas.items():
            if name.endswith("Request") and "properties" in schema:
                assert schema["properties"]["model"] == model, name
        paths = document["paths"]
        top = [path for path in paths if not path.startswith(("/models/", "/v1/models"))]
        assert sorted(f"/models/{{name}}{'' if p == '/' else p}" for p in top) == sorted(
            path for path in paths if path.startswith("/models/")
        )
        for path, item in paths.items():
            if not path.startswith("/models/"):
                continue
            (parameter,) = {p["name"]: p for op in item.values() for p in op["parameters"]}.values()
            assert parameter["schema"]["enum"] == ["emb", "rr", "sp"]
            for method in item:
                url = path.replace("{name}", "rr")
                response = await client.request(method, url, json={})
                assert response.status_code not in (404, 405), (method, url)
        listed = (await client.get("/v1/models")).json()
        assert [m["id"] for m in listed["data"]] == ["emb", "rr", "sp"]
        assert "/v1/models/{name}" in paths
