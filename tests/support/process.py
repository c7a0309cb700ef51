"""Start and stop a real ``tei-ort serve`` process on 127.0.0.1 for the tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tei_ort.cli.flags import MODEL_FLAGS, SERVER_FLAGS

SCRIPTS = Path(sys.executable).parent


#: the log lines that say which port each listener bound (--port 0: the OS picks)
_BOUND = {
    "http": re.compile(r"Starting HTTP server: [^\s\"]+:(\d+)"),
    "prometheus": re.compile(r"Prometheus metrics on http://[^\s\"]+:(\d+)/metrics"),
    "grpc": re.compile(r"Starting gRPC server: [^\s\"]+:(\d+)"),
}


# every variable a flag reads (a CI machine or container may set PORT, HOSTNAME, ...):
# the server under test gets only what the test gives it
_CLEARED = frozenset(flag.env for flag in (*MODEL_FLAGS, *SERVER_FLAGS))


class ServerProcess:
    """``tei-ort serve <args>`` (or ``text-embeddings-router``) on a free port."""

    def __init__(
        self,
        args: list[str],
        *,
        log: Path,
        command: str = "tei-ort",
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
        wait: bool = True,
    ) -> None:
        self.log = log
        self._ports: dict[str, int] = {}
        # --grpc (TEI's gRPC-only server) serves gRPC on --port
        self._main = "grpc" if "--grpc" in args else "http"
        environ = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        # float32 unless the test says otherwise, as in-process (tests/conftest.py)
        environ.update(
            {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DTYPE": "float32"}
        )
        environ.update(env or {})
        argv = [str(SCRIPTS / command)]
        if command == "tei-ort":
            argv.append("serve")
        argv += [
            "--hostname",
            "127.0.0.1",
            # port 0 everywhere: the server binds, then says which port it got, so no
            # other process can take a port between a test choosing it and the server
            "--port",
            "0",
            "--prometheus-port",
            "0",
            *args,
        ]
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, env=environ
        )
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Return once /health answers; raise (with the server's output) if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log_file.close()
                raise RuntimeError(f"the server exited early:\n{self.output()}")
            if "http" not in self._ports and not _BOUND["http"].search(self.output()):
                time.sleep(0.05)  # not listening yet
                continue
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start in {timeout}s:\n{self.output()}")

    def bound_port(self, listener: str, timeout: float = 120.0) -> int:
        """The port ``listener`` ("http", "prometheus", "grpc") bound, from the log."""
        deadline = time.monotonic() + timeout
        while listener not in self._ports:
            found = _BOUND[listener].search(self.output())
            if found is not None:
                self._ports[listener] = int(found.group(1))
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no {listener} listener in the log:\n{self.output()}")
            else:
                time.sleep(0.02)
        return self._ports[listener]

    @property
    def port(self) -> int:
        """--port: HTTP, or gRPC for a ``--grpc`` server."""
        return self.bound_port(self._main)

    @property
    def prometheus_port(self) -> int:
        return self.bound_port("prometheus")

    @property
    def grpc_port(self) -> int:
        return self.bound_port("grpc")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bound_port('http')}"

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return int(self.process.returncode)
