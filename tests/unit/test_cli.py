"""The command line: flags, environment variables, defaults, conflicts, --help."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tei_ort.cli import commands as cli
from tei_ort.cli import flags, serve
from tei_ort.model.info import Pooling
from tei_ort.settings import Settings
from tei_ort.version import VERSION
from tests.support.app import FakeModel


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = cli.router_parser()
    return flags.settings_from_args(parser, parser.parse_args(argv), environ=env or {})


def test_defaults_without_flags_or_env() -> None:
    assert parse([]) == Settings()


def test_flags() -> None:
    s = parse(
        [
            "--model-id",
            "m",
            "--revision",
            "r",
            "--dtype",
            "float16",
            "--pooling",
            "last-token",
            "--max-concurrent-requests",
            "4",
            "--max-batch-tokens",
            "1024",
            "--max-batch-requests",
            "8",
            "--max-client-batch-size",
            "2",
            "--tokenization-workers",
            "3",
            "-p",
            "8080",
            "--hostname",
            "127.0.0.1",
            "--payload-limit",
            "100",
            "--api-key",
            "k",
            "--served-model-name",
            "served",
            "--prometheus-port",
            "9100",
            "--cors-allow-origin",
            "http://a",
            "--cors-allow-origin",
            "http://b,http://c",
            "--engine-cache",
            "/tmp/e",
            "--default-prompt",
            "q: ",
            "--dense-path",
            "2_Dense",
            "--hf-token",
            "t",
            "--huggingface-hub-cache",
            "/tmp/hub",
            "--json-output",
            "--disable-spans",
            "--otlp-endpoint",
            "http://otel",
            "--otlp-service-name",
            "svc",
            "--uds-path",
            "/u",
        ]
    )
    assert s.model_id == "m" and s.revision == "r" and s.dtype == "float16"
    assert s.pooling is Pooling.LAST_TOKEN
    assert (s.max_concurrent_requests, s.max_batch_tokens, s.max_batch_requests) == (4, 1024, 8)
    assert (s.max_client_batch_size, s.tokenization_workers, s.port) == (2, 3, 8080)
    assert s.hostname == "127.0.0.1" and s.payload_limit == 100 and s.api_key == "k"
    assert s.model_name == "served" and s.prometheus_port == 9100
    assert s.cors_allow_origin == ("http://a", "http://b", "http://c")
    assert s.engine_cache == "/tmp/e" and s.default_prompt == "q: " and s.dense_path == "2_Dense"
    assert s.hf_token == "t" and s.huggingface_hub_cache == "/tmp/hub"
    assert s.json_output is True and s.disable_spans is True
    assert s.otlp_endpoint == "http://otel" and s.otlp_service_name == "svc" and s.uds_path == "/u"


def test_env_vars_fill_in_and_flags_win() -> None:
    env = {
        "MODEL_ID": "env-model",
        "MAX_BATCH_TOKENS": "2048",
        "PORT": "4000",
        "AUTO_TRUNCATE": "false",
        "JSON_OUTPUT": "true",
        "CORS_ALLOW_ORIGIN": "http://x",
        "POOLING": "cls",
        "ENGINE_CACHE": "/tmp/c",
        "HF_TOKEN": "tok",
    }
    s = parse(["--port", "5000"], env)
    assert s.model_id == "env-model" and s.max_batch_tokens == 2048 and s.port == 5000
    assert s.auto_truncate is False and s.json_output is True
    assert s.cors_allow_origin == ("http://x",) and s.pooling is Pooling.CLS
    assert s.engine_cache == "/tmp/c" and s.hf_token == "tok"


def test_empty_env_var_is_ignored() -> None:
    assert parse([], {"MAX_BATCH_TOKENS": ""}).max_batch_tokens == 16384


@pytest.mark.parametrize(
    ("argv", "value"),
    [
        (["--auto-truncate"], True),
        (["--auto-truncate", "true"], True),
        (["--auto-truncate", "false"], False),
        (["--auto-truncate=False"], False),
        (["--auto-truncate", "--port", "1"], True),
    ],
)
def test_bool_flags_take_an_optional_value(argv: list[str], value: bool) -> None:
    assert parse(argv).auto_truncate is value


def test_deprecated_hf_api_token() -> None:
    assert parse(["--hf-api-token", "old"]).hf_token == "old"
    assert parse([], {"HF_API_TOKEN": "old"}).hf_token == "old"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--hf-token", "new", "--hf-api-token", "old"], {}),
        ([], {"HF_API_TOKEN": "old", "HF_TOKEN": "new"}),
        (["--hf-token", "new"], {"HF_API_TOKEN": "old"}),
    ],
)
def test_hf_token_conflicts_with_hf_api_token(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """As TEI (clap's conflicts_with): both given, by flag or variable, stop the start."""
    with pytest.raises(SystemExit) as exc:
        parse(argv, env)
    assert exc.value.code == 2
    assert (
        "the argument '--hf-token <HF_TOKEN>' cannot be used with '--hf-api-token "
        "<HF_API_TOKEN>'" in capsys.readouterr().err
    )


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """TEI prints ``text-embeddings-router 1.9.3``; tei-ort adds its own version after."""
    with pytest.raises(SystemExit) as exc:
        cli.router_main([flag])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"text-embeddings-router 1.9.3 (tei-ort {VERSION})\n"
    with pytest.raises(SystemExit):
        cli.main([flag])
    assert capsys.readouterr().out.startswith("tei-ort 1.9.3 (tei-ort ")


def test_conflicting_prompt_flags_fail(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["--default-prompt", "q: ", "--default-prompt-name", "query"])
    assert exc.value.code == 2
    assert "cannot be used with" in capsys.readouterr().err


def test_conflict_from_env_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--default-prompt", "q: "], {"DEFAULT_PROMPT_NAME": "query"})
    assert "cannot be used with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--no-such-flag"], {}, "unrecognized arguments"),
        (["--max-batch-tokens", "abc"], {}, "invalid integer"),
        (["--max-batch-tokens", "0"], {}, "at least 1"),
        (["--port", "99999"], {}, "between 0 and 65535"),
        (["--dtype", "float8"], {}, "invalid dtype"),
        (["--pooling", "max"], {}, "invalid pooling"),
        (["--auto-truncate", "maybe"], {}, "invalid boolean"),
        ([], {"MAX_BATCH_TOKENS": "many"}, "$MAX_BATCH_TOKENS"),
    ],
)
def test_bad_flags_fail_with_a_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv, env)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = capsys.readouterr().out
    for flag in flags.MODEL_FLAGS + flags.SERVER_FLAGS:
        if not flag.hidden:
            assert flag.name in text, flag.name
            assert (
                f"[env: {flag.env}]" in text.replace("\n", " ").replace("  ", " ")
                or flag.env in text
            )
    assert "[default: 16384]" in text


def test_router_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.router_main(["--help"])
    assert "--max-batch-tokens" in capsys.readouterr().out


def test_tei_ort_needs_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main([])
    assert "serve" in capsys.readouterr().err


def test_serve_reports_a_failed_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that cannot be loaded ends `serve` with exit code 1 and a log line."""
    from tei_ort.errors import ModelNotFoundError
    from tei_ort.model import loading

    def fail(settings: Settings, progress: object, download_bar: object) -> None:
        raise ModelNotFoundError("no such model")

    monkeypatch.setattr(loading, "load_from_settings", fail)
    monkeypatch.setattr("tei_ort.log.setup_logging", lambda *a, **k: None)
    assert cli.main(["serve", "--model-id", "/no/such/model"]) == 1


def test_start_up_log_hides_secrets() -> None:
    text = serve._redacted(Settings(api_key="s3cret", hf_token="hf_abc", model_id="m"))
    assert "s3cret" not in text and "hf_abc" not in text
    assert "model_id='m'" in text and "api_key='<redacted>'" in text


def test_serve_passes_the_connection_flags_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch, make_model: Callable[..., FakeModel]
) -> None:
    """By default a stopping server waits for every accepted request (TEI does)."""
    import uvicorn

    from tei_ort.http.connections import ConnectionLimits
    from tei_ort.model import loading

    configs: list[uvicorn.Config] = []
    monkeypatch.setattr(
        loading, "load_from_settings", lambda settings, progress, download_bar: make_model()
    )
    monkeypatch.setattr(
        uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config)
    )
    monkeypatch.setattr("tei_ort.log.setup_logging", lambda *a, **k: None)
    ports = ["--hostname", "127.0.0.1", "--port", "0", "--prometheus-port", "0"]
    cli.main(["serve", *ports])
    cli.main(["serve", *ports, "--graceful-shutdown-timeout", "7", "--keep-alive-timeout", "2"])
    default, configured = configs
    assert default.timeout_graceful_shutdown is None and default.timeout_keep_alive == 5
    assert configured.timeout_graceful_shutdown == 7 and configured.timeout_keep_alive == 2
    protocol = default.http
    assert not isinstance(protocol, str) and protocol.__name__ == "LimitedH11Protocol"
    assert parse(["--max-connections", "9", "--body-read-timeout", "3"]).max_connections == 9
    assert ConnectionLimits(30, 60, 1024) == ConnectionLimits(
        Settings().header_read_timeout, Settings().body_read_timeout, Settings().max_connections
    )
