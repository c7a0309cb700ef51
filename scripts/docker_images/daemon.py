"""A Docker daemon of the image test's own: its data, sockets and pid under one root, no host
networking touched (no bridge, no iptables), stopped by its pid whatever happens.

The data root is kept between runs (layers and the local base are reused by the next run on
the same machine); the daemon is not: ``Daemon`` is a context manager, and ``image_test``
turns SIGTERM/SIGHUP into an exception so that its ``finally`` stops the daemon too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

#: Debian's packages: dockerd 20.10 (the legacy builder handles multi-stage builds; no buildx)
PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap"}
DOCKER = "/usr/bin/docker"  # docker.io's client, the daemon's own version
DOCKERD = "/usr/sbin/dockerd"
#: sockets must fit in 108 bytes: the exec root lives under /run, not in the data root
RUN_DIR = Path("/run/tei-ort-image-test")


class DockerError(RuntimeError):
    pass


def install_packages(log: Path) -> list[str]:
    """apt-get install what is missing (docker.io, debootstrap); the names installed."""
    missing = [pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None]
    if not missing:
        return []
    if os.geteuid() != 0:
        raise DockerError(f"{' '.join(missing)} missing and not root: install them first")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    with log.open("ab") as out:
        apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        if subprocess.run(apt, stdout=out, stderr=out, env=env, check=False).returncode:
            subprocess.run(["apt-get", "update", "-q"], stdout=out, stderr=out, check=True)
            subprocess.run(apt, stdout=out, stderr=out, env=env, check=True)
    return missing


class Daemon:
    """dockerd with its own data root, exec root, pid file and socket."""

    def __init__(self, root: Path) -> None:
        self.data_root = root / "docker"
        self.log_path = root / "dockerd.log"
        self.pidfile = RUN_DIR / "dockerd.pid"
        self.socket = RUN_DIR / "docker.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = os.environ | {
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_BUILDKIT": "0",  # the legacy builder: dockerd 20.10 has no buildx here
            "DOCKER_CONFIG": str(root / "client-config"),  # no host credentials or contexts
        }

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _stale_pid(self) -> int | None:
        """A dockerd of ours left by a run that was killed (SIGKILL leaves no finally)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = f"--data-root={self.data_root}".encode()
        return pid if ours in cmdline else None

    def start(self, timeout: float = 90.0) -> None:
        stale = self._stale_pid()
        if stale is not None:
            print(f"  a dockerd of an earlier run is still up (pid {stale}): stopping it")
            _terminate(stale, 60.0)
        self.data_root.mkdir(parents=True, exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        command = [
            DOCKERD,
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--storage-driver=overlay2",
            f"--data-root={self.data_root}",
            f"--exec-root={RUN_DIR / 'exec'}",
            f"--pidfile={self.pidfile}",
            f"--host=unix://{self.socket}",
            "--log-level=warn",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerError(f"dockerd exited {self.process.returncode}: see {self.log_path}")
            probe = self.run(["version", "--format", "{{.Server.Version}}"], check=False)
            if probe.returncode == 0 and self.process.poll() is None:
                # containers a killed run left (they would hold its volumes): this daemon
                # is the test's own, so all of them go
                leftovers = self.run(["ps", "-aq"]).stdout.split()
                if leftovers:
                    self.run(["rm", "-f", *leftovers], timeout=120)
                return
            time.sleep(0.5)
        raise DockerError(f"dockerd did not answer in {timeout:.0f} s: see {self.log_path}")

    def stop(self) -> None:
        """Remove our containers, then SIGTERM dockerd by its pid (SIGKILL after 60 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            ids = self.run(["ps", "-aq"], check=False).stdout.split()
            if ids:
                self.run(["rm", "-f", *ids], check=False, timeout=120)
            _terminate(self.process.pid, 60.0)
        self.process.wait()
        self.process = None

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 600.0,
        input_bytes: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this daemon; stdout and stderr as text."""
        done = subprocess.run(
            [DOCKER, *args],
            env=self.env,
            input=input_bytes.decode("latin-1") if input_bytes is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
            raise DockerError(f"docker {' '.join(args[:3])} ... exited {done.returncode}:\n{tail}")
        return done

    def stream(self, args: Sequence[str], log: Path, timeout: float = 1800.0) -> None:
        """``docker ARGS`` with its output to ``log`` (builds): the tail goes in the error."""
        with log.open("wb") as out:
            done = subprocess.run(
                [DOCKER, *args], env=self.env, stdout=out, stderr=out, timeout=timeout, check=False
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-40:])
            raise DockerError(f"docker {' '.join(args[:3])} ... exited {done.returncode}:\n{tail}")


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _zombie(pid):
            return  # exited; the parent (this process) reaps it
        time.sleep(0.2)
    print(f"  dockerd (pid {pid}) did not stop in {timeout:.0f} s: SIGKILL")
    os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
