"""Heads on top of an encoder: sequence classification and the SPLADE (MLM) reduction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import OutputName
from tei_ort.exporters import layers
from tei_ort.exporters.bert import Encoder
from tei_ort.exporters.errors import UnsupportedModelError, WeightMappingError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import GraphBuilder
from tei_ort.exporters.head_kind import Head
from tei_ort.exporters.weights import WeightStore

F32 = NDArray[np.float32]


def first_token(g: GraphBuilder, hidden: str) -> str:
    """(B, T, H) -> (B, H): the [CLS] / <s> position."""
    return g.op("Gather", hidden, g.const(0), axis=1)


def _num_labels(store: WeightStore, name: str, hidden: int) -> int:
    shape = store.shape(name)
    if len(shape) != 2 or shape[1] != hidden:
        raise WeightMappingError(f"tensor {name!r} has shape {shape}, expected (labels, {hidden})")
    return shape[0]


@dataclass(frozen=True)
class ClassifierLayout:
    """Where a family's ``*ForSequenceClassification`` head keeps its tensors.

    Every such head is ``out(act(first(h[:, 0])))``; only the tensor names and the
    activation differ between families.
    """

    first: str  # the linear layer on the first token
    act: str  # ONNX operator between the two layers
    out: str  # the linear layer that gives the logits
    unused: tuple[str, ...] = ()  # checkpoint prefixes the head does not run


_ROBERTA_CLASSIFIER = ClassifierLayout(
    "classifier.dense", "Tanh", "classifier.out_proj", unused=("pooler.",)
)

#: layout name -> classifier tensors (BertPooler + classifier, RobertaClassificationHead,
#: DistilBERT's pre_classifier + ReLU)
CLASSIFIER_LAYOUTS: dict[str, ClassifierLayout] = {
    "bert": ClassifierLayout("pooler.dense", "Tanh", "classifier"),
    "roberta": _ROBERTA_CLASSIFIER,
    "xlm-roberta": _ROBERTA_CLASSIFIER,
    "camembert": _ROBERTA_CLASSIFIER,
    "distilbert": ClassifierLayout("pre_classifier", "Relu", "classifier"),
}


@dataclass(frozen=True)
class MlmLayout:
    """Where a family's masked-LM head keeps its tensors (SPLADE runs on it)."""

    dense: str
    layer_norm: str
    decoder: str  # the decoder weight; absent means tied to the word embeddings
    act: str | None  # None: the encoder's ``hidden_act``
    biases: tuple[str, ...]  # checkpoints often save the decoder bias under two names


_ROBERTA_MLM = MlmLayout(
    "lm_head.dense",
    "lm_head.layer_norm",
    "lm_head.decoder.weight",
    "gelu",
    ("lm_head.bias", "lm_head.decoder.bias"),
)

#: layout name -> masked-LM tensors
MLM_LAYOUTS: dict[str, MlmLayout] = {
    "bert": MlmLayout(
        "cls.predictions.transform.dense",
        "cls.predictions.transform.LayerNorm",
        "cls.predictions.decoder.weight",
        None,
        ("cls.predictions.bias", "cls.predictions.decoder.bias"),
    ),
    "roberta": _ROBERTA_MLM,
    "xlm-roberta": _ROBERTA_MLM,
    "camembert": _ROBERTA_MLM,
    "distilbert": MlmLayout(
        "vocab_transform",
        "vocab_layer_norm",
        "vocab_projector.weight",
        None,
        ("vocab_projector.bias",),
    ),
}


def classifier(g: GraphBuilder, store: WeightStore, enc: Encoder, layout_name: str) -> str:
    """``*ForSequenceClassification`` logits (B, L)."""
    layout = CLASSIFIER_LAYOUTS.get(layout_name)
    if layout is None:
        raise UnsupportedModelError(
            f"no sequence-classification head for model_type {layout_name!r}"
        )
    h = enc.cfg.hidden
    x = layers.linear(
        g,
        first_token(g, enc.hidden_state),
        store.take(layout.first + ".weight", (h, h)),
        store.take(layout.first + ".bias", (h,)),
        layout.first,
    )
    x = g.op(layout.act, x)
    labels = _num_labels(store, layout.out + ".weight", h)
    for prefix in layout.unused:
        store.ignore(prefix)
    return layers.linear(
        g,
        x,
        store.take(layout.out + ".weight", (labels, h)),
        store.take(layout.out + ".bias", (labels,)),
        layout.out,
    )


def splade(
    g: GraphBuilder, store: WeightStore, enc: Encoder, model_type: str, attention_mask: str
) -> str:
    """SPLADE vectors (B, V): max over valid tokens of log(1 + relu(mlm_logits)).

    log(1 + relu(.)) is monotonic, so the max is taken over the raw logits first and the
    (B, T, V) tensor is read once; the per-vocab decoder bias commutes with the max.
    """
    layout = MLM_LAYOUTS.get(model_type)
    if layout is None:
        raise UnsupportedModelError(f"no masked-LM head for model_type {model_type!r}")
    cfg = enc.cfg
    h, vocab = cfg.hidden, cfg.vocab
    dense, norm, decoder_name, bias_names = (
        layout.dense,
        layout.layer_norm,
        layout.decoder,
        layout.biases,
    )
    act = cfg.act if layout.act is None else layout.act
    x = g.op(
        "MatMul",
        enc.hidden_state,
        g.weight("mlm.dense.weight_t", store.take(dense + ".weight", (h, h)).T.copy()),
    )
    x = layers.activation(g, x, store.take(dense + ".bias", (h,)), act, "mlm.act", fused=False)
    x = layers.layer_norm(
        g,
        x,
        store.take(norm + ".weight", (h,)),
        store.take(norm + ".bias", (h,)),
        cfg.eps,
        "mlm.ln",
    )

    decoder = store.take_optional(decoder_name, (vocab, h))
    if decoder is None:  # tied to the input embeddings
        decoder = enc.word_embeddings
    logits = g.op("MatMul", x, g.weight("mlm.decoder.weight_t", decoder.T.copy()))  # (B, T, V)

    bias = _decoder_bias(store, bias_names, vocab)
    pad_bias = g.op(
        "Unsqueeze",
        g.op(
            "Mul",
            g.op("Sub", g.const(1.0, np.float32), g.op("Cast", attention_mask, to=1)),
            g.const(-1.0e9, np.float32),
        ),
        g.const([2]),
    )  # (B, T, 1): padded tokens can never be the max
    best = g.op("ReduceMax", g.op("Add", logits, pad_bias), axes=[1], keepdims=0)  # (B, V)
    if bias is not None:
        best = g.op("Add", best, g.weight("mlm.decoder.bias", bias))
    return g.op("Log", g.op("Add", g.op("Relu", best), g.const(1.0, np.float32)))


def _decoder_bias(store: WeightStore, names: Sequence[str], vocab: int) -> F32 | None:
    """The decoder bias; checkpoints often save the same tensor under two names."""
    found = [store.take(name, (vocab,)) for name in names if name in store]
    if not found:
        return None
    for other in found[1:]:
        if not np.array_equal(found[0], other):
            raise WeightMappingError(f"decoder biases {names} differ; cannot tell which one to use")
    return found[0]


def encoder_output(
    ctx: ExportContext,
    store: WeightStore,
    enc: Encoder,
    *,
    layout: str,
    unused_by_embeddings: Sequence[str],
    no_splade: str | None = None,
) -> GraphOutput:
    """The graph output ``ctx.head`` asks for on top of a BERT-like encoder.

    ``layout`` names whose head tensors the checkpoint has ("bert", "roberta",
    "distilbert", ...); ``unused_by_embeddings`` the tensor prefixes (a pooler, an MLM
    head) an embedding model does not run; ``no_splade`` the reason a family has no
    masked-LM head to serve. Checks that every checkpoint tensor was used.
    """
    if ctx.head is Head.BASE:
        for prefix in unused_by_embeddings:
            store.ignore(prefix)
        shape: list[int | str] = ["batch", "sequence", enc.cfg.hidden]
        out = GraphOutput(enc.hidden_state, OutputName.LAST_HIDDEN_STATE, shape)
    elif ctx.head is Head.CLASSIFIER:
        logits = classifier(ctx.g, store, enc, layout)
        out = GraphOutput(logits, OutputName.LOGITS, ["batch", "labels"])
    elif ctx.head is Head.SPLADE and no_splade is None:
        store.ignore("pooler.")
        sparse = splade(ctx.g, store, enc, layout, ctx.attention_mask)
        out = GraphOutput(sparse, OutputName.SPARSE_EMBEDDING, ["batch", enc.cfg.vocab])
    else:
        raise UnsupportedModelError(no_splade or f"head {ctx.head.value!r} is not supported")
    store.finish()
    return out
