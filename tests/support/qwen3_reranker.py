"""Qwen3-Reranker's prompt written out as its model card writes it: the tests' reference."""

from __future__ import annotations

SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def model_card_prompt(query: str, document: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The whole prompt the model card scores for one (query, document) pair."""
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
        f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
        "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
