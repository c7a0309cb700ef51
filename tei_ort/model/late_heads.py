"""Late-interaction heads in numpy, on the encoder's token states (one engine pass).

The engine answers (B, T, H) hidden states; these functions turn one row into what each
format answers: ColBERT token vectors (projected, L2-normalized), BGE-M3's lexical weights.
The weights come from the model directory: BGE-M3's torch pickles through the restricted
reader (``exporters.torch_pickle``), HF_ColBERT's ``linear.weight`` from its safetensors,
PyLate's Dense module from its own folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tei_ort.errors import ModelError
from tei_ort.exporters.torch_pickle import load_state_dict
from tei_ort.exporters.weights import SafetensorsFile
from tei_ort.model.dense import DenseStack
from tei_ort.model.info import DenseLayer, ModelInfo
from tei_ort.model.late_config import LateFormat, LateInteraction
from tei_ort.model.tokenization import Encoded, Tokenizer

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

__all__ = ["LateHeads", "load_late_heads"]
# FlagEmbedding drops these from BGE-M3's lexical weights
_UNUSED_SPECIAL = ("cls_token", "eos_token", "pad_token", "unk_token")


@dataclass(frozen=True)
class LateHeads:
    config: LateInteraction
    projection_t: F32  # (H, D)
    projection_bias: F32 | None  # (D,)
    sparse_weight: F32 | None  # (H,) BGE-M3 only
    sparse_bias: float
    sparse_unused: I64  # token ids left out of the lexical weights
    skip_ids: I64  # document tokens whose vectors are dropped
    query_marker_id: int | None
    document_marker_id: int | None
    mask_id: int | None
    vocab_size: int

    @property
    def dim(self) -> int:
        return int(self.projection_t.shape[1])

    @property
    def has_markers(self) -> bool:
        """ColBERT formats: queries and documents are encoded differently."""
        return self.config.format is not LateFormat.BGE_M3

    def length_limit(self, query: bool, max_input_length: int) -> int:
        """The most tokens of a query or a document, marker included."""
        length = self.config.query_length if query else self.config.document_length
        return min(length or max_input_length, max_input_length)

    def mark(self, encoded: Encoded, *, query: bool, length: int) -> Encoded:
        """ColBERT's query / document form: ``[CLS] marker ...``, and a query padded to
        ``length`` with [MASK] (fed as ``-(id + 1)`` when not attended, see Head.LATE)."""
        marker = self.query_marker_id if query else self.document_marker_id
        ids, types = encoded.input_ids, encoded.token_type_ids
        if marker is not None and ids.size:
            ids = np.concatenate([ids[:1], [marker], ids[1:]]).astype(np.int64)
            types = np.concatenate([types[:1], [0], types[1:]]).astype(np.int64)
        if query and self.mask_id is not None and ids.size < length:
            fill = self.mask_id if self.config.attend_to_expansion else -(self.mask_id + 1)
            ids = np.concatenate([ids, np.full(length - ids.size, fill, np.int64)])
            types = np.concatenate([types, np.zeros(length - types.size, np.int64)])
        return Encoded(ids, types)

    def token_vectors(self, hidden: F32, ids: I64, *, query: bool) -> F32:
        """One row's late-interaction vectors: (T, H) states of its real tokens -> (n, D).

        ``ids`` as fed to the engine (a query's unattended [MASK]s negative)."""
        if self.config.format is LateFormat.BGE_M3:
            kept = hidden[1:]  # FlagEmbedding: every token after CLS
        elif query or self.skip_ids.size == 0:
            kept = hidden  # ColBERT keeps every query token, expansion [MASK]s included
        else:
            kept = hidden[~np.isin(ids, self.skip_ids)]
        vectors = kept @ self.projection_t  # (n, D)
        if self.projection_bias is not None:
            vectors = vectors + self.projection_bias
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)  # (n, 1)
        out: F32 = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
        return out

    def lexical_weights(self, hidden: F32, ids: I64) -> F32:
        """BGE-M3's sparse vector (V,): max over tokens of ReLU(sparse_linear(h)) per id."""
        if self.sparse_weight is None:
            raise ModelError("this model has no sparse head")
        weights = np.maximum(hidden @ self.sparse_weight + self.sparse_bias, 0.0)  # (T,)
        vector = np.zeros(self.vocab_size, dtype=np.float32)  # (V,)
        np.maximum.at(vector, ids, weights.astype(np.float32, copy=False))
        vector[self.sparse_unused] = 0.0
        return vector


def load_late_heads(info: ModelInfo, tokenizer: Tokenizer) -> LateHeads | None:
    late = info.late_interaction
    if late is None:
        return None
    vocab = max(int(info.config.get("vocab_size") or 0), tokenizer.vocab_size)
    if late.format is LateFormat.BGE_M3:
        return _bge_m3(info.path, info.hidden_size, late, tokenizer, vocab)
    if late.format is LateFormat.COLBERT:
        projection_t, bias = _hf_colbert_linear(info), None
    else:
        assert late.dense_module is not None
        stack = DenseStack.load([_pylate_dense(late.dense_module)])
        if len(stack.params) != 1 or stack.params[0].activation.__name__ != "_identity":
            raise ModelError(f"PyLate's Dense in {late.dense_module} must be a linear projection")
        projection_t, bias = stack.params[0].weight_t, stack.params[0].bias
    skip: list[int] = []
    for word in late.skiplist:
        token = _first_token(tokenizer, word) if late.skiplist_by_text else tokenizer.token_id(word)
        # PyLate's convert_tokens_to_ids answers [UNK] for a word not in the vocabulary
        token = token if token is not None else tokenizer.special_id("unk_token")
        if token is not None:
            skip.append(token)
    return LateHeads(
        config=late,
        projection_t=projection_t,
        projection_bias=bias,
        sparse_weight=None,
        sparse_bias=0.0,
        sparse_unused=np.zeros(0, np.int64),
        skip_ids=np.asarray(sorted(set(skip)), dtype=np.int64),
        query_marker_id=_marker(tokenizer, late.query_marker),
        document_marker_id=_marker(tokenizer, late.document_marker),
        mask_id=_mask_id(tokenizer, late),
        vocab_size=vocab,
    )


def _bge_m3(
    root: Path, hidden: int, late: LateInteraction, tokenizer: Tokenizer, vocab: int
) -> LateHeads:
    colbert = _linear(load_state_dict(root / "colbert_linear.pt"), root / "colbert_linear.pt")
    sparse = _linear(load_state_dict(root / "sparse_linear.pt"), root / "sparse_linear.pt")
    if colbert[0].shape[1] != hidden or sparse[0].shape != (1, hidden):
        raise ModelError(
            f"BGE-M3 heads in {root} do not fit the encoder's hidden size {hidden}: "
            f"colbert_linear {colbert[0].shape}, sparse_linear {sparse[0].shape}"
        )
    unused = {tokenizer.special_id(name) for name in _UNUSED_SPECIAL}
    return LateHeads(
        config=late,
        projection_t=np.ascontiguousarray(colbert[0].T),
        projection_bias=colbert[1],
        sparse_weight=np.ascontiguousarray(sparse[0][0]),
        sparse_bias=float(sparse[1][0]) if sparse[1] is not None else 0.0,
        sparse_unused=np.asarray(sorted(i for i in unused if i is not None), dtype=np.int64),
        skip_ids=np.zeros(0, np.int64),
        query_marker_id=None,
        document_marker_id=None,
        mask_id=None,
        vocab_size=vocab,
    )


def _linear(state: dict[str, NDArray[np.generic]], path: Path) -> tuple[F32, F32 | None]:
    """A torch.nn.Linear state dict: weight (out, in), bias (out,) or none."""
    extra = set(state) - {"weight", "bias"}
    weight = state.get("weight")
    if extra or weight is None or weight.ndim != 2:
        raise ModelError(f"{path} is not a Linear layer's state dict (keys {sorted(state)})")
    bias = state.get("bias")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ModelError(f"{path}: bias of shape {bias.shape} for weight {weight.shape}")
    return weight.astype(np.float32), None if bias is None else bias.astype(np.float32)


def _hf_colbert_linear(info: ModelInfo) -> F32:
    for path in info.weight_files:
        handle = SafetensorsFile(path)
        if "linear.weight" in handle.names():
            weight = handle.get_float32("linear.weight")  # (D, H)
            if weight.ndim != 2 or weight.shape[1] != info.hidden_size:
                raise ModelError(f"{path}: linear.weight has shape {weight.shape}")
            return np.ascontiguousarray(weight.T)
    raise ModelError(f"{info.path}: an HF_ColBERT checkpoint needs `linear.weight`")


def _pylate_dense(folder: Path) -> DenseLayer:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return DenseLayer(
            path=folder,
            in_features=int(config["in_features"]),
            out_features=int(config["out_features"]),
            bias=bool(config.get("bias", True)),
            activation=str(config.get("activation_function", "torch.nn.modules.linear.Identity")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read PyLate's Dense configuration {path}: {exc}") from exc


def _first_token(tokenizer: Tokenizer, text: str) -> int | None:
    ids = tokenizer.encode_batch([text], add_special_tokens=False)[0].input_ids
    return int(ids[0]) if ids.size else None


def _marker(tokenizer: Tokenizer, marker: str | None) -> int | None:
    if marker is None:
        return None
    token = tokenizer.token_id(marker)
    if token is None:
        raise ModelError(f"the marker token {marker!r} is not in the tokenizer's vocabulary")
    return token


def _mask_id(tokenizer: Tokenizer, late: LateInteraction) -> int | None:
    if not late.query_expansion:
        return None
    mask = tokenizer.special_id("mask_token")
    if mask is None:
        raise ModelError("query expansion needs a [MASK] token; the tokenizer has none")
    return mask
