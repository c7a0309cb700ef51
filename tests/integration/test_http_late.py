"""Late-interaction models on TEI's routes (in process, lifespan on): /embed_all answers
ColBERT / BGE-M3 vectors by `input_type`, /embed_sparse and /embed BGE-M3's lexical and
dense outputs, /embed `outputs` all three from one pass, /rerank and /similarity score by
MaxSim (numpy reference) or BGE-M3's hybrid mix, compact encodings, gRPC EmbedAll."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import torch

import tei_ort
from tei_ort.api import Model
from tei_ort.http.app import create_app
from tei_ort.proto import tei_pb2 as pb
from tei_ort.proto import tei_pb2_grpc as rpc
from tests.support.app import grpc_on_free_port, serve, settings
from tests.support.tiny_bge_m3 import flag_reference, make_bge_m3
from tests.support.tiny_colbert import make_hf_colbert, stanford_colbert

pytestmark = pytest.mark.anyio

QUERY = "what does late interaction score?"
DOCS = [
    "Late interaction scores each query token against every document token.",
    "A cat sat on the mat.",
    "MaxSim: the best match of each query token, summed over the query.",
    "short",
]


@pytest.fixture(scope="module")
def bge_m3(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("bge_m3")
    torch.set_num_threads(1)
    parts = make_bge_m3(path)
    model = tei_ort.load(str(path), engine_cache=str(path / "engines"), threads=1)
    yield path, parts, model
    model.close()


@pytest.fixture(scope="module")
def colbert(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("colbert")
    encoder = make_hf_colbert(path)
    model = tei_ort.load(str(path), engine_cache=str(path / "engines"), threads=1)
    yield path, encoder, model
    model.close()


@contextlib.asynccontextmanager
async def client(model: Model) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(settings(), model.loaded)) as http:
        yield http


def _maxsim(q: np.ndarray, d: np.ndarray) -> float:
    """The textbook MaxSim, one pair at a time in float64."""
    sims = q.astype(np.float64) @ d.astype(np.float64).T
    return float(sims.max(axis=1).sum())


async def test_bge_m3_routes(bge_m3: Any) -> None:
    path, (encoder, colbert_head, sparse_head), model = bge_m3
    ref = flag_reference(path, encoder, colbert_head, sparse_head, [QUERY, *DOCS])
    async with client(model) as http:
        dense = np.asarray((await http.post("/embed", json={"inputs": DOCS})).json())
        multi = (await http.post("/embed_all", json={"inputs": DOCS})).json()
        sparse = (await http.post("/embed_sparse", json={"inputs": DOCS})).json()
        both = await http.post(
            "/embed", json={"inputs": DOCS, "outputs": ["dense", "sparse", "multi_vector"]}
        )
        assert both.status_code == 200, both.text
        one_pass = both.json()
        only = (await http.post("/embed", json={"inputs": DOCS[0], "outputs": ["sparse"]})).json()
        for i, r in enumerate(ref[1:]):
            np.testing.assert_allclose(dense[i], r["dense"], atol=1e-5)
            np.testing.assert_allclose(np.asarray(multi[i]), r["colbert"], atol=1e-5)
            lexical = {e["index"]: e["value"] for e in sparse[i]}
            assert isinstance(r["sparse"], dict) and set(lexical) == set(r["sparse"])
            np.testing.assert_allclose(one_pass[i]["dense"], dense[i], atol=1e-6)
            np.testing.assert_allclose(one_pass[i]["multi_vector"], multi[i], atol=1e-6)
            assert one_pass[i]["sparse"] == sparse[i]
        assert list(only[0]) == ["sparse"] and only[0]["sparse"] == sparse[0]

        # /rerank: BGE-M3's ColBERT score (MaxSim over the query's vector count)
        ranked = (await http.post("/rerank", json={"query": QUERY, "texts": DOCS})).json()
        q = np.asarray(ref[0]["colbert"])
        expected = [_maxsim(q, np.asarray(r["colbert"])) / q.shape[0] for r in ref[1:]]
        assert [r["index"] for r in ranked] == list(np.argsort(expected)[::-1])
        np.testing.assert_allclose(
            [r["score"] for r in sorted(ranked, key=lambda r: r["index"])], expected, atol=1e-5
        )
        # the hybrid mix, FlagEmbedding's compute_score "colbert+sparse+dense"
        weights = [0.4, 0.2, 0.4]
        body = {"query": QUERY, "texts": DOCS, "hybrid_weights": weights}
        mixed = (await http.post("/rerank", json=body)).json()
        qs = ref[0]["sparse"]
        assert isinstance(qs, dict)
        hybrid = []
        for r, colbert_score in zip(ref[1:], expected, strict=True):
            ds = r["sparse"]
            assert isinstance(ds, dict)
            lex = sum(w * ds[t] for t, w in qs.items() if t in ds)
            dense_score = float(np.dot(ref[0]["dense"], r["dense"]))  # type: ignore[arg-type]
            hybrid.append(
                (weights[0] * dense_score + weights[1] * lex + weights[2] * colbert_score)
                / sum(weights)
            )
        np.testing.assert_allclose(
            [r["score"] for r in sorted(mixed, key=lambda r: r["index"])], hybrid, atol=1e-5
        )
        # Cohere's form takes the field too
        cohere = await http.post(
            "/v1/rerank", json={"query": QUERY, "documents": DOCS, "hybrid_weights": weights}
        )
        assert cohere.status_code == 200, cohere.text
        bad = await http.post("/rerank", json={**body, "hybrid_weights": [1, -1, 1]})
        assert bad.status_code == 422


async def test_colbert_routes_and_encodings(colbert: Any) -> None:
    path, encoder, model = colbert
    queries = stanford_colbert(path, encoder, [QUERY], query=True)
    docs = stanford_colbert(path, encoder, DOCS, query=False)
    async with client(model) as http:
        got = await http.post("/embed_all", json={"inputs": QUERY, "input_type": "query"})
        np.testing.assert_allclose(np.asarray(got.json()[0]), queries[0], atol=2e-5)
        got_docs = (await http.post("/embed_all", json={"inputs": DOCS})).json()
        for g, e in zip(got_docs, docs, strict=True):
            np.testing.assert_allclose(np.asarray(g), e, atol=2e-5)

        # compact encodings: base64 of the row-major little-endian bytes, float16 if asked
        body = {"inputs": DOCS, "encoding_format": "base64", "embedding_dtype": "float16"}
        packed = (await http.post("/embed_all", json=body)).json()
        for p, e in zip(packed, docs, strict=True):
            assert p["dtype"] == "float16" and p["shape"] == list(e.shape)
            raw = np.frombuffer(base64.b64decode(p["base64"]), "<f2").reshape(p["shape"])
            np.testing.assert_allclose(raw, e, atol=2e-3)
        body32 = {"inputs": DOCS[0], "encoding_format": "base64"}
        p32 = (await http.post("/embed_all", json=body32)).json()[0]
        raw32 = np.frombuffer(base64.b64decode(p32["base64"]), "<f4").reshape(p32["shape"])
        np.testing.assert_allclose(raw32, docs[0], atol=2e-5)

        # /rerank and /similarity: MaxSim summed over the query's vectors (ColBERT's score)
        expected = [_maxsim(queries[0], d) for d in docs]
        ranked = (await http.post("/rerank", json={"query": QUERY, "texts": DOCS})).json()
        assert [r["index"] for r in ranked] == list(np.argsort(expected)[::-1])
        np.testing.assert_allclose(
            [r["score"] for r in sorted(ranked, key=lambda r: r["index"])], expected, atol=1e-4
        )
        sim = await http.post(
            "/similarity", json={"inputs": {"source_sentence": QUERY, "sentences": DOCS}}
        )
        np.testing.assert_allclose(sim.json(), expected, atol=1e-4)

        # refusals, in the route's format
        for bad in (
            {"inputs": "x", "input_type": "passage"},
            {"inputs": "x", "encoding_format": "binary"},
            {"inputs": "x", "embedding_dtype": "int4"},
        ):
            answer = await http.post("/embed_all", json=bad)
            assert answer.status_code == 422, bad
            assert answer.json()["error_type"] == "Validation"
        hybrid = {"query": QUERY, "texts": DOCS, "hybrid_weights": [1, 1, 1]}
        assert (await http.post("/rerank", json=hybrid)).status_code == 422
        outputs = await http.post("/embed", json={"inputs": "x", "outputs": ["sparse"]})
        assert outputs.status_code == 422  # a ColBERT model has no BGE-M3 heads
        assert (
            await http.post("/embed", json={"inputs": "x", "outputs": ["nope"]})
        ).status_code == 422
        # TEI's /embed is unchanged without the new fields
        assert len((await http.post("/embed", json={"inputs": "x"})).json()[0]) == 32


async def test_grpc_embed_all_input_type(colbert: Any) -> None:
    path, encoder, model = colbert
    queries = stanford_colbert(path, encoder, [QUERY], query=True)
    docs = stanford_colbert(path, encoder, [DOCS[0]], query=False)
    config = settings()
    started: list[Any] = []
    app = create_app(config, model.loaded, companions=[grpc_on_free_port(config, started)])
    async with serve(app), grpc.aio.insecure_channel(f"127.0.0.1:{started[0].port}") as channel:
        stub = rpc.EmbedStub(channel)
        answer = await stub.EmbedAll(pb.EmbedAllRequest(inputs=QUERY, input_type="query"))
        rows = np.asarray([list(t.embeddings) for t in answer.token_embeddings])
        np.testing.assert_allclose(rows, queries[0], atol=2e-5)
        answer = await stub.EmbedAll(pb.EmbedAllRequest(inputs=DOCS[0]))
        rows = np.asarray([list(t.embeddings) for t in answer.token_embeddings])
        np.testing.assert_allclose(rows, docs[0], atol=2e-5)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.EmbedAll(pb.EmbedAllRequest(inputs="x", input_type="passage"))
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_base64_sizes_for_the_readme() -> None:
    """What a 512-token document's vectors cost on the wire, by encoding (README figures)."""
    import orjson

    from tei_ort.serving.embedding_types import encode_matrix

    rng = np.random.default_rng(0)
    sizes = {}
    for dim in (128, 1024):
        m = rng.normal(size=(512, dim)).astype(np.float32)
        m /= np.linalg.norm(m, axis=1, keepdims=True)
        for fmt, dtype in (("float", "float32"), ("base64", "float32"), ("base64", "float16")):
            enc = encode_matrix(m, fmt, dtype)  # type: ignore[arg-type]
            sizes[(dim, fmt, dtype)] = len(orjson.dumps(enc, option=orjson.OPT_SERIALIZE_NUMPY))
    # base64 carries 4 (float32) or 2 (float16) bytes a number, times 4/3
    assert abs(sizes[(128, "base64", "float32")] - 512 * 128 * 4 * 4 / 3) < 200
    assert abs(sizes[(128, "base64", "float16")] - 512 * 128 * 2 * 4 / 3) < 200
    assert sizes[(128, "float", "float32")] > 2 * sizes[(128, "base64", "float32")]
    print(sizes)


async def test_late_chunking_on_embed(tmp_path: Path) -> None:
    from tei_ort.model.info import Pooling
    from tests.support.tiny_models import make_served_model

    make_served_model("bert", "base", tmp_path)
    model = tei_ort.load(
        str(tmp_path), engine_cache=str(tmp_path / "engines"), pooling=Pooling.MEAN, threads=1
    )
    doc = " ".join(DOCS * 4)  # ~100 tokens: two windows of the model's 64
    spans = [(0, 40), (72, 200), (len(doc) - 30, len(doc))]
    expected = model.embed_chunks([doc, DOCS[1]], spans=[spans, [(0, 5)]])
    async with client(model) as http:
        body = {"inputs": [doc, DOCS[1]], "chunks": [spans, [[0, 5]]]}
        answer = await http.post("/embed", json=body)
        assert answer.status_code == 200, answer.text
        for got, want in zip(answer.json(), expected, strict=True):
            assert [tuple(s) for s in got["spans"]] == want.spans
            np.testing.assert_allclose(got["embeddings"], want.vectors, atol=1e-6)
        sized = await http.post(
            "/embed", json={"inputs": doc, "chunks": {"size": 16, "overlap": 4}}
        )
        want_sized = model.embed_chunks(doc, size=16, overlap=4)[0]
        np.testing.assert_allclose(sized.json()[0]["embeddings"], want_sized.vectors, atol=1e-6)
        alone = await http.post("/embed", json={**body, "late": False})
        np.testing.assert_allclose(
            alone.json()[0]["embeddings"], model.embed([doc[s:e] for s, e in spans]), atol=1e-6
        )
        for bad in (
            {"inputs": doc, "late": False},  # late without chunks
            {"inputs": doc, "chunks": [[[5, 2]]]},  # an empty span
            {"inputs": doc, "chunks": {"size": 4, "overlap": 4}},
            {"inputs": doc, "chunks": [[[0, 5]], [[0, 5]]]},  # two span lists, one input
            {"inputs": doc, "chunks": "all"},
        ):
            refused = await http.post("/embed", json=bad)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["error_type"] == "Validation"
        # compact encodings work on any model's /embed_all (here raw token states)
        plain = (await http.post("/embed_all", json={"inputs": DOCS[0]})).json()[0]
        body64 = {"inputs": DOCS[0], "encoding_format": "base64"}
        packed = (await http.post("/embed_all", json=body64)).json()[0]
        raw = np.frombuffer(base64.b64decode(packed["base64"]), "<f4").reshape(packed["shape"])
        np.testing.assert_array_equal(raw, np.asarray(plain, dtype=np.float32))
        # TEI's /embed answer when `chunks` is absent
        assert np.asarray((await http.post("/embed", json={"inputs": doc})).json()).shape == (1, 32)
    model.close()
