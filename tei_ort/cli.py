"""``tei-ort`` (subcommands) and ``text-embeddings-router`` (TEI's command line).

Every flag has TEI's name and default and also reads the environment variable of the same
name in capitals (``--max-batch-tokens`` <- ``MAX_BATCH_TOKENS``); a flag on the command
line wins over its variable. Boolean flags take an optional value like TEI's
(``--auto-truncate``, ``--auto-truncate false``). Unknown or conflicting flags stop the
program at start with a message.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tei_ort.build_cli import add_build_parser
from tei_ort.errors import TeiOrtError
from tei_ort.settings import DEFAULT_MODEL_ID, DTYPES, Settings, listen_address, parse_pooling

if TYPE_CHECKING:
    from tei_ort.tracing import Tracer

logger = logging.getLogger("tei_ort")

_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


def parse_bool(value: str) -> bool:
    key = value.strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r} (use true or false)")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {number}")
    return number


def _dtype(value: str) -> str:
    if value not in DTYPES:
        raise argparse.ArgumentTypeError(
            f"invalid dtype {value!r}: expected one of {', '.join(DTYPES)}"
        )
    return value


def _provider(value: str) -> str:
    from engines.providers import parse_provider

    try:
        return parse_provider(value).name
    except TeiOrtError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _pooling(value: str) -> Any:
    try:
        return parse_pooling(value)
    except TeiOrtError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class Flag:
    """One flag: its name, the Settings field it sets, how to parse it, its help."""

    name: str
    help: str
    parse: Callable[[str], Any] = str
    default: Any = None  # shown in --help; Settings holds the real default
    kind: Literal["value", "bool", "list"] = "value"
    short: str | None = None
    hidden: bool = False

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        return self.dest.upper()


MODEL_FLAGS: tuple[Flag, ...] = (
    Flag(
        "--model-id",
        "The model to serve: a Hugging Face Hub id (e.g. `BAAI/bge-small-en-v1.5`) or a local "
        "directory with the files saved by transformers / sentence-transformers.",
        default=DEFAULT_MODEL_ID,
    ),
    Flag("--revision", "The hub revision (commit, branch or `refs/pr/N`) of the model."),
    Flag(
        "--dtype",
        "The dtype to run the model in: float32, float16 (GPU default), bfloat16 (CPU default "
        "where the CPU has native bf16 and openvino is installed, else float32) or int8.",
        parse=_dtype,
    ),
    Flag(
        "--pooling",
        "Pooling for embedding models: cls, mean, splade or last-token. Overrides the model's "
        "1_Pooling/config.json.",
        parse=_pooling,
    ),
    Flag(
        "--dense-path",
        "The folder of the sentence-transformers Dense module to apply (e.g. `2_Dense_1024`); "
        "by default the ones listed in modules.json.",
    ),
    Flag(
        "--hf-token",
        "Your Hugging Face Hub token (for private or gated models). Without it, the token "
        "saved at $HF_HOME/token is used if present.",
    ),
    Flag("--hf-api-token", "Deprecated alias of --hf-token.", hidden=True),
    Flag("--huggingface-hub-cache", "The Hugging Face Hub cache folder (mounted disk, ...)."),
    Flag("--engine-cache", "Where tei-ort keeps built engines (ONNX graphs, TensorRT plans)."),
    Flag(
        "--execution-provider",
        "Where the model runs: cpu (default), cuda (ONNX Runtime CUDA), tensorrt (a TensorRT "
        "engine built for this GPU), cann (Huawei NPU), coreml or openvino.",
        parse=_provider,
    ),
    Flag("--device-id", "The GPU to run on.", parse=_non_negative_int, default=0),
    Flag(
        "--cuda-graphs",
        "Capture a CUDA graph per shape bucket (ONNX Runtime CUDA).",
        parse=parse_bool,
        default=False,
        kind="bool",
    ),
)

SERVER_FLAGS: tuple[Flag, ...] = (
    Flag(
        "--served-model-name",
        "The model name answered in OpenAI-compatible bodies. Defaults to --model-id.",
    ),
    Flag(
        "--tokenization-workers",
        "Threads that tokenize and validate request inputs. Defaults to the number of CPU cores.",
        parse=_positive_int,
    ),
    Flag(
        "--max-concurrent-requests",
        "The most inputs in flight at once; a single input beyond it is refused with 429.",
        parse=_positive_int,
        default=512,
    ),
    Flag(
        "--max-batch-tokens",
        "The most padded tokens in one batch (entries x padded length). The main knob for "
        "throughput and memory.",
        parse=_positive_int,
        default=16384,
    ),
    Flag("--max-batch-requests", "The most inputs in one batch.", parse=_positive_int),
    Flag(
        "--max-client-batch-size",
        "The most inputs a client may send in one request.",
        parse=_positive_int,
        default=32,
    ),
    Flag(
        "--auto-truncate",
        "Truncate inputs longer than the model's maximum input length (true by default). "
        "With false, longer inputs are refused, and a model whose maximum input length is "
        "above --max-batch-tokens does not start.",
        parse=parse_bool,
        default=True,
        kind="bool",
    ),
    Flag(
        "--default-prompt-name",
        "The sentence-transformers prompt (a key of `prompts` in "
        "config_sentence_transformers.json) prepended to every input by default. Cannot be "
        "used with --default-prompt.",
    ),
    Flag(
        "--default-prompt",
        "A prompt text prepended to every input by default. Cannot be used with "
        "--default-prompt-name.",
    ),
    Flag("--hostname", "The IP address to listen on.", default="0.0.0.0"),
    Flag("--port", "The port to listen on.", parse=_port, default=3000, short="-p"),
    Flag(
        "--uds-path",
        "Accepted for TEI compatibility (TEI's Python backends use it); unused.",
        default="/tmp/text-embeddings-inference-server",
    ),
    Flag(
        "--payload-limit",
        "The largest request body, in bytes; bigger bodies get 413.",
        parse=_positive_int,
        default=2_000_000,
    ),
    Flag(
        "--api-key",
        "Require `Authorization: Bearer <key>` on inference routes (health, metrics and docs "
        "stay open).",
    ),
    Flag(
        "--json-output",
        "Log one JSON object per line.",
        parse=parse_bool,
        default=False,
        kind="bool",
    ),
    Flag(
        "--disable-spans",
        "Turn tracing off: no spans are created or exported, even with --otlp-endpoint.",
        parse=parse_bool,
        default=False,
        kind="bool",
    ),
    Flag(
        "--otlp-endpoint",
        "Export OpenTelemetry spans over OTLP/gRPC to this endpoint (e.g. "
        "`http://localhost:4317`): one span per request with tokenization, queue and "
        "inference children; a caller's W3C `traceparent` is honoured.",
    ),
    Flag(
        "--otlp-service-name",
        "The `service.name` of the exported spans.",
        default="text-embeddings-inference.server",
    ),
    Flag(
        "--grpc",
        "Serve TEI's gRPC API (tei.v1, with health and reflection) on --port instead of "
        "HTTP, as TEI's -grpc images do; /metrics stays on --prometheus-port.",
        parse=parse_bool,
        default=False,
        kind="bool",
    ),
    Flag(
        "--grpc-port",
        "Also serve TEI's gRPC API on this port, beside HTTP on --port, from the same queue "
        "and engine.",
        parse=_port,
    ),
    Flag(
        "--prometheus-port",
        "A second port that serves only /metrics.",
        parse=_port,
        default=9000,
    ),
    Flag(
        "--cors-allow-origin",
        "Origins allowed by CORS (repeat the flag or separate with commas); all by default.",
        kind="list",
    ),
)


def _help(flag: Flag) -> str:
    if flag.hidden:
        return argparse.SUPPRESS
    text = f"{flag.help} [env: {flag.env}]"
    if flag.default is not None:
        shown = str(flag.default).lower() if isinstance(flag.default, bool) else flag.default
        text += f" [default: {shown}]"
    return text.replace("%", "%%")


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    """Add ``flags`` to ``parser``; every default is None so the environment can fill in."""
    for flag in flags:
        names = [flag.name] if flag.short is None else [flag.short, flag.name]
        metavar = flag.env
        if flag.kind == "bool":
            parser.add_argument(
                *names,
                dest=flag.dest,
                nargs="?",
                const=True,
                default=None,
                type=flag.parse,
                metavar="true|false",
                help=_help(flag),
            )
        elif flag.kind == "list":
            parser.add_argument(
                *names,
                dest=flag.dest,
                action="append",
                default=None,
                metavar=metavar,
                help=_help(flag),
            )
        else:
            parser.add_argument(
                *names,
                dest=flag.dest,
                type=flag.parse,
                default=None,
                metavar=metavar,
                help=_help(flag),
            )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick and fetch a model (shared with ``tei-ort build``)."""
    add_flags(parser, MODEL_FLAGS)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag ``serve`` (and text-embeddings-router) takes."""
    add_model_arguments(parser)
    add_flags(parser, SERVER_FLAGS)


def settings_from_args(
    parser: argparse.ArgumentParser,
    namespace: argparse.Namespace,
    flags: Sequence[Flag] = MODEL_FLAGS + SERVER_FLAGS,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Flags, then environment variables, then Settings' defaults; errors exit via parser."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for flag in flags:
        value = getattr(namespace, flag.dest, None)
        if value is None and environ.get(flag.env, "") != "":
            raw = environ[flag.env]
            if flag.kind == "list":
                value = [raw]
            else:
                try:
                    value = flag.parse(raw)
                except (argparse.ArgumentTypeError, ValueError) as exc:
                    parser.error(f"invalid value for {flag.name} from ${flag.env}: {exc}")
        if value is None:
            continue
        if flag.kind == "list":
            value = tuple(
                origin.strip() for item in value for origin in item.split(",") if origin.strip()
            )
        values[flag.dest] = value
    api_token = values.pop("hf_api_token", None)
    if api_token is not None:
        logger.warning("--hf-api-token (HF_API_TOKEN) is deprecated: use --hf-token (HF_TOKEN)")
        values.setdefault("hf_token", api_token)
    if values.get("default_prompt") is not None and values.get("default_prompt_name") is not None:
        parser.error(
            "the argument '--default-prompt <DEFAULT_PROMPT>' cannot be used with "
            "'--default-prompt-name <DEFAULT_PROMPT_NAME>'"
        )
    try:
        return Settings(**values)
    except TeiOrtError as exc:
        parser.error(str(exc))


def build_parser(prog: str = "tei-ort") -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``tei-ort`` parser and its ``serve`` sub-parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="tei-ort: a drop-in replacement for Hugging Face Text Embeddings Inference "
        "on ONNX Runtime.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve_parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP with TEI's API",
        description="Serve a model over HTTP with TEI's API (the flags of text-embeddings-router).",
    )
    add_serve_arguments(serve_parser)
    add_build_parser(subparsers)  # tei-ort build: export an engine ahead of time
    return parser, serve_parser


def router_parser(prog: str = "text-embeddings-router") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Text Embeddings Inference's command line, served by tei-ort.",
    )
    add_serve_arguments(parser)
    return parser


def serve(settings: Settings) -> int:
    """Load the model, then serve until SIGINT / SIGTERM; returns the exit code."""
    from tei_ort.log import setup_logging

    setup_logging(settings.json_output)
    logger.info("Args %s", _redacted(settings))
    if listen_address(settings.hostname) != settings.hostname:
        logger.warning("invalid hostname %r, defaulting to 0.0.0.0", settings.hostname)
    from tei_ort.tracing import setup_tracing

    tracer = setup_tracing(settings)
    try:
        if settings.grpc:
            return _serve_grpc(settings, tracer)
        return _serve_http(settings, tracer)
    finally:
        if tracer is not None:
            tracer.shutdown()


def _serve_grpc(settings: Settings, tracer: Tracer | None) -> int:
    """``--grpc``: gRPC on --port (no HTTP), /metrics on --prometheus-port."""
    import asyncio

    from tei_ort.grpc_server import serve_grpc
    from tei_ort.infer import Infer
    from tei_ort.loading import load_from_settings
    from tei_ort.metrics import Metrics, start_prometheus_listener

    try:
        model = load_from_settings(settings)
        metrics = Metrics(max_input_length=model.info.max_input_length)
        infer = Infer(settings, model, metrics, dense=getattr(model, "dense", None), tracer=tracer)
    except TeiOrtError as exc:
        logger.error("%s", exc)
        return 1
    listener = start_prometheus_listener(metrics, "0.0.0.0", settings.prometheus_port)
    try:
        return asyncio.run(serve_grpc(settings, infer))
    except TeiOrtError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        if listener is not None:
            listener.close()


def _serve_http(settings: Settings, tracer: Tracer | None) -> int:
    """HTTP on --port (and gRPC on --grpc-port), /metrics also on --prometheus-port."""
    try:
        import uvicorn

        from tei_ort.http_app import Companion, create_app
        from tei_ort.loading import load_from_settings
        from tei_ort.metrics import start_prometheus_listener

        model = load_from_settings(settings)
        companions: list[Companion] = []
        if settings.grpc_port is not None:
            from tei_ort.grpc_server import grpc_companion

            companions.append(grpc_companion(settings, settings.bind_host, settings.grpc_port))
        app = create_app(settings, model, tracer=tracer, companions=companions)
    except TeiOrtError as exc:
        logger.error("%s", exc)
        return 1
    listener = start_prometheus_listener(app.state.metrics, "0.0.0.0", settings.prometheus_port)
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    logger.info("Starting HTTP server: %s:%d", settings.bind_host, settings.port)
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again for
    # the handlers it found; with these no-op handlers the process exits 0, as TEI does.
    previous = {sig: signal.signal(sig, _after_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if listener is not None:
            listener.close()
    return 0 if server.started else 1


def _redacted(settings: Settings) -> str:
    """The settings for the start-up log line, secrets hidden."""
    shown = []
    for name, value in vars(settings).items():
        if name in ("api_key", "hf_token") and value:
            value = "<redacted>"
        shown.append(f"{name}={value!r}")
    return ", ".join(shown)


def _after_shutdown(sig: int, frame: object) -> None:
    """The signal uvicorn re-raises after its graceful shutdown: nothing left to do."""


def main(argv: Sequence[str] | None = None) -> int:
    parser, serve_parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(settings_from_args(serve_parser, args))
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse requires a known command
        parser.error(f"unknown command {args.command!r}")
    return handler(args)


def router_main(argv: Sequence[str] | None = None) -> int:
    parser = router_parser()
    return serve(settings_from_args(parser, parser.parse_args(argv)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
