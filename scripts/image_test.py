"""Build tei-ort's images and run them for real: `make image-test` (docs/docker.md).

    python3 scripts/image_test.py [--root /var/lib/tei-ort-image-test] [--no-gpu]

Installs docker.io and debootstrap if missing (Debian packages), starts a Docker daemon of
its own (data in ROOT/docker, kept between runs so that layers are reused; no bridge, no
iptables), imports a local stand-in for debian:bookworm-slim (no registry here), builds
Dockerfile-cpu and Dockerfile-trt, runs the CPU image (health, embed, info, offline,
read-only as a non-root user on a named volume and on a bind mount, restart on the cached
engine, SIGTERM), checks the GPU image without a GPU (its libraries load, the start-up error
is the clear one) and that the CPU dependency set resolves for arm64, then stops the daemon
by its pid, pass or fail. Standard library only (run with the system python3, as root).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from docker_images import arm64, base, cpu, gpu
from docker_images.daemon import Daemon, install_packages
from docker_images.report import Report

REPO = Path(__file__).resolve().parent.parent
CPU_IMAGE = "tei-ort:cpu-test"
GPU_IMAGE = "tei-ort:cuda-test"


def _raise_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(f"image test stopped by signal {signum}")


def version() -> str:
    text = (REPO / "tei_ort" / "version.py").read_text()
    found = re.search(r'^VERSION = "([^"]+)"', text, flags=re.MULTILINE)
    if found is None:
        raise RuntimeError("no VERSION in tei_ort/version.py")
    return found.group(1)


def git_sha() -> str:
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )

    sha = git("rev-parse", "HEAD").stdout.strip() or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return f"{sha}-dirty" if dirty and sha != "unknown" else sha


def build(daemon: Daemon, report: Report, dockerfile: str, tag: str, root: Path, sha: str) -> None:
    log = root / f"build-{dockerfile}.log"
    with report.step(f"build {dockerfile} -> {tag}", fatal=True) as step:
        daemon.stream(
            [
                "build",
                "-f",
                str(REPO / dockerfile),
                "-t",
                tag,
                "--network",
                "host",
                "--build-arg",
                f"VERSION={version()}",
                "--build-arg",
                f"GIT_SHA={git_sha()}",
                str(REPO),
            ],
            log,
        )
        cached = log.read_text(errors="replace").count("Using cache")
        step.detail = f"{cached} steps from the layer cache; log {log}"
    report.figure(
        f"{dockerfile} build", f"{report.steps[-1].seconds:.0f} s ({cached} cached steps)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/var/lib/tei-ort-image-test"))
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU image")
    args = parser.parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)
    root: Path = args.root
    sha = git_sha()  # once: a commit made while the test runs must not change it
    root.mkdir(parents=True, exist_ok=True)
    # one image test per data root: a second would share (and stop) the first one's daemon
    lock = (root / "image-test.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(f"another image test holds {root} (pid {lock.read().strip() or '?'}): not starting")
        return 1
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    report = Report()
    print(f"image test: data in {root} (kept between runs); CPU: {_cpu_name()}")
    print(
        "NOTE: the base image is a LOCAL STAND-IN for debian:bookworm-slim, built here from "
        "Debian packages (debootstrap) because no Docker registry is reachable; users' builds "
        "use the registry's image.",
        flush=True,
    )
    try:
        with report.step("install docker.io and debootstrap", fatal=True) as step:
            installed = install_packages(root / "apt.log")
            step.detail = f"installed {' '.join(installed)}" if installed else "already there"
        daemon = Daemon(root)
        with report.step("start dockerd (own data root, socket, pid)", fatal=True) as step:
            daemon.start()
            assert daemon.process is not None
            step.detail = f"pid {daemon.process.pid}, {daemon.socket}"
        try:
            with report.step(f"stand-in base {base.BASE_TAG}", fatal=True) as step:
                step.detail = base.ensure_base(daemon, root, root / "debootstrap.log")
            build(daemon, report, "Dockerfile-cpu", CPU_IMAGE, root, sha)
            cpu.check(daemon, report, CPU_IMAGE, root, version(), sha)
            if not args.no_gpu:
                build(daemon, report, "Dockerfile-trt", GPU_IMAGE, root, sha)
                gpu.check(daemon, report, GPU_IMAGE)
        finally:
            with report.step("stop dockerd by its pid") as step:
                pid = daemon.process.pid if daemon.process else None
                daemon.stop()
                expect_gone(pid)
                step.detail = f"pid {pid} gone"
        arm64.check(report, REPO)
    except (SystemExit, KeyboardInterrupt) as exc:
        print(f"stopped: {exc or type(exc).__name__}", file=sys.stderr)
        print(report.summary())
        return 1
    except Exception:  # a fatal step has printed its failure already
        pass
    print(report.summary())
    return 1 if report.failed or not report.steps[-1:] else 0


def expect_gone(pid: int | None) -> None:
    if pid is None:
        return
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        raise RuntimeError(f"dockerd pid {pid} still exists")


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip() + f", {os.cpu_count()} CPUs"
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
