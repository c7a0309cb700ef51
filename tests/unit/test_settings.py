"""Settings: TEI's defaults and the checks done at construction."""

from __future__ import annotations

from pathlib import Path

import pytest

import tei_ort.settings as settings_module
from tei_ort.errors import ConfigurationError
from tei_ort.model.info import Pooling
from tei_ort.settings import (
    DEFAULT_MODEL_ID,
    Settings,
    cpu_count,
    default_tokenization_workers,
    listen_address,
    parse_pooling,
)


def test_tei_defaults() -> None:
    s = Settings()
    assert s.model_id == DEFAULT_MODEL_ID
    assert s.max_concurrent_requests == 512
    assert s.max_batch_tokens == 16384
    assert s.max_batch_requests is None
    assert s.max_client_batch_size == 32
    assert s.auto_truncate is True
    assert s.hostname == "0.0.0.0"
    assert s.port == 3000
    assert s.payload_limit == 2_000_000
    assert s.prometheus_port == 9000
    assert s.otlp_service_name == "text-embeddings-inference.server"
    assert s.uds_path == "/tmp/text-embeddings-inference-server"
    assert s.tokenization_workers == min(max(cpu_count() - 1, 1), 64)
    assert s.dtype is None and s.engine_cache is None and s.pooling is None
    assert s.model_name == DEFAULT_MODEL_ID


@pytest.mark.parametrize(
    ("cpus", "cpu_max", "workers"),
    [
        (2, None, 1),  # TEI: the cores less one...
        (1, None, 1),  # ...but at least one
        (8, None, 7),
        (200, None, 64),  # ...and at most 64
        (16, "max 100000", 15),  # no quota
        (16, "400000 100000", 3),  # a container limited to 4 CPUs
        (16, "150000 100000", 1),  # 1.5 CPUs round up to 2
        (2, "800000 100000", 1),  # the affinity mask is smaller than the quota
    ],
)
def test_tokenization_workers_default_as_tei(
    cpus: int,
    cpu_max: str | None,
    workers: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(settings_module, "cpu_count", lambda: cpus)
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max + "\n")
    assert default_tokenization_workers(path) == workers


def test_served_model_name() -> None:
    assert Settings(model_id="a/b", served_model_name="c").model_name == "c"


def test_conflicting_prompts() -> None:
    with pytest.raises(ConfigurationError, match="cannot be used with"):
        Settings(default_prompt="q: ", default_prompt_name="query")


@pytest.mark.parametrize(
    "bad",
    [
        {"max_batch_tokens": 0},
        {"max_concurrent_requests": 0},
        {"max_client_batch_size": 0},
        {"payload_limit": 0},
        {"tokenization_workers": 0},
        {"max_batch_requests": 0},
        {"port": 70000},
        {"dtype": "bfloat17"},
    ],
)
def test_invalid_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_pooling_values() -> None:
    assert parse_pooling("last-token") is Pooling.LAST_TOKEN
    assert parse_pooling("last_token") is Pooling.LAST_TOKEN
    assert parse_pooling("CLS") is Pooling.CLS
    assert parse_pooling("splade") is Pooling.SPLADE
    with pytest.raises(ConfigurationError, match="expected one of"):
        parse_pooling("max")


def test_listen_address_is_tei_like() -> None:
    assert listen_address("127.0.0.1") == "127.0.0.1"
    assert listen_address("::1") == "::1"
    assert listen_address("[::]") == "::"
    assert listen_address("my-container-hostname") == "0.0.0.0"
    assert Settings(hostname="abc").bind_host == "0.0.0.0"


def test_the_container_environment_is_read_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK", "sentence-similarity")
    monkeypatch.setenv("DOCKER_LABEL", "sha-abc")
    monkeypatch.setenv("TEI_ORT_GIT_SHA", "0123")
    s = Settings()
    assert (s.task, s.docker_label, s.git_sha) == ("sentence-similarity", "sha-abc", "0123")


def test_settings_is_the_only_reader_of_the_environment() -> None:
    import re
    from pathlib import Path

    import tei_ort

    root = Path(tei_ort.__file__).parent
    # the one write: ONNX Runtime's telemetry off before anything imports it (tei_ort/__init__)
    telemetry_off = 'os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")'
    assert telemetry_off in (root / "__init__.py").read_text()
    readers = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*.py"))
        if re.search(
            r"os\.environ|os\.getenv|getenv\(", path.read_text().replace(telemetry_off, "")
        )
    ]
    assert readers == ["settings.py"]
