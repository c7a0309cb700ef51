"""Start and stop a real ``tei-ort serve`` process on 127.0.0.1 for the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tei_ort.cli.flags import MODEL_FLAGS, SERVER_FLAGS

SCRIPTS = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        self.port = free_port()
        self.prometheus_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
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
            "--port",
            str(self.port),
            "--prometheus-port",
            str(self.prometheus_port),
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
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start in {timeout}s:\n{self.output()}")

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
