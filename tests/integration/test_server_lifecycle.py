"""A real ``tei-ort serve`` over its whole life: a cache built ahead of time and mounted
read-only, the metrics port on --hostname, slow and idle clients cut off, SIGTERM drained.

The engine is built once with ``tei-ort build``; then the cache is made read-only
(``chmod -R a-w``) and every server of this module starts from it, writing nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tei_ort.model.hub import default_model_path
from tests.support.process import SCRIPTS, ServerProcess

#: inputs of ~50 tokens: 8 requests of 32 keep two cores busy for a few seconds
TEXT = "the quick brown fox jumps over the lazy dog " * 5
REQUESTS = 8


@dataclass
class Built:
    cache: Path
    snapshot: dict[str, tuple[int, int, int]]


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its size, mtime and mode: a write shows as a change."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def _chmod_tree(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    cache = tmp_path_factory.mktemp("lifecycle") / "engines"
    env = {k: v for k, v in os.environ.items() if k not in ("ENGINE_CACHE", "MODEL_ID")}
    cache_arg = ("--engine-cache", str(cache))
    subprocess.run(
        [str(SCRIPTS / "tei-ort"), "build", "--model-id", str(default_model_path()), *cache_arg],
        check=True,
        capture_output=True,
        env=env | {"HF_HUB_OFFLINE": "1", "DTYPE": "float32"},  # as ServerProcess serves
        timeout=300,
    )
    _chmod_tree(cache, writable=False)
    try:
        yield Built(cache, _snapshot(cache))
    finally:
        _chmod_tree(cache, writable=True)


@pytest.fixture(scope="module")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("lifecycle-log") / "server.log"
    args = ["--model-id", str(default_model_path()), "--engine-cache", str(built.cache)]
    args += ["--header-read-timeout", "1", "--body-read-timeout", "1"]
    args += ["--keep-alive-timeout", "1", "--max-connections", "4"]
    process = ServerProcess(args, log=log)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.output()


def _closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reads past any answer); fails after ``limit``."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_a_built_engine_starts_from_a_read_only_cache_and_writes_nothing(
    built: Built, server: ServerProcess
) -> None:
    answer = httpx.post(f"{server.url}/embed", json={"inputs": "hello"}, timeout=30)
    assert answer.status_code == 200 and len(answer.json()[0]) == 384
    assert "rebuilding" not in server.output()
    assert _snapshot(built.cache) == built.snapshot


def test_metrics_listen_on_the_hostname_only(server: ServerProcess) -> None:
    port = server.prometheus_port
    assert "te_request_count" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    # bound to 127.0.0.1 (--hostname), not 0.0.0.0: another loopback address is refused
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # an idle socket
        b"POST /embed HTTP/1.1\r\nHost: x\r\n",  # headers that never end
        b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"inputs": "he',  # 14 of 100 body bytes
    ],
    ids=["idle", "slow-headers", "half-body"],
)
def test_slow_clients_are_closed(server: ServerProcess, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(sent)
        assert 0.5 < _closed_after(sock, limit=10) < 5
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def _health_on(sock: socket.socket) -> int:
    """The status of GET /health on an open (kept-alive) connection."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    return _status(sock, timeout=10)


def test_connections_beyond_the_cap_are_closed(server: ServerProcess) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        # an answer on each proves the server accepted it (and keeps it alive for 1 s)
        assert [_health_on(sock) for sock in held] == [200] * 4
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            assert _closed_after(extra, limit=5) < 0.5
    finally:
        for sock in held:
            sock.close()
    # served again once the server has seen the four go (a fifth is closed until then)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                break
        assert time.monotonic() < deadline, "not served again after the held connections went"


def _raw_embed(port: int, count: int) -> socket.socket:
    body = json.dumps({"inputs": [TEXT] * count}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def _status(sock: socket.socket, timeout: float) -> int:
    """The status of the answer on ``sock`` once it is complete (0: none came)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length and (chunk := sock.recv(65536)):
            rest += chunk
    except (OSError, StopIteration):
        return 0
    return int(head.split()[1]) if len(rest) == length else 0


def _queued(server: ServerProcess) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("te_queue_size "):
            return float(line.split()[-1])
    return 0.0


def _received(server: ServerProcess) -> float:
    """``te_request_count`` over its methods: requests whose body the server has read."""
    total = 0.0
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("te_request_count{"):
            total += float(line.split()[-1])
    return total


def _until_refused(port: int, timeout: float = 10.0) -> None:
    """Connect until the server refuses (its listener closed); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return
        assert time.monotonic() < deadline, "the server still accepts connections"
        time.sleep(0.01)


def test_sigterm_answers_every_accepted_request(built: Built, tmp_path: Path) -> None:
    args = ["--model-id", str(default_model_path()), "--engine-cache", str(built.cache)]
    server = ServerProcess([*args, "--max-concurrent-requests", "1024"], log=tmp_path / "log")
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(_raw_embed(server.port, 32)) for _ in range(REQUESTS)]
        deadline = time.monotonic() + 30
        while _received(server) < len(sockets):  # every request read by the server
            assert time.monotonic() < deadline, f"{_received(server)} of {len(sockets)} read"
            time.sleep(0.01)
        readable, _, _ = select.select(sockets, [], [], 0)
        assert len(readable) < len(sockets)  # work still in flight when the signal comes
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        _until_refused(server.port)  # no new connections while draining
        statuses = [_status(sock, timeout=120) for sock in sockets]
        assert statuses == [200] * len(sockets)
        assert server.stop(timeout=60) == 0, server.output()
        print(
            f"drained {len(sockets) - len(readable)} requests in {time.monotonic() - start:.1f} s"
        )


def test_graceful_shutdown_timeout_bounds_the_drain(built: Built, tmp_path: Path) -> None:
    args = ["--model-id", str(default_model_path()), "--engine-cache", str(built.cache)]
    args += ["--graceful-shutdown-timeout", "0", "--max-concurrent-requests", "1024"]
    server = ServerProcess(args, log=tmp_path / "log")
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(_raw_embed(server.port, 32)) for _ in range(REQUESTS)]
        deadline = time.monotonic() + 30
        while _queued(server) < 32 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        assert server.stop(timeout=30) == 0, server.output()
        assert time.monotonic() - start < 5
        assert [_status(sock, timeout=5) for sock in sockets].count(200) < len(sockets)


def test_build_on_a_built_cache_with_json_output(built: Built) -> None:
    """A second build finds the engine (writing nothing) and logs JSON lines, no bars."""
    env = {k: v for k, v in os.environ.items() if k not in ("ENGINE_CACHE", "MODEL_ID")}
    cache_args = ("--engine-cache", str(built.cache), "--json-output")
    done = subprocess.run(
        [str(SCRIPTS / "tei-ort"), "build", "--model-id", str(default_model_path()), *cache_args],
        check=True,
        capture_output=True,
        text=True,
        env=env | {"HF_HUB_OFFLINE": "1", "DTYPE": "float32"},
        timeout=120,
    )
    *logged, last = done.stdout.splitlines()
    messages = [json.loads(line)["message"] for line in logged]
    assert any(m.startswith("found cached engine in ") for m in messages), messages
    assert Path(last).parent.parent == built.cache and done.stderr == ""
    assert _snapshot(built.cache) == built.snapshot
