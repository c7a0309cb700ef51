"""Typed embeddings on all-MiniLM-L6-v2: the real ``cohere`` client against a real
``tei-ort serve`` (two models) on 127.0.0.1, and the retrieval quality of int8 and binary
vectors on a generated retrieval set (tests/support/retrieval_set.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cohere
import httpx
import numpy as np
import pytest

import tei_ort
from tei_ort.serving.embedding_types import EmbeddingType, encode
from tests.support.app import MINILM_DIR
from tests.support.process import ServerProcess
from tests.support.retrieval_set import RetrievalSet, retrieval_set
from tests.support.tiny_embedder import make_embedder

TEXTS = ["What is Deep Learning?", "Paris is the capital of France.", "héllo wörld"]
LONG = " ".join(["word"] * 400)  # over MiniLM's 256 tokens


@dataclass
class Served:
    server: ServerProcess
    cache: Path
    tiny: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("typed")
    tiny = make_embedder(root / "tiny")
    prompts = {"prompts": {"query": "query: ", "passage": "passage: "}}
    (tiny / "config_sentence_transformers.json").write_text(json.dumps(prompts))
    cache = root / "engines"
    server = ServerProcess(
        [
            *("--model-id", str(MINILM_DIR), "--served-model-name", "minilm"),
            *("--model-id", str(tiny), "--served-model-name", "tiny"),
            *("--engine-cache", str(cache)),
        ],
        log=root / "server.log",
        timeout=300,
    )
    try:
        yield Served(server, cache, tiny)
    finally:
        assert server.stop() == 0


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """The clients' connections, closed after each test."""
    with httpx.Client(timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def minilm(served: Served) -> Iterator[tei_ort.api.Model]:
    """The in-process API on the server's engine cache (it finds the server's entry)."""
    model = tei_ort.load(str(MINILM_DIR), engine_cache=str(served.cache))
    yield model
    model.close()


def test_cohere_client_v2_every_type(
    served: Served, minilm: tei_ort.api.Model, http: httpx.Client
) -> None:
    client = cohere.ClientV2(base_url=served.server.url, api_key="unused", httpx_client=http)
    types = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    answer = client.embed(
        model="minilm", texts=TEXTS, input_type="search_document", embedding_types=types
    )
    assert answer.texts == TEXTS and answer.id
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert (answer.meta.billed_units.input_tokens or 0) > len(TEXTS)
    embeddings = answer.embeddings
    floats = np.asarray(embeddings.float_, np.float32)  # (3, 384)
    np.testing.assert_allclose(floats, minilm.embed(TEXTS), rtol=1e-4, atol=1e-5)
    # the server quantizes the vectors it answers, over the ranges of the entry it shares
    # with the in-process API (stored there at the server's start)
    calibration = minilm.calibrator.get()
    assert calibration.stored
    ranges = calibration.ranges(None, True)
    assert embeddings.int8 == encode(floats, EmbeddingType.INT8, ranges).tolist()
    assert embeddings.uint8 == encode(floats, EmbeddingType.UINT8, ranges).tolist()
    assert embeddings.binary == encode(floats, EmbeddingType.BINARY).tolist()
    assert embeddings.ubinary == encode(floats, EmbeddingType.UBINARY).tolist()
    assert embeddings.base64 is not None
    decoded = [np.frombuffer(base64.b64decode(s), "<f4") for s in embeddings.base64]
    assert np.array_equal(np.stack(decoded), floats)
    # Matryoshka and int8 together: cut, normalized again, its own ranges
    cut = client.embed(
        model="minilm",
        texts=TEXTS,
        input_type="search_query",
        embedding_types=["int8"],
        output_dimension=128,
    )
    short = minilm.embed(TEXTS, dimensions=128, embedding_type="int8")
    assert np.asarray(cut.embeddings.int8).shape == (3, 128)
    assert np.abs(np.asarray(cut.embeddings.int8) - short).max() <= 1  # engine ulps at a bin edge


def test_cohere_client_models_prompts_truncation_and_errors(
    served: Served, http: httpx.Client
) -> None:
    client = cohere.ClientV2(base_url=served.server.url, api_key="unused", httpx_client=http)
    url = served.server.url
    # several models by `model`: the tiny one maps search_query to its `query` prompt
    tiny = client.embed(model="tiny", texts=TEXTS[:1], input_type="search_query")
    expected = http.post(
        f"{url}/models/tiny/embed", json={"inputs": TEXTS[0], "prompt_name": "query"}
    ).json()
    np.testing.assert_allclose(tiny.embeddings.float_, expected, rtol=1e-5, atol=1e-6)
    info = http.get(f"{url}/models/tiny/info").json()
    assert info["input_types"] == {"search_query": "query", "search_document": "passage"}
    assert http.get(f"{url}/info").json()["input_types"] == {}  # MiniLM has no prompts
    # truncate: END (the default) and START give /embed's right and left truncation
    for truncate, direction in (("END", "right"), ("START", "left")):
        answer = client.embed(
            model="minilm", texts=[LONG + " end"], input_type="clustering", truncate=truncate
        )
        body = {"inputs": LONG + " end", "truncation_direction": direction}
        expected = http.post(f"{url}/embed", json=body).json()
        np.testing.assert_allclose(answer.embeddings.float_, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(cohere.UnprocessableEntityError) as refused:
        client.embed(model="minilm", texts=[LONG], input_type="search_query", truncate="NONE")
    assert "must have less than 256 tokens" in refused.value.body["message"]
    for bad in (
        {"truncate": "MIDDLE"},
        {"embedding_types": ["int4"]},
        {"embedding_types": ["binary"], "output_dimension": 100},
        {"model": "no-such-model"},
    ):
        arguments: dict[str, Any] = {
            "model": "minilm",
            "texts": TEXTS[:1],
            "input_type": "search_query",
            **bad,
        }
        with pytest.raises(cohere.UnprocessableEntityError) as error:
            client.embed(**arguments)
        assert set(error.value.body) == {"id", "message"}, bad
    # /v1/embed through the v1 client: the floats form without embedding_types
    v1_client = cohere.Client(base_url=url, api_key="unused", httpx_client=http)
    v1 = v1_client.embed(texts=TEXTS[:2], model="minilm")
    assert v1.response_type == "embeddings_floats"
    assert np.asarray(v1.embeddings).shape == (2, 384)
    # TEI's route refuses binary of 100 dimensions in TEI's format; the server serves on
    bad = http.post(
        f"{url}/embed", json={"inputs": "x", "embedding_type": "binary", "dimensions": 100}
    )
    assert bad.status_code == 422 and bad.json()["error_type"] == "Validation"
    assert "100 dimensions" in bad.json()["error"]
    assert http.post(f"{url}/embed", json={"inputs": "x"}).status_code == 200


def _recall_at_10(scores: np.ndarray, data: RetrievalSet) -> float:
    """Mean over queries of the share of relevant passages in the 10 best scored."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]  # (Q, 10)
    hits = [
        len(set(top[q].tolist()) & data.relevant[q]) / len(data.relevant[q])
        for q in range(len(top))
    ]
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def retrieval(minilm: tei_ort.api.Model) -> tuple[RetrievalSet, np.ndarray, np.ndarray]:
    data = retrieval_set()
    return data, minilm.embed(data.passages), minilm.embed(data.queries)


def test_int8_keeps_the_recall_of_float(
    minilm: tei_ort.api.Model, retrieval: tuple[RetrievalSet, np.ndarray, np.ndarray]
) -> None:
    data, passages, queries = retrieval
    float_recall = _recall_at_10(queries @ passages.T, data)
    assert 0.6 < float_recall < 1.0  # a set where float vectors do miss some
    codes = minilm.embed(data.passages[:16], embedding_type="int8")  # as the API answers
    ranges = minilm.calibrator.get().ranges(None, True)
    assert np.array_equal(codes, encode(passages[:16], EmbeddingType.INT8, ranges))
    # both sides int8, scored by integer dot products, as a vector store does
    p8 = encode(passages, EmbeddingType.INT8, ranges).astype(np.int32)  # (P, 384)
    q8 = encode(queries, EmbeddingType.INT8, ranges).astype(np.int32)  # (Q, 384)
    int8_recall = _recall_at_10((q8 @ p8.T).astype(np.float64), data)
    assert int8_recall >= 0.97 * float_recall, (int8_recall, float_recall)


def test_binary_with_float_rescoring_keeps_the_recall_of_float(
    retrieval: tuple[RetrievalSet, np.ndarray, np.ndarray],
) -> None:
    data, passages, queries = retrieval
    float_recall = _recall_at_10(queries @ passages.T, data)
    p1 = np.unpackbits(encode(passages, EmbeddingType.UBINARY), axis=1)  # (P, 384)
    q1 = np.unpackbits(encode(queries, EmbeddingType.UBINARY), axis=1)  # (Q, 384)
    hamming = (q1[:, None, :] != p1[None, :, :]).sum(axis=-1)  # (Q, P)
    candidates = np.argsort(hamming, axis=1, kind="stable")[:, :100]  # (Q, 100)
    # the 100 nearest in Hamming distance, scored again with the float vectors
    rescored = np.full(hamming.shape, -np.inf)
    for q in range(len(queries)):
        rescored[q, candidates[q]] = passages[candidates[q]] @ queries[q]
    binary_recall = _recall_at_10(rescored, data)
    assert binary_recall >= 0.95 * float_recall, (binary_recall, float_recall)
