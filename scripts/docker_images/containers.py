"""Running an image's container and talking to it: from this host (``--network host``, the
server on a free loopback port) or from inside it (``--network none``, probes by ``docker
exec``, as nothing outside can reach it)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from docker_images.daemon import Daemon
from docker_images.report import CheckFailed

#: what `docker exec` runs inside the container for one request (the image has no curl)
_PROBE = """
import sys, urllib.request
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3].encode() or None
req = urllib.request.Request("http://127.0.0.1:80" + path, data=body, method=method,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        sys.stdout.write(str(resp.status) + "\\n" + resp.read().decode())
except urllib.error.HTTPError as err:
    sys.stdout.write(str(err.code) + "\\n" + err.read().decode())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Container:
    daemon: Daemon
    name: str
    image: str
    options: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    offline: bool = False  # --network none: probes run inside the container
    port: int = 0
    started: float = 0.0

    def start(self) -> Container:
        self.daemon.run(["rm", "-f", self.name], check=False)
        network = ["--network", "none"]
        if not self.offline:
            self.port = free_port()
            network = [
                "--network",
                "host",
                "-e",
                f"PORT={self.port}",
                "-e",
                "HOSTNAME=127.0.0.1",  # loopback only, on the host's network
                "-e",
                f"PROMETHEUS_PORT={free_port()}",
            ]
        self.started = time.monotonic()
        self.daemon.run(
            ["run", "-d", "--name", self.name, *network, *self.options, self.image, *self.args]
        )
        return self

    def state(self) -> dict[str, Any]:
        out = self.daemon.run(["inspect", "--format", "{{json .State}}", self.name]).stdout
        state: dict[str, Any] = json.loads(out)
        return state

    def logs(self) -> str:
        done = self.daemon.run(["logs", self.name], check=False)
        return done.stdout + done.stderr

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else ""
        if self.offline:
            done = self.daemon.run(
                ["exec", self.name, "python3", "-c", _PROBE, method, path, data], check=False
            )
            if done.returncode != 0:
                raise OSError(f"probe failed: {done.stderr.strip()[-300:]}")
            status, _, text = done.stdout.partition("\n")
            return int(status), _json_or_text(text)
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data.encode() or None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, _json_or_text(resp.read().decode())
        except urllib.error.HTTPError as err:
            return err.code, _json_or_text(err.read().decode())

    def wait_healthy(self, timeout: float = 300.0) -> float:
        """Seconds from `docker run` to the first 200 on /health."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.state()["Running"]:
                raise CheckFailed(f"{self.name} exited before /health:\n{_tail(self.logs())}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.25)
        raise CheckFailed(
            f"{self.name}: no 200 on /health in {timeout:.0f} s:\n{_tail(self.logs())}"
        )

    def wait_exit(self, timeout: float) -> int:
        done = self.daemon.run(["wait", self.name], timeout=timeout)
        return int(done.stdout.strip())

    def remove(self) -> None:
        self.daemon.run(["rm", "-f", self.name], check=False)


def embed(container: Container, text: str) -> list[float]:
    status, body = container.request("POST", "/embed", {"inputs": text})
    if status != 200:
        raise CheckFailed(f"/embed answered {status}: {body}")
    if not (isinstance(body, list) and len(body) == 1 and isinstance(body[0], list)):
        raise CheckFailed(f"/embed: not one vector: {str(body)[:200]}")
    vector: list[float] = body[0]
    return vector


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / ((sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
