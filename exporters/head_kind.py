"""Which graph the exporter builds on top of the encoder (a model's head, as built)."""

from __future__ import annotations

import enum


class Head(str, enum.Enum):
    """Which graph the exporter builds on top of the encoder."""

    BASE = "base"  # last_hidden_state; pooling in numpy
    CLASSIFIER = "classifier"  # *ForSequenceClassification logits
    SPLADE = "splade"  # *ForMaskedLM + the SPLADE reduction in the graph
    # a causal LM scored as a re-ranker (Qwen3-Reranker): logits (B, 1) = logit("yes") -
    # logit("no") at the last real token, so sigmoid gives P(yes) = softmax([no, yes])[1]
    YES_NO_LOGIT = "yes_no_logit"
    # ColBERT: last_hidden_state, with query-expansion [MASK]s fed as -(id + 1): the graph
    # restores their ids and keeps them out of the attention keys (ColBERT's
    # attend_to_mask_tokens=False), so every token still gets its state
    LATE = "late"
