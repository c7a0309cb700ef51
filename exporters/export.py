"""Dispatch: a model's config and checkpoint -> an ONNX graph for one head and variant.

Each architecture family is one module with a ``build(ctx) -> GraphOutput`` function,
registered in ``FAMILIES`` (with the heads it builds) under the key that
``architecture_of`` gives its configs.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from tei_ort.engines.base import OutputName
from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.graph import FLOAT, INT64, ExternalData, GraphBuilder
from tei_ort.exporters.head_kind import Head
from tei_ort.exporters.progress import QUIET, Advance, Progress
from tei_ort.exporters.weights import WeightStore

# Bump when any builder changes the graphs it writes: it is part of the engine cache key.
EXPORTER_VERSION = "5"


class Variant(str, enum.Enum):
    """Which operator set the graph uses."""

    ORT = "ort"  # ONNX Runtime contrib operators (fused attention, skip layer norm, gelu)
    PLAIN = "plain"  # opset-17 operators only (TensorRT, any runtime)


@dataclass(frozen=True)
class ExportContext:
    """What every builder gets: the graph so far (with its two inputs) and the model."""

    g: GraphBuilder
    config: dict[str, Any]
    model_type: str  # the builder key, e.g. "bert", "roberta", "jina_bert"
    weight_files: Sequence[Path]
    head: Head
    variant: Variant
    input_ids: str  # (B, T) int64
    attention_mask: str  # (B, T) int64
    yes_no_token_ids: tuple[int, int] | None = None  # Head.YES_NO_LOGIT: ids of "yes", "no"
    # checkpoint tensor prefixes the encoder does not run (HF_ColBERT's `linear`, applied
    # after the engine)
    unused_prefixes: tuple[str, ...] = ()

    @property
    def fused(self) -> bool:
        return self.variant is Variant.ORT


@dataclass(frozen=True)
class GraphOutput:
    value: str  # the tensor to expose
    name: OutputName
    shape: list[int | str]


Builder = Callable[[ExportContext], GraphOutput]


@dataclass(frozen=True)
class Family:
    """One architecture family: the module whose ``build`` writes its graphs, and the heads
    it can build (so an unsupported model is refused before its weights are read)."""

    module: str
    heads: frozenset[Head]

    def build(self, ctx: ExportContext) -> GraphOutput:
        # imported on first use, so importing one family never loads the others
        builder: Builder = importlib.import_module(self.module).build
        return builder(ctx)


_ENCODER = frozenset({Head.BASE, Head.CLASSIFIER, Head.SPLADE})
_EMBEDDER_OR_CLASSIFIER = frozenset({Head.BASE, Head.CLASSIFIER})
_DECODER = frozenset({Head.BASE, Head.CLASSIFIER, Head.YES_NO_LOGIT})
_BERT = Family("tei_ort.exporters.bert", _ENCODER)
_DECODERS = Family("tei_ort.exporters.decoder", _DECODER)

#: builder key (``architecture_of``) -> family
FAMILIES: dict[str, Family] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "camembert": _BERT,
    "distilbert": _BERT,
    "mpnet": Family("tei_ort.exporters.mpnet", _ENCODER),
    "nomic_bert": Family("tei_ort.exporters.nomic_bert", frozenset({Head.BASE})),
    "jina_bert": Family("tei_ort.exporters.jina_bert", _EMBEDDER_OR_CLASSIFIER),
    "new": Family("tei_ort.exporters.gte", _EMBEDDER_OR_CLASSIFIER),
    "modernbert": Family("tei_ort.exporters.modernbert", _EMBEDDER_OR_CLASSIFIER),
    "qwen2": _DECODERS,
    "qwen3": _DECODERS,
    "bidirectional_pplx_qwen3": Family("tei_ort.exporters.pplx", frozenset({Head.BASE})),
    "mistral": _DECODERS,
    "llama": _DECODERS,
    # TEI serves Gemma3 as an embedder only
    "gemma3_text": Family("tei_ort.exporters.gemma3", frozenset({Head.BASE})),
    "deberta-v2": Family("tei_ort.exporters.deberta_v2", _EMBEDDER_OR_CLASSIFIER),
}


def family_of(config: dict[str, Any], head: Head) -> Family:
    """The family that builds ``head`` for ``config``; refuses an architecture or head we
    cannot build, from the config alone (no weight is read)."""
    key = architecture_of(config)
    family = FAMILIES.get(key)
    if family is None:
        raise UnsupportedModelError(
            f"model_type {key!r} is not supported; supported: {', '.join(sorted(FAMILIES))}"
        )
    if head is Head.LATE:  # the base graph with its inputs rewritten (see _build)
        head = Head.BASE
    if head not in family.heads:
        heads = ", ".join(sorted(h.value for h in family.heads))
        raise UnsupportedModelError(
            f"the {head.value} head is not available for {key} models (available: {heads})"
        )
    return family


def architecture_of(config: dict[str, Any]) -> str:
    """The builder key for a config: its model_type, lower-cased.

    JinaBERT v2 ships as model_type "bert" with remote code; TEI tells it apart by the
    jina implementation its config points to (``auto_map`` / ``_name_or_path``).
    """
    model_type = str(config.get("model_type", "")).lower()
    if model_type == "bert" and _is_jina_bert(config):
        return "jina_bert"
    return model_type


def _is_jina_bert(config: dict[str, Any]) -> bool:
    auto_map = config.get("auto_map") or {}
    refs = [str(v) for v in auto_map.values()] if isinstance(auto_map, dict) else []
    refs.append(str(config.get("_name_or_path", "")))
    return any("jina" in ref.lower() and "bert" in ref.lower() for ref in refs)


# Checkpoints whose float32 tensors take more than this are exported with their weights in
# an external data file: a ModelProto cannot exceed 2 GB, and the graph adds tables and
# constants of its own on top of the checkpoint, so the line sits well below that.
EXTERNAL_DATA_THRESHOLD = 1 << 30


def export_onnx(
    config: dict[str, Any],
    weight_files: Sequence[Path],
    head: Head,
    variant: Variant = Variant.ORT,
    *,
    yes_no_token_ids: tuple[int, int] | None = None,
    progress: Progress = QUIET,
) -> onnx.ModelProto:
    """Build the graph for ``head`` straight from the safetensors tensors, in memory."""
    total = WeightStore(weight_files).nbytes_float32()
    with progress.meter("exporting the weights", total) as advance:
        model = _build(config, weight_files, head, variant, yes_no_token_ids, None, advance)
    onnx.checker.check_model(model, full_check=False)
    return model


def export_to_file(
    config: dict[str, Any],
    weight_files: Sequence[Path],
    head: Head,
    path: Path,
    variant: Variant = Variant.ORT,
    *,
    yes_no_token_ids: tuple[int, int] | None = None,
    external_threshold: int = EXTERNAL_DATA_THRESHOLD,
    progress: Progress = QUIET,
) -> bool:
    """Write the graph to ``path``; returns whether its weights went to external data.

    Over ``external_threshold`` bytes of float32 weights, every tensor is streamed into
    ``<path>.data`` while the graph is built, so memory holds one layer at a time.
    """
    size = WeightStore(weight_files).nbytes_float32()
    if size <= external_threshold:
        onnx.save_model(
            export_onnx(
                config,
                weight_files,
                head,
                variant,
                yes_no_token_ids=yes_no_token_ids,
                progress=progress,
            ),
            str(path),
        )
        return False
    external = ExternalData(path.with_name(path.name + ".data"))
    try:
        with progress.meter("exporting the weights (external data)", size) as advance:
            model = _build(config, weight_files, head, variant, yes_no_token_ids, external, advance)
    finally:
        external.close()
    progress("writing and checking the graph")
    onnx.save_model(model, str(path))
    del model
    # by path: the checker reads the external tensors' metadata without loading them
    onnx.checker.check_model(str(path), full_check=False)
    return True


def _build(
    config: dict[str, Any],
    weight_files: Sequence[Path],
    head: Head,
    variant: Variant,
    yes_no_token_ids: tuple[int, int] | None,
    external: ExternalData | None,
    on_weight: Advance | None = None,
) -> onnx.ModelProto:
    key = architecture_of(config)
    family = family_of(config, head)
    g = GraphBuilder(f"tei_ort_{key}_{head.value}", external=external, on_weight=on_weight)
    ctx = ExportContext(
        g=g,
        config=config,
        model_type=key,
        weight_files=weight_files,
        head=head,
        variant=variant,
        input_ids=g.input("input_ids", INT64, ["batch", "sequence"]),
        attention_mask=g.input("attention_mask", INT64, ["batch", "sequence"]),
        yes_no_token_ids=yes_no_token_ids,
    )
    if head is Head.LATE:
        ids, mask = _expansion_inputs(g, ctx.input_ids, ctx.attention_mask)
        ctx = dataclasses.replace(
            ctx, head=Head.BASE, input_ids=ids, attention_mask=mask, unused_prefixes=("linear.",)
        )
    out = family.build(ctx)
    g.op("Identity", out.value, name=out.name.value)
    g.output(out.name.value, FLOAT, out.shape)
    return g.build(producer=f"tei-ort-exporter-{EXPORTER_VERSION}")


def _expansion_inputs(g: GraphBuilder, input_ids: str, attention_mask: str) -> tuple[str, str]:
    """Head.LATE's inputs: an id fed as -(id + 1) is a query-expansion token: its real id is
    restored and it leaves the attention mask, so no token attends to it while it still gets
    its own state (the graph output keeps every position the caller's mask marks)."""
    expansion = g.op("Less", input_ids, g.const(0))  # (B, T) bool
    ids = g.op("Where", expansion, g.op("Sub", g.const(-1), input_ids), input_ids)  # (B, T)
    keep = g.op("Cast", g.op("Not", expansion), to=7)  # (B, T) int64
    return ids, g.op("Mul", attention_mask, keep)
