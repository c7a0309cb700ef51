"""Cohere's ``input_type`` as the model's sentence-transformers prompt names.

A Cohere client says what a text is for (``search_query``, ``search_document``, ...); a
sentence-transformers model says it with prompts (``query: ``, ``passage: ``). The types
map to the first of their candidate prompt names the model has; ``--input-type-prompt
TYPE=NAME`` overrides a type. A type that maps to no prompt of the model is embedded as
any request without ``prompt_name`` is (the server's default prompt, if any).

The flag applies to every served model: a model without any prompt ignores it (a server
of several models may pair a prompted model with one without prompts); a model with
prompts but not the one named stops the start (a typo would silently embed as is).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from tei_ort.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: Cohere's input types, each with the prompt names that mean it, preferred first
CANDIDATES: dict[str, tuple[str, ...]] = {
    "search_query": ("query", "search_query"),
    "search_document": ("document", "passage", "search_document", "corpus"),
    "classification": ("classification",),
    "clustering": ("clustering",),
}


def parse_overrides(values: Sequence[str]) -> dict[str, str]:
    """``TYPE=NAME`` flag values as a map (a malformed one stops the start)."""
    overrides: dict[str, str] = {}
    for value in values:
        kind, sep, name = value.partition("=")
        if not sep or not kind.strip() or not name.strip():
            raise ConfigurationError(
                f"--input-type-prompt takes TYPE=NAME (e.g. search_query=query), got {value!r}"
            )
        overrides[kind.strip()] = name.strip()
    return overrides


def input_type_prompts(prompts: Mapping[str, str], overrides: Sequence[str] = ()) -> dict[str, str]:
    """input type -> the prompt name it is embedded with, for the types that map."""
    mapping: dict[str, str] = {}
    for kind, names in CANDIDATES.items():
        for name in names:
            if name in prompts:
                mapping[kind] = name
                break
    for kind, name in parse_overrides(overrides).items():
        if not prompts:
            logger.warning("--input-type-prompt %s=%s: the model has no prompts", kind, name)
            continue
        if name not in prompts:
            known = ", ".join(f"`{p}`" for p in sorted(prompts))
            raise ConfigurationError(
                f"--input-type-prompt {kind}={name}: the model has no prompt `{name}` "
                f"(its prompts: {known})"
            )
        mapping[kind] = name
    return mapping
