"""Prompt templates of causal-LM re-rankers, and how their (query, document) pairs tokenize.

Qwen3-Reranker is a Qwen3ForCausalLM asked, in a chat template, whether a document meets
a query; its score is P("yes") against "no" at the last position (the graph's YES_NO_LOGIT
head gives logit(yes) - logit(no), whose sigmoid is that probability). The template and
the truncation follow the model card: the prefix and suffix are never cut, only the
instruction/query/document part in between, so the prompt always ends where the model
must answer.

Both the in-process API (``Model.rerank`` / ``Model.predict``) and the server form pairs
with :func:`encode_rerank_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import tokenizers

from tei_ort.errors import ModelError, UnsupportedModelError
from tei_ort.model.tokenization import Encoded, Tokenizer

Direction = Literal["right", "left"]

QWEN3 = "qwen3"
#: the marker in a model id, directory name or ``_name_or_path`` that names a Qwen3-Reranker
QWEN3_RERANKER_MARKER = "qwen3-reranker"

QWEN3_RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN3_RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)


def format_qwen3_rerank_body(query: str, document: str, instruction: str | None = None) -> str:
    """The part of the prompt that truncation may cut."""
    instruction = QWEN3_DEFAULT_INSTRUCTION if instruction is None else instruction
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def encode_rerank_pairs(
    template: str,
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    instruction: str | None = None,
    max_length: int | None = None,
    direction: Direction = "right",
) -> list[Encoded]:
    """Token ids of each pair's prompt; ``max_length`` (the whole prompt) turns truncation on.

    As the model card does: prefix, body and suffix are tokenized without special tokens,
    the body is truncated to what the prefix and suffix leave, and the three are joined.
    """
    if template != QWEN3:
        raise UnsupportedModelError(f"unknown re-rank template {template!r}")
    prefix, suffix = tokenizer.encode_batch(
        [QWEN3_RERANK_PREFIX, QWEN3_RERANK_SUFFIX], add_special_tokens=False
    )
    budget = None
    if max_length is not None:
        budget = max_length - len(prefix) - len(suffix)
        if budget <= 0:
            raise ModelError(f"max_length {max_length} leaves no room for the re-rank template")
    bodies = tokenizer.encode_batch(
        [format_qwen3_rerank_body(q, d, instruction) for q, d in pairs],
        add_special_tokens=False,
        max_length=budget,
        direction=direction,
    )
    out = []
    for body in bodies:
        ids = np.concatenate([prefix.input_ids, body.input_ids, suffix.input_ids])
        out.append(Encoded(input_ids=ids, token_type_ids=np.zeros_like(ids)))
    return out


def is_qwen3_reranker(
    architectures: Sequence[str], config: dict[str, object], names: Sequence[str]
) -> bool:
    """A Qwen3ForCausalLM whose model id, directory or ``_name_or_path`` says Qwen3-Reranker.

    The checkpoint itself cannot tell a re-ranker from a chat model (both are plain causal
    LMs), so the name decides; ``names`` are the model id and the directory name.
    """
    if "Qwen3ForCausalLM" not in architectures:
        return False
    candidates = [*names, str(config.get("_name_or_path", ""))]
    return any(QWEN3_RERANKER_MARKER in name.lower() for name in candidates)


def yes_no_token_ids(model_dir: Path) -> tuple[int, int]:
    """The ids of the single tokens "yes" and "no" in the directory's tokenizer.json.

    Looked up as tokens (the model card's ``convert_tokens_to_ids``), not by encoding text.
    """
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{path} not found: a yes/no re-ranker needs its tokenizer")
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception
        raise ModelError(f"cannot read {path}: {exc}") from exc
    yes, no = tokenizer.token_to_id("yes"), tokenizer.token_to_id("no")
    if yes is None or no is None:
        missing = [t for t, i in (("yes", yes), ("no", no)) if i is None]
        raise UnsupportedModelError(f"{path} has no single token for {missing}")
    return int(yes), int(no)
