"""The gRPC API in process: every tei.v1 method (unary and streaming) against the HTTP routes
of the same app (one Infer), error codes, streams, health and reflection. Fake engines
around the real MiniLM tokenizer; the client is the one generated from tei.proto."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tei_ort import errors
from tei_ort.engines.base import EngineInputs
from tei_ort.grpc.server import GrpcServer, grpc_status
from tei_ort.http.app import create_app
from tei_ort.proto import tei_pb2 as pb
from tei_ort.proto import tei_pb2_grpc as rpc
from tei_ort.serving.infer import Infer
from tests.support.app import FakeModel, grpc_on_free_port, serve, settings, until

pytestmark = pytest.mark.anyio

TEXTS = [
    "What is Deep Learning?",
    "The cat sat on the mat.",
    "héllo wörld, ünïcode",
    "Paris is the capital of France.",
]
KEY = (("authorization", "Bearer secret"),)


@dataclass
class Both:
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    server: GrpcServer
    infer: Infer


@contextlib.asynccontextmanager
async def both(model: FakeModel, **overrides: Any) -> AsyncIterator[Both]:
    """The HTTP app and its gRPC companion on 127.0.0.1 (a free port), one Infer."""
    config = settings(**overrides)
    started: list[GrpcServer] = []

    app = create_app(config, model, companions=[grpc_on_free_port(config, started)])
    async with serve(app) as client:
        server = started[0]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Both(client, channel, server, app.state.infer)


async def stream(requests: Iterable[Any]) -> AsyncIterator[Any]:
    for request in requests:
        yield request


def close(a: Iterable[float], b: Iterable[float]) -> None:
    np.testing.assert_allclose(np.asarray(list(a)), np.asarray(list(b)), rtol=1e-5, atol=1e-6)


async def test_embed_methods_match_http_routes(make_model: Any) -> None:
    async with both(make_model("embedding")) as s:
        stub = rpc.EmbedStub(s.channel)
        http = (await s.http.post("/embed", json={"inputs": TEXTS})).json()
        for text, expected in zip(TEXTS, http, strict=True):
            call = stub.Embed(pb.EmbedRequest(inputs=text))
            response = await call
            close(response.embeddings, expected)
            assert response.metadata.compute_chars == len(text)
            assert response.metadata.compute_tokens > 2
            assert response.metadata.total_time_ns >= response.metadata.inference_time_ns > 0
            headers = dict(await call.initial_metadata())
            assert headers["x-compute-type"] == "cpu"
            assert int(headers["x-compute-tokens"]) == response.metadata.compute_tokens
        # in order, with the same answers, through a stream
        answers = [
            r async for r in stub.EmbedStream(stream(pb.EmbedRequest(inputs=t) for t in TEXTS))
        ]
        assert len(answers) == len(TEXTS)
        for answer, expected in zip(answers, http, strict=True):
            close(answer.embeddings, expected)
        # normalize absent means true; false and dimensions as /embed takes them
        raw = (await s.http.post("/embed", json={"inputs": TEXTS[0], "normalize": False})).json()
        response = await stub.Embed(pb.EmbedRequest(inputs=TEXTS[0], normalize=False))
        close(response.embeddings, raw[0])
        cut = (await s.http.post("/embed", json={"inputs": TEXTS[0], "dimensions": 8})).json()
        response = await stub.Embed(pb.EmbedRequest(inputs=TEXTS[0], dimensions=8))
        assert len(response.embeddings) == 8
        close(response.embeddings, cut[0])
        # left truncation
        body = {"inputs": TEXTS[0], "truncate": True, "truncation_direction": "left"}
        left = (await s.http.post("/embed", json=body)).json()
        request = pb.EmbedRequest(
            inputs=TEXTS[0], truncate=True, truncation_direction=pb.TRUNCATION_DIRECTION_LEFT
        )
        close((await stub.Embed(request)).embeddings, left[0])
        # per-token embeddings
        tokens = (await s.http.post("/embed_all", json={"inputs": TEXTS[:2]})).json()
        for text, expected in zip(TEXTS[:2], tokens, strict=True):
            response = await stub.EmbedAll(pb.EmbedAllRequest(inputs=text))
            assert len(response.token_embeddings) == len(expected)
            for row, want in zip(response.token_embeddings, expected, strict=True):
                close(row.embeddings, want)
        streamed = [
            r
            async for r in stub.EmbedAllStream(
                stream(pb.EmbedAllRequest(inputs=t) for t in TEXTS[:2])
            )
        ]
        assert [len(r.token_embeddings) for r in streamed] == [len(t) for t in tokens]


async def test_embed_sparse_matches_http(make_model: Any) -> None:
    async with both(make_model("splade")) as s:
        stub = rpc.EmbedStub(s.channel)
        http = (await s.http.post("/embed_sparse", json={"inputs": TEXTS})).json()
        answers = [
            r
            async for r in stub.EmbedSparseStream(
                stream(pb.EmbedSparseRequest(inputs=t) for t in TEXTS)
            )
        ]
        unary = await stub.EmbedSparse(pb.EmbedSparseRequest(inputs=TEXTS[0]))
        for answer, expected in zip([unary, *answers], [http[0], *http], strict=True):
            assert [v.index for v in answer.sparse_embeddings] == [e["index"] for e in expected]
            close([v.value for v in answer.sparse_embeddings], [e["value"] for e in expected])


async def test_predict_methods_match_http(make_model: Any) -> None:
    async with both(make_model("classifier")) as s:
        stub = rpc.PredictStub(s.channel)
        for raw_scores in (False, True):
            http = (
                await s.http.post("/predict", json={"inputs": TEXTS[0], "raw_scores": raw_scores})
            ).json()
            response = await stub.Predict(pb.PredictRequest(inputs=TEXTS[0], raw_scores=raw_scores))
            assert [p.label for p in response.predictions] == [p["label"] for p in http]
            close([p.score for p in response.predictions], [p["score"] for p in http])
        pair = (await s.http.post("/predict", json={"inputs": TEXTS[:2]})).json()
        response = await stub.PredictPair(pb.PredictPairRequest(inputs=TEXTS[:2]))
        assert [p.label for p in response.predictions] == [p["label"] for p in pair]
        close([p.score for p in response.predictions], [p["score"] for p in pair])
        single = await stub.PredictPair(pb.PredictPairRequest(inputs=TEXTS[:1]))
        close(
            [p.score for p in single.predictions],
            [p.score for p in (await stub.Predict(pb.PredictRequest(inputs=TEXTS[0]))).predictions],
        )
        batch = (await s.http.post("/predict", json={"inputs": [[t] for t in TEXTS]})).json()
        answers = [
            r async for r in stub.PredictStream(stream(pb.PredictRequest(inputs=t) for t in TEXTS))
        ]
        for answer, expected in zip(answers, batch, strict=True):
            assert [p.label for p in answer.predictions] == [p["label"] for p in expected]
            close([p.score for p in answer.predictions], [p["score"] for p in expected])
        pairs = [
            r
            async for r in stub.PredictPairStream(
                stream(pb.PredictPairRequest(inputs=[t, TEXTS[0]]) for t in TEXTS)
            )
        ]
        http_pairs = (
            await s.http.post("/predict", json={"inputs": [[t, TEXTS[0]] for t in TEXTS]})
        ).json()
        for answer, expected in zip(pairs, http_pairs, strict=True):
            close([p.score for p in answer.predictions], [p["score"] for p in expected])


async def test_rerank_methods_match_http(make_model: Any) -> None:
    query = "What is Deep Learning?"
    async with both(make_model("reranker")) as s:
        stub = rpc.RerankStub(s.channel)
        for raw_scores, return_text in ((False, True), (True, False)):
            body = {
                "query": query,
                "texts": TEXTS,
                "raw_scores": raw_scores,
                "return_text": return_text,
            }
            http = (await s.http.post("/rerank", json=body)).json()
            request = pb.RerankRequest(
                query=query, texts=TEXTS, raw_scores=raw_scores, return_text=return_text
            )
            response = await stub.Rerank(request)
            assert [r.index for r in response.ranks] == [r["index"] for r in http]
            close([r.score for r in response.ranks], [r["score"] for r in http])
            if return_text:
                assert [r.text for r in response.ranks] == [r["text"] for r in http]
            else:
                assert not any(r.HasField("text") for r in response.ranks)
            assert response.metadata.compute_tokens > 0
            # RerankStream: raw_scores and return_text come from the first message
            messages = [
                pb.RerankStreamRequest(
                    query=query,
                    text=text,
                    raw_scores=raw_scores if i == 0 else not raw_scores,
                    return_text=return_text if i == 0 else not return_text,
                )
                for i, text in enumerate(TEXTS)
            ]
            streamed = await stub.RerankStream(stream(messages))
            assert [r.index for r in streamed.ranks] == [r["index"] for r in http]
            close([r.score for r in streamed.ranks], [r["score"] for r in http])
            assert all(r.HasField("text") == return_text for r in streamed.ranks)


async def test_tokenize_decode_and_info_match_http(make_model: Any) -> None:
    async with both(make_model("embedding")) as s:
        stub = rpc.TokenizeStub(s.channel)
        http = (await s.http.post("/tokenize", json={"inputs": TEXTS})).json()
        answers = [
            r
            async for r in stub.TokenizeStream(
                stream(pb.EncodeRequest(inputs=t, add_special_tokens=True) for t in TEXTS)
            )
        ]
        for answer, expected in zip(answers, http, strict=True):
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
            assert got == expected
        plain = await stub.Tokenize(pb.EncodeRequest(inputs=TEXTS[0]))  # proto3 default: false
        assert not any(t.special for t in plain.tokens)
        ids = [[t["id"] for t in row] for row in http]
        decoded = (await s.http.post("/decode", json={"ids": ids})).json()
        streamed = [
            r.text
            async for r in stub.DecodeStream(
                stream(pb.DecodeRequest(ids=row, skip_special_tokens=True) for row in ids)
            )
        ]
        assert streamed == decoded
        kept = await stub.Decode(pb.DecodeRequest(ids=ids[0]))
        assert kept.text.startswith("[CLS]")

        info = (await s.http.get("/info")).json()
        response = await rpc.InfoStub(s.channel).Info(pb.InfoRequest())
        assert response.model_type == pb.MODEL_TYPE_EMBEDDING
        for name in (
            "version",
            "model_id",
            "model_dtype",
            "max_concurrent_requests",
            "max_input_length",
            "max_batch_tokens",
            "max_client_batch_size",
            "tokenization_workers",
        ):
            assert getattr(response, name) == info[name], name
        assert not response.HasField("max_batch_requests")


async def test_streams_and_http_batch_together_and_keep_order(make_model: Any) -> None:
    model = make_model("embedding")
    batches: list[set[int]] = []
    gate = threading.Event()

    def record(inputs: EngineInputs) -> None:
        batches.append(_ids(inputs))
        gate.wait(5.0)

    grpc_texts = [f"alpha {i}" for i in range(24)]
    http_texts = [f"omega {i}" for i in range(24)]
    async with both(model) as s:
        model.engine.on_run = record
        alpha = _token(model, "alpha")
        omega = _token(model, "omega")
        # one batch holds the engine; a second request and everything sent next wait in
        # the queue (the batcher forms a batch only when the engine asks for one) and go
        # into one later batch
        running = asyncio.ensure_future(s.http.post("/embed", json={"inputs": "running"}))
        while not batches:
            await asyncio.sleep(0.005)
        waiting = asyncio.ensure_future(s.http.post("/embed", json={"inputs": "waiting"}))
        permits = s.infer.permits
        while permits.free > permits.total - 2 or len(s.infer.queue) != 1:
            await asyncio.sleep(0.005)
        stub = rpc.EmbedStub(s.channel)

        async def grpc_side() -> list[Any]:
            requests = (pb.EmbedRequest(inputs=t) for t in grpc_texts)
            return [r async for r in stub.EmbedStream(stream(requests))]

        async def http_side() -> list[Any]:
            return await asyncio.gather(
                *(s.http.post("/embed", json={"inputs": t}) for t in http_texts)
            )

        sides = asyncio.gather(grpc_side(), http_side())
        for _ in range(500):
            if len(s.infer.queue) == 1 + len(grpc_texts) + len(http_texts):
                break
            await asyncio.sleep(0.01)
        gate.set()
        streamed, responses = await sides
        assert (await running).status_code == (await waiting).status_code == 200
        expected = (await s.http.post("/embed", json={"inputs": grpc_texts})).json()
    for answer, want in zip(streamed, expected, strict=True):  # in request order
        close(answer.embeddings, want)
    assert all(r.status_code == 200 for r in responses)
    mixed = [batch for batch in batches if alpha in batch and omega in batch]
    assert mixed, batches


def _ids(inputs: EngineInputs) -> set[int]:
    return set(inputs.input_ids[inputs.attention_mask == 1].tolist())


def _token(model: FakeModel, word: str) -> int:
    (encoded,) = model.tokenizer.encode_batch([word])
    return int(encoded.input_ids[1])


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    code: grpc.StatusCode = info.value.code()
    return code


async def test_error_codes(make_model: Any) -> None:
    long_text = " ".join(["word"] * 400)  # over the fake model's 256 tokens
    async with both(make_model("embedding"), api_key="secret") as s:
        embed = rpc.EmbedStub(s.channel)
        ok = pb.EmbedRequest(inputs="hello")
        assert await _code(embed.Embed(ok)) == grpc.StatusCode.UNAUTHENTICATED
        wrong = (("authorization", "Bearer nope"),)
        assert await _code(embed.Embed(ok, metadata=wrong)) == grpc.StatusCode.UNAUTHENTICATED
        assert await _code(rpc.InfoStub(s.channel).Info(pb.InfoRequest())) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert len((await embed.Embed(ok, metadata=KEY)).embeddings) == 32
        empty = pb.EmbedRequest(inputs="")
        assert await _code(embed.Embed(empty, metadata=KEY)) == grpc.StatusCode.INVALID_ARGUMENT
        too_long = pb.EmbedRequest(inputs=long_text, truncate=False)
        assert await _code(embed.Embed(too_long, metadata=KEY)) == grpc.StatusCode.INVALID_ARGUMENT
        truncated = pb.EmbedRequest(inputs=long_text, truncate=True)
        assert len((await embed.Embed(truncated, metadata=KEY)).embeddings) == 32
        bad_dims = pb.EmbedRequest(inputs="hello", dimensions=1000)
        assert await _code(embed.Embed(bad_dims, metadata=KEY)) == grpc.StatusCode.INVALID_ARGUMENT
        bad_prompt = pb.EmbedRequest(inputs="hello", prompt_name="query")
        assert await _code(embed.Embed(bad_prompt, metadata=KEY)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        # the wrong method for the model kind
        sparse = pb.EmbedSparseRequest(inputs="hello")
        assert await _code(embed.EmbedSparse(sparse, metadata=KEY)) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        predict = rpc.PredictStub(s.channel).Predict(pb.PredictRequest(inputs="x"), metadata=KEY)
        assert await _code(predict) == grpc.StatusCode.FAILED_PRECONDITION
        rerank = rpc.RerankStub(s.channel).Rerank(
            pb.RerankRequest(query="q", texts=["a"]), metadata=KEY
        )
        assert await _code(rerank) == grpc.StatusCode.FAILED_PRECONDITION
        decode = rpc.TokenizeStub(s.channel).Decode(pb.DecodeRequest(ids=[]), metadata=KEY)
        assert await _code(decode) == grpc.StatusCode.INVALID_ARGUMENT
        # a stream answers what came before its failing message, then ends with its code
        call = embed.EmbedStream(
            stream([ok, ok, empty, ok]),
            metadata=KEY,
        )
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for answer in call:
                received.append(answer)
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(received) == 2
        metrics = (await s.http.get("/metrics")).text
        assert 'te_request_failure{err="validation"}' in metrics


async def test_predict_pair_with_three_inputs_and_empty_rerank_are_invalid(
    make_model: Any,
) -> None:
    async with both(make_model("reranker")) as s:
        three = pb.PredictPairRequest(inputs=["a", "b", "c"])
        code = await _code(rpc.PredictStub(s.channel).PredictPair(three))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        empty = rpc.RerankStub(s.channel).Rerank(pb.RerankRequest(query="q"))
        assert await _code(empty) == grpc.StatusCode.INVALID_ARGUMENT
        too_many = pb.RerankRequest(query="q", texts=["t"] * 40)  # over max_client_batch_size
        assert await _code(rpc.RerankStub(s.channel).Rerank(too_many)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        nothing = rpc.RerankStub(s.channel).RerankStream(stream([]))
        assert await _code(nothing) == grpc.StatusCode.INVALID_ARGUMENT


async def _details(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details()


async def test_error_texts_are_teis(make_model: Any) -> None:
    """The texts of TEI's gRPC server (grpc/server.rs), bare where TEI sends them bare."""
    precondition, invalid = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT
    async with both(make_model("embedding"), api_key="secret") as s:
        embed = rpc.EmbedStub(s.channel).Embed(pb.EmbedRequest(inputs="x"))
        assert await _details(embed) == (grpc.StatusCode.UNAUTHENTICATED, "No valid auth token")
        rerank = rpc.RerankStub(s.channel).Rerank(
            pb.RerankRequest(query="q", texts=["a"]), metadata=KEY
        )
        assert await _details(rerank) == (precondition, "model is not a classifier model")
        predict = rpc.PredictStub(s.channel).Predict(pb.PredictRequest(inputs="x"), metadata=KEY)
        assert await _details(predict) == (
            precondition,
            "Backend error: Model is not a classifier model",
        )
        dims = rpc.EmbedStub(s.channel).Embed(
            pb.EmbedRequest(inputs="x", dimensions=1000), metadata=KEY
        )
        assert await _details(dims) == (
            invalid,
            "Input validation error: `dimensions` should be smaller than the maximum "
            "embedding dimension.",
        )
    async with both(make_model("classifier")) as s:
        rerank = rpc.RerankStub(s.channel).Rerank(pb.RerankRequest(query="q", texts=["a"]))
        assert await _details(rerank) == (precondition, "model is not a re-ranker model")
        stream_call = rpc.RerankStub(s.channel).RerankStream(
            stream([pb.RerankStreamRequest(query="q", text="a")])
        )
        assert await _details(stream_call) == (precondition, "model is not a re-ranker model")
        three = rpc.PredictStub(s.channel).PredictPair(
            pb.PredictPairRequest(inputs=["a", "b", "c"])
        )
        assert await _details(three) == (
            invalid,
            "`inputs` must have a single or two elements. Given: 3",
        )


async def test_engine_failure_is_failed_precondition(make_model: Any) -> None:
    model = make_model("embedding")
    async with both(model) as s:
        model.engine.fail_always = True
        call = rpc.EmbedStub(s.channel).Embed(pb.EmbedRequest(inputs="hello"))
        assert await _code(call) == grpc.StatusCode.FAILED_PRECONDITION


async def test_health_follows_the_engine(make_model: Any) -> None:
    model = make_model("embedding")
    async with both(model) as s:
        health = health_pb2_grpc.HealthStub(s.channel)
        check = health_pb2.HealthCheckRequest(service="tei.v1.Embed")
        assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
        model.engine.fail_always = True
        call = rpc.EmbedStub(s.channel).Embed(pb.EmbedRequest(inputs="hello"))
        assert await _code(call) == grpc.StatusCode.FAILED_PRECONDITION
        answer = await health.Check(check)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert (await s.http.get("/health")).status_code == 503  # the same verdict as HTTP
        model.engine.fail_always = False
        assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING


async def test_unary_overload_is_resource_exhausted_while_streams_wait(make_model: Any) -> None:
    model = make_model("embedding", delay_s=0.05)
    async with both(model, max_concurrent_requests=2) as s:
        stub = rpc.EmbedStub(s.channel)
        calls = [stub.Embed(pb.EmbedRequest(inputs=f"text {i}")) for i in range(12)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        codes = [o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert codes and set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert any(not isinstance(o, BaseException) for o in outcomes)
        refused = next(o for o in outcomes if isinstance(o, grpc.aio.AioRpcError))
        assert refused.details() == "Model is overloaded"
        # the messages of a stream wait for their permits instead
        requests = (pb.EmbedRequest(inputs=f"text {i}") for i in range(12))
        answers = [r async for r in stub.EmbedStream(stream(requests))]
        assert len(answers) == 12
        assert 'te_request_failure{err="overloaded"}' in (await s.http.get("/metrics")).text


async def test_cancelled_stream_drops_its_queued_inputs(make_model: Any) -> None:
    model = make_model("embedding", delay_s=0.05)
    gate, running = threading.Event(), threading.Event()

    def hold(inputs: Any) -> None:
        running.set()
        gate.wait(5.0)

    async with both(model, max_batch_requests=1) as s:
        model.engine.on_run = hold
        stub = rpc.EmbedStub(s.channel)
        call = stub.EmbedStream(stream(pb.EmbedRequest(inputs=f"t {i}") for i in range(8)))
        # the first message holds the engine, the seven others wait in the queue
        await until(lambda: running.is_set() and len(s.infer.queue) == 7, "8 messages in")
        runs = len(model.engine.calls)
        call.cancel()
        await until(lambda: len(s.infer.queue) == 0, "the queued messages withdrawn")
        gate.set()
        await until(lambda: s.infer.permits.free == s.infer.permits.total, "every permit came back")
        assert len(model.engine.calls) == runs  # nothing ran after the cancel
        response = await stub.Embed(pb.EmbedRequest(inputs="after"))
        assert len(response.embeddings) == 32


def test_error_mapping_is_teis() -> None:
    expected = {
        errors.UnhealthyError: grpc.StatusCode.UNAVAILABLE,
        errors.BackendError: grpc.StatusCode.FAILED_PRECONDITION,
        errors.ModelTypeError: grpc.StatusCode.FAILED_PRECONDITION,
        errors.TokenizerError: grpc.StatusCode.FAILED_PRECONDITION,
        errors.OverloadedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.ValidationError: grpc.StatusCode.INVALID_ARGUMENT,
        errors.BatchSizeError: grpc.StatusCode.INVALID_ARGUMENT,
        errors.EmptyError: grpc.StatusCode.INVALID_ARGUMENT,
    }
    for cls, code in expected.items():
        assert grpc_status(cls("x")) == code, cls


async def test_health_and_reflection_stay_open_with_an_api_key(make_model: Any) -> None:
    async with both(make_model("embedding"), api_key="secret") as s:
        health = health_pb2_grpc.HealthStub(s.channel)
        for service in ("", "tei.v1.Embed", "tei.v1.Tokenize"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(s.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = [r async for r in stub.ServerReflectionInfo(stream([request]))]
        names = {service.name for service in answer.list_services_response.service}
        assert {
            "tei.v1.Info",
            "tei.v1.Embed",
            "tei.v1.Predict",
            "tei.v1.Rerank",
            "tei.v1.Tokenize",
            "grpc.health.v1.Health",
        } <= names


def test_grpc_flags_and_their_environment_variables() -> None:
    from tei_ort.cli.commands import build_parser
    from tei_ort.cli.flags import settings_from_args

    parser, serve_parser = build_parser()

    def parse(argv: list[str], environ: dict[str, str] | None = None) -> Any:
        return settings_from_args(
            serve_parser, parser.parse_args(["serve", *argv]), environ=environ or {}
        )

    assert parse([]).grpc is False and parse([]).grpc_port is None
    assert parse(["--grpc"]).grpc is True
    assert parse([], {"GRPC": "true"}).grpc is True
    assert parse(["--grpc-port", "50051"]).grpc_port == 50051
    assert parse([], {"GRPC_PORT": "50051"}).grpc_port == 50051
    with pytest.raises(SystemExit):
        parse(["--grpc", "--grpc-port", "50051"])  # --grpc already serves gRPC on --port
    with pytest.raises(SystemExit):
        parse(["--port", "8080", "--grpc-port", "8080"])
    traced = parse(["--otlp-endpoint", "http://127.0.0.1:4317", "--otlp-service-name", "svc"])
    assert (traced.otlp_endpoint, traced.otlp_service_name) == ("http://127.0.0.1:4317", "svc")
