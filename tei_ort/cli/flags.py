"""Every flag of ``serve`` and ``build``: one table, TEI's names and defaults, and parsing.

Every flag has TEI's name and default and also reads the environment variable of the same
name in capitals (``--max-batch-tokens`` <- ``MAX_BATCH_TOKENS``); a flag on the command
line wins over its variable. Boolean flags take an optional value like TEI's
(``--auto-truncate``, ``--auto-truncate false``). Unknown or conflicting flags stop the
program at start with a message.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tei_ort.errors import START_ERRORS
from tei_ort.settings import (
    DEFAULT_MODEL_ID,
    DTYPES,
    PER_MODEL_FIELDS,
    Settings,
    environment,
    parse_pooling,
)
from tei_ort.version import TEI_VERSION, VERSION

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
    from tei_ort.engines.providers import parse_provider

    try:
        return parse_provider(value).name
    except START_ERRORS as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _positive_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {value!r}") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {value}")
    return number


def _pooling(value: str) -> Any:
    try:
        return parse_pooling(value)
    except START_ERRORS as exc:
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

    @property
    def per_model(self) -> bool:
        """Repeats once per ``--model-id`` when several models are served."""
        return self.kind == "value" and self.dest in PER_MODEL_FIELDS


MODEL_FLAGS: tuple[Flag, ...] = (
    Flag(
        "--model-id",
        "The model to serve: a Hugging Face Hub id (e.g. `BAAI/bge-small-en-v1.5`) or a local "
        "directory with the files saved by transformers / sentence-transformers. Repeat it "
        "(or separate ids with commas in MODEL_ID) to serve several models; the per-model "
        "flags (--served-model-name, --revision, --pooling, --dense-path, --dtype, the prompt "
        "flags, --max-concurrent-requests, --max-batch-tokens) then repeat in the same order "
        "or are given once for all.",
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
    Flag("--device-id", "The GPU to run on.", parse=non_negative_int, default=0),
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
        "The model name answered in OpenAI-compatible bodies (and, with several models, the "
        "name that selects one). Defaults to --model-id.",
    ),
    Flag(
        "--tokenization-workers",
        "Threads that tokenize and validate request inputs. Defaults to the usable CPU "
        "cores less one (between 1 and 64).",
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
        "--graceful-shutdown-timeout",
        "On SIGTERM / SIGINT the server stops accepting connections and answers every request "
        "it has accepted; this bounds that wait, in seconds (requests still running then are "
        "cancelled). By default it waits for all of them, as TEI does.",
        parse=non_negative_int,
    ),
    Flag(
        "--max-queue-wait",
        "The longest, in seconds, a request of several inputs waits for its concurrency "
        "permits (requests are admitted in arrival order); past it the request gets 429 "
        "`Model is overloaded` and its queued inputs are withdrawn. By default it waits as "
        "long as it takes.",
        parse=_positive_seconds,
    ),
    Flag(
        "--keep-alive-timeout",
        "Close a kept-alive connection after this many idle seconds.",
        parse=_positive_int,
        default=5,
    ),
    Flag(
        "--header-read-timeout",
        "Close a connection whose request line and headers are not all received within this "
        "many seconds (of opening it, or of the previous answer).",
        parse=_positive_int,
        default=30,
    ),
    Flag(
        "--body-read-timeout",
        "Close a connection whose request body is not all received within this many seconds "
        "of its headers.",
        parse=_positive_int,
        default=60,
    ),
    Flag(
        "--max-connections",
        "The most client connections open at once; more are closed as soon as they are accepted.",
        parse=_positive_int,
        default=1024,
    ),
    Flag(
        "--cors-allow-origin",
        "Origins allowed by CORS (repeat the flag or separate with commas); all by default.",
        kind="list",
    ),
    Flag(
        "--input-type-prompt",
        "tei-ort: the prompt a Cohere `input_type` is embedded with, as TYPE=NAME (e.g. "
        "search_query=query; repeat the flag or separate with commas). Without it "
        "search_query uses the model's `query` prompt and search_document its `document` or "
        "`passage` prompt, when it has them.",
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
                type=_unset_or(flag.parse) if flag.per_model else flag.parse,
                action="append" if flag.per_model else "store",
                default=None,
                metavar=metavar,
                help=_help(flag),
            )


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``-V``/``--version`` as TEI's (clap's): the program and the TEI version, then
    tei-ort's own version."""
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"%(prog)s {TEI_VERSION} (tei-ort {VERSION})",
        help="Print version",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick and fetch a model (shared with ``tei-ort build``)."""
    add_flags(parser, MODEL_FLAGS)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag ``serve`` (and text-embeddings-router) takes."""
    add_model_arguments(parser)
    add_flags(parser, SERVER_FLAGS)
    add_version_flag(parser)


def _unset_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A per-model flag's value; an empty one leaves that model at the default (``--pooling
    splade --pooling ''``: SPLADE pooling for the first model, the second model's own)."""

    def parse_value(value: str) -> Any:
        return None if value == "" else parse(value)

    return parse_value


def _env_values(flag: Flag, raw: str, environ: Mapping[str, str]) -> list[str]:
    """A per-model flag's environment variable: MODEL_ID may list several ids (commas); with
    several, the other per-model variables may list one value per model too (an empty item
    is the default), except DEFAULT_PROMPT, a text that may hold commas itself."""
    several = flag.dest == "model_id" or "," in environ.get("MODEL_ID", "")
    if several and flag.dest != "default_prompt":
        return [part.strip() for part in raw.split(",")]
    return [raw]


def settings_from_args(
    parser: argparse.ArgumentParser,
    namespace: argparse.Namespace,
    flags: Sequence[Flag] = MODEL_FLAGS + SERVER_FLAGS,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Flags, then environment variables, then Settings' defaults; errors exit via parser."""
    environ = environment() if environ is None else environ
    values: dict[str, Any] = {}
    per_model: dict[str, tuple[Any, ...]] = {}
    for flag in flags:
        value = getattr(namespace, flag.dest, None)
        if value is None and environ.get(flag.env, "") != "":
            raw = environ[flag.env]
            if flag.kind == "list":
                value = [raw]
            elif flag.per_model:
                try:
                    parse = _unset_or(flag.parse)
                    value = [parse(part) for part in _env_values(flag, raw, environ)]
                except (argparse.ArgumentTypeError, ValueError) as exc:
                    parser.error(f"invalid value for {flag.name} from ${flag.env}: {exc}")
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
        elif flag.per_model:
            default = Settings.__dataclass_fields__[flag.dest].default
            value = [default if each is None else each for each in value]
            if len(value) > 1:
                per_model[flag.dest] = tuple(value)
            value = value[0]
        values[flag.dest] = value
    if per_model:
        values["per_model"] = tuple(per_model.items())
    api_token = values.pop("hf_api_token", None)
    if api_token is not None and values.get("hf_token") is not None:
        # TEI (clap) refuses both, from flags or environment variables alike
        parser.error(
            "the argument '--hf-token <HF_TOKEN>' cannot be used with "
            "'--hf-api-token <HF_API_TOKEN>'"
        )
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
    except START_ERRORS as exc:
        parser.error(str(exc))
