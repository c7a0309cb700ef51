"""tei-ort on Ray Serve (a local Ray of 2 CPUs): the same answers as the plain app through
Serve's proxy, and a replica killed under load is replaced with every request answered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from tei_ort.http.app import create_app
from tei_ort.model.loading import ModelOptions, load_model
from tei_ort.ray_proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from tei_ort.ray_serve import APP_NAME, Scaling, build_app
from tei_ort.settings import Settings
from tests.support.app import serve as serve_in_process
from tests.support.tiny_classifier import make_classifier
from tests.support.tiny_embedder import make_embedder

# replicas reserve half a CPU each: two fit beside Serve's proxy and controller
SCALING = Scaling(num_cpus=0.5, health_check_period_s=1.0, health_check_timeout_s=10.0)


@pytest.fixture(scope="module")
def proxy_url() -> Iterator[str]:
    """One local Ray and Serve for the module (starting them costs seconds)."""
    patch = pytest.MonkeyPatch()
    patch.setenv(PROXY_CALLBACK_ENV, PROXY_CALLBACK)  # inherited by Ray's processes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray Serve's proxy takes a port number, not a socket: the one the OS had free
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        patch.undo()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ray-models")
    return {
        "embedder": make_embedder(root / "embedder"),
        "reranker": make_classifier(root / "reranker", num_labels=1),
        "cache": root / "engines",
    }


def _settings(models: dict[str, Path], kind: str) -> Settings:
    return Settings(
        model_id=str(models[kind]),
        engine_cache=str(models["cache"]),
        tokenization_workers=1,
        dtype="float32",  # compared with the in-process app, which tests run in float32
    )


def _deploy(settings: Settings, scaling: Scaling = SCALING) -> None:
    serve.run(build_app(settings, scaling), name=APP_NAME, route_prefix="/")


def _plain(settings: Settings, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    """The same requests answered by the plain app, in process."""
    model = load_model(ModelOptions.from_settings(settings))

    async def run() -> list[httpx.Response]:
        async with serve_in_process(create_app(settings, model)) as client:
            return [await client.post(path, json=body) for path, body in requests]

    return asyncio.run(run())


def _same_answers(ray_url: str, settings: Settings, requests: list[tuple[str, Any]]) -> None:
    plain = _plain(settings, requests)
    with httpx.Client(base_url=ray_url, timeout=60) as client:
        for (path, body), expected in zip(requests, plain, strict=True):
            got = client.post(path, json=body)
            assert got.status_code == expected.status_code, (path, got.text)
            assert got.headers["content-type"] == expected.headers["content-type"]
            for header in ("x-compute-type", "x-compute-tokens", "x-compute-characters"):
                assert got.headers.get(header) == expected.headers.get(header), header
            _assert_close(got.json(), expected.json())


def _assert_close(got: Any, expected: Any) -> None:
    """Equal JSON, numbers within 1e-5 (the batch a text lands in may differ)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys()
        for key in expected:
            _assert_close(got[key], expected[key])
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            _assert_close(a, b)
    elif isinstance(expected, float):
        assert abs(got - expected) <= 1e-5
    else:
        assert got == expected


def test_embed_and_openai_through_the_proxy(proxy_url: str, models: dict[str, Path]) -> None:
    settings = _settings(models, "embedder")
    _deploy(settings)
    _same_answers(
        proxy_url,
        settings,
        [
            ("/embed", {"inputs": ["a short text", "a somewhat longer text " * 5]}),
            ("/embed", {"inputs": "one", "normalize": False}),
            ("/v1/embeddings", {"input": ["first", "second"], "model": "tiny"}),
            ("/embed", {"inputs": ""}),  # 400 with TEI's error body
            ("/rerank", {"query": "q", "texts": ["a"]}),  # not a re-ranker: TEI's error
        ],
    )
    with httpx.Client(base_url=proxy_url) as client:
        assert client.get("/health").status_code == 200
        assert "te_request_count" in client.get("/metrics").text
        assert client.get("/info").json()["model_id"] == str(models["embedder"])


def test_rerank_through_the_proxy(proxy_url: str, models: dict[str, Path]) -> None:
    settings = _settings(models, "reranker")
    _deploy(settings)
    _same_answers(
        proxy_url,
        settings,
        [
            ("/rerank", {"query": "what is it", "texts": ["it is this", "no", "maybe so"]}),
            ("/rerank", {"query": "q", "texts": ["a", "b"], "return_text": True}),
        ],
    )


def _replica_actors() -> list[str]:
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#")
    )


#: how long a killed replica's replacement may take to serve
REPLACEMENT_S = 120


def test_killed_replica_is_replaced_under_load(proxy_url: str, models: dict[str, Path]) -> None:
    _deploy(_settings(models, "embedder"))
    (victim,) = _replica_actors()
    statuses: list[int] = []
    stop = threading.Event()

    # a request queued while no replica is up waits for the new one, which may take up to
    # the replacement deadline below on a loaded machine (one waited past 60 s once in CI)
    def load() -> None:
        with httpx.Client(base_url=proxy_url, timeout=REPLACEMENT_S + 30) as client:
            while not stop.is_set():
                response = client.post("/embed", json={"inputs": "under load"})
                statuses.append(response.status_code)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    deadline = time.monotonic() + REPLACEMENT_S  # a new replica builds nothing, loads its engine
    while time.monotonic() < deadline:
        replicas = _replica_actors()
        if replicas and replicas != [victim] and statuses[-4:] == [200] * 4:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    stop.set()
    for worker in workers:
        worker.join(REPLACEMENT_S + 40)
        assert not worker.is_alive(), "a request hung"
    assert _replica_actors() not in ([], [victim])
    counts = {code: statuses.count(code) for code in set(statuses)}
    assert set(counts) <= {200, 503}, counts  # 503: in flight on the killed replica
    assert statuses[-1] == 200


def test_serve_ray_command_deploys_and_stops(
    proxy_url: str, models: dict[str, Path], tmp_path: Path
) -> None:
    """``tei-ort serve-ray`` joins the module's Ray, deploys, and deletes its app on SIGTERM."""
    address = str(ray.get_runtime_context().gcs_address)
    argv = [
        str(Path(sys.executable).parent / "tei-ort"), "serve-ray",
        "--model-id", str(models["embedder"]), "--engine-cache", str(models["cache"]),
        "--ray-address", address, "--num-cpus", "0.5", "--max-client-batch-size", "2",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with (tmp_path / "serve-ray.log").open("w") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        body = {"inputs": ["one", "two", "three"]}
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.post(f"{proxy_url}/embed", json=body, timeout=10).status_code
            if status == 422:  # the command's --max-client-batch-size, not the earlier app's
                break
            time.sleep(0.5)
        assert status == 422, (tmp_path / "serve-ray.log").read_text()[-2000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert APP_NAME not in serve.status().applications
    finally:
        if process.poll() is None:
            process.kill()
