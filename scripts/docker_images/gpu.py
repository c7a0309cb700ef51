"""The GPU image, checked on a machine without a GPU: ONNX Runtime is the CUDA 13 build with
its CUDA provider, every library the provider links resolves from NVIDIA's wheels (all but
the driver's libcuda, which `--gpus all` brings), the libraries load, and a start says
plainly that there is no GPU and how to give it one."""

from __future__ import annotations

import json

from docker_images.daemon import Daemon
from docker_images.report import Report, expect

#: the one CUDA major of the GPU stack (issue #24, engines/gpu_stack.py)
CUDA_MAJOR = "13"

#: run inside the image: what ld.so resolves for the provider, then load what can be loaded
#: without a driver: ORT's preload_dlls (where it has it) and every NVIDIA library the
#: provider links; the provider library itself links libcuda.so.1, the driver's, which only
#: `--gpus all` brings, so it is loaded only where that resolves
_LIBRARIES = """
import ctypes, glob, json, os, subprocess
import onnxruntime as ort
capi = os.path.dirname(ort.__file__) + "/capi"
provider = glob.glob(capi + "/libonnxruntime_providers_cuda.so")[0]
ldd = subprocess.run(["ldd", provider], capture_output=True, text=True).stdout
missing = [l.split()[0] for l in ldd.splitlines() if "not found" in l]
resolved = sorted({l.split("=>")[1].split()[0] for l in ldd.splitlines()
                   if "=>" in l and "/nvidia/" in l})
preloaded = None
if hasattr(ort, "preload_dlls"):
    ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    preloaded = True
ctypes.CDLL(capi + "/libonnxruntime_providers_shared.so", mode=ctypes.RTLD_GLOBAL)
for path in resolved:  # every NVIDIA library the provider links, as ld.so found it
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
if not missing:  # with a driver (libcuda.so.1) present, the provider itself loads too
    ctypes.CDLL(provider)
maps = open("/proc/self/maps").read()
loaded = sorted({os.path.basename(l.split()[-1]) for l in maps.splitlines()
                 if "/nvidia/" in l and ".so" in l})
from onnxruntime.capi import build_and_package_info
cuda = getattr(build_and_package_info, "cuda_version", None)
print(json.dumps({"version": ort.__version__, "cuda_version": cuda, "missing": missing,
                  "resolved": resolved, "loaded": loaded, "preloaded": preloaded,
                  "providers": ort.get_available_providers()}))
"""


def check(daemon: Daemon, report: Report, image: str) -> None:
    with report.step("GPU image: size") as step:
        size = int(json.loads(daemon.run(["image", "inspect", image]).stdout)[0]["Size"])
        step.detail = f"{size / 1e9:.2f} GB"
        report.figure("GPU image size", step.detail)
    with report.step("GPU image: `docker run IMAGE --help`") as step:
        done = daemon.run(["run", "--rm", "--network", "none", image, "--help"], check=False)
        expect(done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}")
        expect("--execution-provider" in done.stdout, done.stdout[:500])
        step.detail = "exit 0"
    with report.step(f"GPU image: CUDA {CUDA_MAJOR} provider's libraries resolve and load") as step:
        done = daemon.run(
            [
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "python3",
                image,
                "-c",
                _LIBRARIES,
            ],
            check=False,
        )
        expect(done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-2000:]}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
        expect(
            str(found["cuda_version"]).startswith(CUDA_MAJOR + "."),
            f"onnxruntime {found['version']} is built for CUDA {found['cuda_version']}",
        )
        expect("CUDAExecutionProvider" in found["providers"], f"providers {found['providers']}")
        expect(
            found["missing"] == ["libcuda.so.1"] or not found["missing"],
            f"unresolved: {found['missing']}",
        )
        names = " ".join(found["loaded"])
        for lib in ("libcudart", "libcublas", "libcublasLt", "libcudnn"):
            expect(lib + ".so" in names, f"{lib} not loaded; loaded: {found['loaded']}")
        step.detail = (
            f"onnxruntime-gpu {found['version']} (CUDA {found['cuda_version']}), "
            f"{len(found['loaded'])} NVIDIA libraries loaded, unresolved only: "
            f"{found['missing'] or 'none'}"
        )
    with report.step("GPU image: a start without a GPU stops with the clear error") as step:
        name = "tei-ort-test-gpu-start"
        daemon.run(["rm", "-f", name], check=False)
        daemon.run(["run", "--name", name, "--network", "none", image], check=False, timeout=300)
        code = int(daemon.run(["inspect", "--format", "{{.State.ExitCode}}", name]).stdout)
        logs = daemon.run(["logs", name], check=False)
        text = logs.stdout + logs.stderr
        daemon.run(["rm", "-f", name], check=False)
        expect(code != 0, f"exit 0 without a GPU:\n{text[-1500:]}")
        expect(
            "no NVIDIA GPU" in text and "--gpus all" in text,
            f"not the clear error:\n{text[-2000:]}",
        )
        line = next(x for x in text.splitlines() if "no NVIDIA GPU" in x)
        step.detail = f"exit {code}: {line[:300]}"
