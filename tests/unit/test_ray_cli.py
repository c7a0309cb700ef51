"""serve-ray's flags, Serve's application builder, and a plain server that never loads ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tei_ort.cli.ray import serve_ray_parser
from tei_ort.ray_serve import APP_NAME, app, args_to_argv


def test_args_to_argv() -> None:
    argv = args_to_argv(
        {"model-id": "m", "--max_replicas": 3, "auto_truncate": False, "cors": ["a", "b"]}
    )
    assert argv == [
        "--model-id", "m", "--max-replicas", "3", "--auto-truncate", "false",
        "--cors", "a", "--cors", "b",
    ]  # fmt: skip


def test_builder_takes_the_serve_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENIZATION_WORKERS", raising=False)
    application = app(
        {
            "model-id": "org/model",
            "max-batch-tokens": 4096,
            "auto-truncate": False,
            "min-replicas": 0,
            "max-replicas": 3,
            "target-ongoing-requests": 8,
            "num-cpus": 2,
        }
    )
    deployment = application._bound_deployment
    assert deployment.name == APP_NAME
    config = deployment._deployment_config
    scaling = config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (0, 3)
    assert scaling.target_ongoing_requests == 8
    assert deployment.ray_actor_options["num_cpus"] == 2
    settings, threads = deployment.init_args
    assert (settings.model_id, settings.max_batch_tokens, settings.auto_truncate) == (
        "org/model",
        4096,
        False,
    )
    assert threads == 2 and settings.tokenization_workers == 2


def test_bad_scaling_flags_stop_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        app({"min-replicas": 3, "max-replicas": 1})
    assert "--min-replicas" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve_ray_parser().parse_args(["--num-cpus", "0"])


def test_grpc_is_refused_on_ray() -> None:
    from tei_ort.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="gRPC"):
        app({"grpc-port": 50051})


def test_the_plain_server_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "import tei_ort, tei_ort.cli.commands, tei_ort.http.app, tei_ort.http.routes\n"
        "import tei_ort.serving.infer, tei_ort.grpc.server, tei_ort.model.loading, tei_ort.api\n"
        "parser, serve = tei_ort.cli.commands.build_parser()\n"
        "parser.parse_args(['serve', '--model-id', 'm'])\n"
        "parser.parse_args(['embed-corpus', '--input', 'i', '--output', 'o'])\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not loaded, loaded\n"
        "assert 'pyarrow' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_embed_corpus_takes_the_embedding_type(monkeypatch: pytest.MonkeyPatch) -> None:
    import tei_ort.corpus.run as corpus_run
    from tei_ort.cli.commands import build_parser

    jobs: list[object] = []
    monkeypatch.setattr(corpus_run, "run_corpus", lambda job: jobs.append(job) or {})
    parser, _ = build_parser()
    argv = ["embed-corpus", "--input", "i", "--output", "o", "--embedding-type", "ubinary"]
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
    assert jobs[0].embedding_type == "ubinary"
    with pytest.raises(SystemExit):
        parser.parse_args([*argv[:-1], "int4"])
