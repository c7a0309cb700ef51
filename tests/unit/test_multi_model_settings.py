"""Several models from the command line: repeated flags, MODEL_ID lists, per-model
settings, names, and a start that fails whole (duplicate names, a model that cannot load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tei_ort.cli import commands as cli
from tei_ort.cli import flags
from tei_ort.errors import ConfigurationError, ModelNotFoundError
from tei_ort.model.info import Pooling
from tei_ort.serving.registry import check_names
from tei_ort.settings import DEFAULT_MODEL_ID, Settings
from tests.support.multi import splade_dir
from tests.support.tiny_classifier import make_classifier


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = cli.router_parser()
    return flags.settings_from_args(parser, parser.parse_args(argv), environ=env or {})


def test_one_model_has_no_per_model_settings() -> None:
    s = parse(["--model-id", "a", "--pooling", "cls", "--max-batch-tokens", "99"])
    assert s.per_model == () and s.model_settings() == (s,)
    assert s.model_id == "a" and s.pooling is Pooling.CLS and s.max_batch_tokens == 99


def test_repeated_flags_give_each_model_its_settings() -> None:
    s = parse(
        [
            *("--model-id", "emb", "--model-id", "rr", "--model-id", "sp"),
            *("--served-model-name", "e", "--served-model-name", "r", "--served-model-name", "s"),
            *("--pooling", "mean", "--pooling", "", "--pooling", "splade"),
            *("--max-batch-tokens", "1024", "--max-batch-tokens", "", "--max-batch-tokens", "64"),
            *("--dtype", "int8", "--max-concurrent-requests", "7", "--port", "4000"),
        ]
    )
    emb, rr, sp = s.model_settings()
    assert [m.model_id for m in (emb, rr, sp)] == ["emb", "rr", "sp"]
    assert [m.model_name for m in (emb, rr, sp)] == ["e", "r", "s"]
    assert [m.pooling for m in (emb, rr, sp)] == [Pooling.MEAN, None, Pooling.SPLADE]
    assert [m.max_batch_tokens for m in (emb, rr, sp)] == [1024, 16384, 64]
    # given once: every model's
    assert {m.dtype for m in (emb, rr, sp)} == {"int8"}
    assert {m.max_concurrent_requests for m in (emb, rr, sp)} == {7}
    assert {m.port for m in (emb, rr, sp)} == {4000}
    assert all(m.per_model == () for m in (emb, rr, sp))
    assert s.model_id == "emb" and s.model_name == "e"  # the first model's, as before


def test_model_id_env_lists_models() -> None:
    env = {"MODEL_ID": "a, b", "SERVED_MODEL_NAME": "x,y", "POOLING": "cls,", "REVISION": "r"}
    a, b = parse([], env).model_settings()
    assert (a.model_id, a.model_name, a.pooling, a.revision) == ("a", "x", Pooling.CLS, "r")
    assert (b.model_id, b.model_name, b.pooling, b.revision) == ("b", "y", None, "r")
    # a prompt text keeps its commas; the command line wins over MODEL_ID
    env = {"MODEL_ID": "a,b", "DEFAULT_PROMPT": "query: x, y"}
    assert {m.default_prompt for m in parse([], env).model_settings()} == {"query: x, y"}
    assert parse(["--model-id", "c"], {"MODEL_ID": "a,b"}).model_settings()[0].model_id == "c"
    empty = parse(["--model-id", "a", "--model-id", ""])
    assert [m.model_id for m in empty.model_settings()] == ["a", DEFAULT_MODEL_ID]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "--model-id",
                "a",
                "--model-id",
                "b",
                "--revision",
                "1",
                "--revision",
                "2",
                "--revision",
                "3",
            ],
            "given 3 times for 2 models",
        ),
        (["--model-id", "a", "--revision", "1", "--revision", "2"], "given 2 times for one model"),
        (["--model-id", "a", "--model-id", "b", "--max-batch-tokens", "0"], "at least 1"),
    ],
)
def test_mismatched_repeats_stop_the_start(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
    assert message in capsys.readouterr().err


def test_each_model_needs_its_own_name() -> None:
    same = parse(["--model-id", "org/m", "--model-id", "org/m"])
    with pytest.raises(ConfigurationError, match="models 1 and 2 are both served as `org/m`"):
        check_names(same.model_settings())
    named = parse(["--model-id", "a", "--model-id", "b", "--served-model-name", "x"])
    with pytest.raises(ConfigurationError, match="both served as `x`"):
        check_names(named.model_settings())
    check_names(parse(["--model-id", "org/m", "--model-id", "other/m"]).model_settings())


@pytest.fixture
def quiet_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tei_ort.log.setup_logging", lambda *a, **k: None)


@pytest.mark.usefixtures("quiet_logs")
def test_start_fails_whole(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Duplicate names stop the start before any model loads; one model that cannot load
    stops it with that model named, and nothing is served."""
    from tei_ort.model import loading

    loads: list[str | None] = []

    def load(options: Any, progress: Any = None) -> Any:
        loads.append(options.model_id)
        if options.model_id == "broken":
            raise ModelNotFoundError("no such model")
        return object()

    def never_serve(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("a half-loaded server must not serve")

    monkeypatch.setattr(loading, "load_model", load)
    monkeypatch.setattr("tei_ort.cli.serve.run_http", never_serve)
    port = ("--port", "0", "--prometheus-port", "0")
    assert cli.main(["serve", "--model-id", "a", "--model-id", "a", *port]) == 1
    assert loads == [] and "both served as `a`" in caplog.text
    assert cli.main(["serve", "--model-id", "a", "--model-id", "broken", *port]) == 1
    assert loads == ["a", "broken"]
    assert "model 2 (`broken`, served as `broken`) cannot be served: no such model" in caplog.text


def test_build_builds_every_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reranker = make_classifier(tmp_path / "reranker")
    argv = ["build", "--model-id", str(reranker), "--model-id", str(splade_dir())]
    argv += ["--pooling", "", "--pooling", "splade", "--engine-cache", str(tmp_path / "c")]
    assert cli.main(argv) == 0
    entries = [Path(line) for line in capsys.readouterr().out.split()]
    assert len(entries) == 2 and entries[0] != entries[1]
    assert all(entry.is_dir() for entry in entries)


def test_one_engine_per_distinct_model_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from tei_ort.cli.serve_models import load_models
    from tei_ort.model import loading

    loads: list[Any] = []

    def load(options: Any, progress: Any = None) -> Any:
        loads.append(options)
        return object()

    monkeypatch.setattr(loading, "load_model", load)
    names = ["--served-model-name", "x", "--served-model-name", "y", "--served-model-name", "z"]
    same = parse(["--model-id", "m", "--model-id", "m", "--model-id", "n", *names])
    models = load_models(same)
    assert len(loads) == 2 and models[0][1] is models[1][1] and models[2][1] is not models[0][1]
    assert [s.model_name for s, _ in models] == ["x", "y", "z"]
    loads.clear()
    gpu = parse(["--model-id", "m", "--model-id", "m", *names[:4], "--execution-provider", "cuda"])
    load_models(gpu)
    assert len(loads) == 2  # device buffers are per engine
