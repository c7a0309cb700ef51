"""pplx-embed (model_type ``bidirectional_pplx_qwen3``): Qwen3 weights and config read by the
decoder exporter, with the attention direction its config gives
(``use_bidirectional_attention``, true in the released models). The int8-style scaling of
the pooled vectors runs after pooling (tei_ort.model.pplx)."""

from __future__ import annotations

from dataclasses import replace

from tei_ort.exporters import decoder
from tei_ort.exporters.export import ExportContext, GraphOutput


def build(ctx: ExportContext) -> GraphOutput:
    return decoder.build(replace(ctx, model_type="qwen3"))
