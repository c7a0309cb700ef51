"""Late-interaction models (ColBERT, BGE-M3): which format a model directory is in, and its
settings, read from its JSON files (no weights, no tokenizer).

Three formats are recognised, each with the encoding its own library applies:

- ``bge-m3`` (FlagEmbedding's BGEM3): ``colbert_linear.pt`` and ``sparse_linear.pt`` beside
  the encoder. Dense = the pooled (CLS) vector; sparse = ReLU(sparse_linear(h)) per token,
  the max per token id, special tokens removed; ColBERT = colbert_linear(h) of every token
  after CLS, L2-normalized. Queries and documents are encoded alike.
- ``colbert`` (stanford-futuredata ColBERT's ``HF_ColBERT``): the encoder and a bias-free
  ``linear`` projection in the same weights, settings in ``artifact.metadata``.
- ``pylate`` (PyLate's sentence-transformers format): a ``pylate.models.Dense`` module in
  modules.json, settings in config_sentence_transformers.json.

For both ColBERT formats a query is ``[CLS] [Q] text [SEP]`` padded with [MASK] to its
query length (query expansion), a document ``[CLS] [D] text [SEP]`` up to its document
length with the skiplist's tokens (punctuation) dropped from its vectors; every vector is
projected and L2-normalized.
"""

from __future__ import annotations

import enum
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tei_ort.errors import ModelError

__all__ = ["LateFormat", "LateInteraction", "read_late_interaction"]

BGE_M3_FILES = ("colbert_linear.pt", "sparse_linear.pt")
COLBERT_METADATA = "artifact.metadata"
PYLATE_DENSE = "pylate.models.Dense"
# stanford ColBERT's and PyLate's defaults
DEFAULT_QUERY_LENGTH = 32
DEFAULT_DOCUMENT_LENGTH = 180
DEFAULT_QUERY_MARKER = "[unused0]"
DEFAULT_DOCUMENT_MARKER = "[unused1]"


class LateFormat(str, enum.Enum):
    BGE_M3 = "bge-m3"
    COLBERT = "colbert"
    PYLATE = "pylate"


@dataclass(frozen=True)
class LateInteraction:
    """How a late-interaction model encodes queries and documents into token vectors."""

    format: LateFormat
    query_marker: str | None = None  # token inserted after the first token of a query
    document_marker: str | None = None
    query_length: int | None = None  # tokens of a query, marker and expansion included
    document_length: int | None = None  # at most, marker included
    query_expansion: bool = False  # pad queries to query_length with [MASK]
    attend_to_expansion: bool = False  # whether other tokens attend to those [MASK]s
    # document tokens whose vectors are dropped: token strings (PyLate) or texts whose
    # first token is dropped (ColBERT's punctuation)
    skiplist: tuple[str, ...] = ()
    skiplist_by_text: bool = False
    dense_module: Path | None = None  # PyLate's Dense folder (its model.safetensors)

    @property
    def scores_by_query_length(self) -> bool:
        """BGE-M3 divides its ColBERT score by the query's vector count; ColBERT sums."""
        return self.format is LateFormat.BGE_M3


def read_late_interaction(
    root: Path, config: dict[str, Any], modules: list[dict[str, Any]]
) -> LateInteraction | None:
    """The model's late-interaction format and settings, None for any other model."""
    if all((root / name).is_file() for name in BGE_M3_FILES):
        return LateInteraction(LateFormat.BGE_M3)
    dense = [m for m in modules if str(m.get("type", "")).startswith(PYLATE_DENSE)]
    if dense:
        return _pylate(root, dense)
    if "HF_ColBERT" in (config.get("architectures") or ()) or (root / COLBERT_METADATA).is_file():
        return _colbert(root)
    return None


def _colbert(root: Path) -> LateInteraction:
    path = root / COLBERT_METADATA
    meta = _json_object(path) or {}
    return LateInteraction(
        LateFormat.COLBERT,
        query_marker=_opt(meta, "query_token_id", str, path, DEFAULT_QUERY_MARKER),
        document_marker=_opt(meta, "doc_token_id", str, path, DEFAULT_DOCUMENT_MARKER),
        query_length=_opt(meta, "query_maxlen", int, path, DEFAULT_QUERY_LENGTH),
        document_length=_opt(meta, "doc_maxlen", int, path, DEFAULT_DOCUMENT_LENGTH),
        query_expansion=True,  # ColBERT always pads queries with [MASK]
        attend_to_expansion=_opt(meta, "attend_to_mask_tokens", bool, path, False),
        skiplist=tuple(string.punctuation)
        if _opt(meta, "mask_punctuation", bool, path, True)
        else (),
        skiplist_by_text=True,
    )


def _pylate(root: Path, dense: list[dict[str, Any]]) -> LateInteraction:
    if len(dense) != 1:
        raise ModelError(f"{root}/modules.json lists {len(dense)} PyLate Dense modules, not one")
    path = root / "config_sentence_transformers.json"
    st = _json_object(path) or {}
    expansion = _opt(st, "do_query_expansion", bool, path, True)
    skiplist = st.get("skiplist_words")
    if skiplist is None:
        skiplist = list(string.punctuation)
    if not isinstance(skiplist, list) or not all(isinstance(w, str) for w in skiplist):
        raise ModelError(f"{path}: `skiplist_words` must be a list of strings")
    folder = root / str(dense[0].get("path") or "")
    if not (folder / "model.safetensors").is_file():
        raise ModelError(f"PyLate's Dense module in {folder} has no model.safetensors")
    return LateInteraction(
        LateFormat.PYLATE,
        query_marker=_opt(st, "query_prefix", str, path, DEFAULT_QUERY_MARKER) or None,
        document_marker=_opt(st, "document_prefix", str, path, DEFAULT_DOCUMENT_MARKER) or None,
        query_length=_opt(st, "query_length", int, path, DEFAULT_QUERY_LENGTH),
        document_length=_opt(st, "document_length", int, path, DEFAULT_DOCUMENT_LENGTH),
        query_expansion=expansion,
        # PyLate: no expansion, nothing to attend to
        attend_to_expansion=expansion and _opt(st, "attend_to_expansion_tokens", bool, path, False),
        skiplist=tuple(skiplist),
        dense_module=folder,
    )


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object")
    return data


def _opt(data: dict[str, Any], key: str, kind: type, path: Path, default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelError(f"{path}: `{key}` must be {kind.__name__}, not {value!r}")
    if isinstance(value, int) and kind is int and value <= 1:
        raise ModelError(f"{path}: `{key}` must be at least 2, not {value}")
    return value
