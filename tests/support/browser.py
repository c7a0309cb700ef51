"""A live HTTP server in a thread and headless Chromium that can reach only 127.0.0.1.

Chromium is Debian's package (``make dev`` installs it). Every host but 127.0.0.1 is
unresolvable and every other request goes to a proxy port where nothing listens, so a
page that needs the internet renders as it would on an air-gapped machine.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from tests.support.process import free_port


@contextlib.contextmanager
def live_server(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` (lifespan on) on a free loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def chromium() -> str:
    """The browser binary; a missing one is an error (``make dev`` installs it)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed (make dev installs Debian's package)")
    return path


def offline_run(url: str, *action: str, timeout: float = 120.0) -> str:
    """Load ``url`` in headless Chromium cut off from everything but 127.0.0.1, with
    ``action`` (``--dump-dom``, ``--screenshot=PATH``); returns what it printed."""
    dead_port = free_port()  # nothing listens there: every proxied request fails
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        argv = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--proxy-server=127.0.0.1:{dead_port}",
            "--proxy-bypass-list=127.0.0.1",
            # the page's scripts run to completion (fetching the document included)
            # before the DOM is dumped or the picture taken
            "--virtual-time-budget=15000",
            "--window-size=1280,1400",
            *action,
            url,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def screenshot(url: str, path: Path) -> None:
    offline_run(url, f"--screenshot={path}")
