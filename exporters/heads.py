"""Heads on top of an encoder: sequence classification and the SPLADE (MLM) reduction."""

from __future__ import annotations

from collections.abc import Sequence

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


def classifier(g: GraphBuilder, store: WeightStore, enc: Encoder, model_type: str) -> str:
    """``*ForSequenceClassification`` logits (B, L)."""
    h = enc.cfg.hidden
    cls = first_token(g, enc.hidden_state)
    if model_type == "bert":
        # BertPooler: tanh(dense(h[:, 0])), then classifier
        pooled = layers.linear(
            g,
            cls,
            store.take("pooler.dense.weight", (h, h)),
            store.take("pooler.dense.bias", (h,)),
            "pooler",
        )
        pooled = g.op("Tanh", pooled)
        labels = _num_labels(store, "classifier.weight", h)
        return layers.linear(
            g,
            pooled,
            store.take("classifier.weight", (labels, h)),
            store.take("classifier.bias", (labels,)),
            "classifier",
        )
    if model_type in ("roberta", "xlm-roberta", "camembert"):
        # RobertaClassificationHead: out_proj(tanh(dense(h[:, 0])))
        x = layers.linear(
            g,
            cls,
            store.take("classifier.dense.weight", (h, h)),
            store.take("classifier.dense.bias", (h,)),
            "classifier.dense",
        )
        x = g.op("Tanh", x)
        labels = _num_labels(store, "classifier.out_proj.weight", h)
        store.ignore("pooler.")  # RobertaForSequenceClassification builds no pooler
        return layers.linear(
            g,
            x,
            store.take("classifier.out_proj.weight", (labels, h)),
            store.take("classifier.out_proj.bias", (labels,)),
            "classifier.out_proj",
        )
    if model_type == "distilbert":
        # relu(pre_classifier(h[:, 0])), then classifier
        x = layers.linear(
            g,
            cls,
            store.take("pre_classifier.weight", (h, h)),
            store.take("pre_classifier.bias", (h,)),
            "pre_classifier",
        )
        x = g.op("Relu", x)
        labels = _num_labels(store, "classifier.weight", h)
        return layers.linear(
            g,
            x,
            store.take("classifier.weight", (labels, h)),
            store.take("classifier.bias", (labels,)),
            "classifier",
        )
    raise UnsupportedModelError(f"no sequence-classification head for model_type {model_type!r}")


def _mlm_names(model_type: str) -> tuple[str, str, str, str, list[str]]:
    """(dense, layer_norm, decoder weight, activation source, decoder bias names)."""
    if model_type == "bert":
        p = "cls.predictions."
        return (
            p + "transform.dense",
            p + "transform.LayerNorm",
            p + "decoder.weight",
            "config",
            [p + "bias", p + "decoder.bias"],
        )
    if model_type in ("roberta", "xlm-roberta", "camembert"):
        return (
            "lm_head.dense",
            "lm_head.layer_norm",
            "lm_head.decoder.weight",
            "gelu",
            ["lm_head.bias", "lm_head.decoder.bias"],
        )
    if model_type == "distilbert":
        return (
            "vocab_transform",
            "vocab_layer_norm",
            "vocab_projector.weight",
            "config",
            ["vocab_projector.bias"],
        )
    raise UnsupportedModelError(f"no masked-LM head for model_type {model_type!r}")


def splade(
    g: GraphBuilder, store: WeightStore, enc: Encoder, model_type: str, attention_mask: str
) -> str:
    """SPLADE vectors (B, V): max over valid tokens of log(1 + relu(mlm_logits)).

    log(1 + relu(.)) is monotonic, so the max is taken over the raw logits first and the
    (B, T, V) tensor is read once; the per-vocab decoder bias commutes with the max.
    """
    cfg = enc.cfg
    h, vocab = cfg.hidden, cfg.vocab
    dense, norm, decoder_name, act_source, bias_names = _mlm_names(model_type)
    act = cfg.act if act_source == "config" else act_source
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


def _decoder_bias(store: WeightStore, names: list[str], vocab: int) -> F32 | None:
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
