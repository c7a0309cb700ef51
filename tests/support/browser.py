"""Headless Chromium that can reach only 127.0.0.1 (pages served by
``tests.support.live.live_server``, re-exported here).

Chromium is Debian's package (``make dev`` installs it). Every host but 127.0.0.1 is
unresolvable and every other request goes to a proxy port where nothing listens, so a
page that needs the internet renders as it would on an air-gapped machine.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.live import live_server

__all__ = ["live_server", "offline_run", "screenshot"]


def chromium() -> str:
    """The browser binary; a missing one is an error (``make dev`` installs it)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed (make dev installs Debian's package)")
    return path


def offline_run(url: str, *action: str, timeout: float = 120.0) -> str:
    """Load ``url`` in headless Chromium cut off from everything but 127.0.0.1, with
    ``action`` (``--dump-dom``, ``--screenshot=PATH``); returns what it printed."""
    # bound but never listening, for the whole run: every proxied request is refused
    with socket.socket() as dead, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
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
