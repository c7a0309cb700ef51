"""TEI's start-up rules that depend on the model and the flags (checked once, at start)."""

from __future__ import annotations

import logging

from tei_ort.errors import ConfigurationError
from tei_ort.model.info import ModelInfo
from tei_ort.serving.validation import rust_debug_list
from tei_ort.settings import Settings

logger = logging.getLogger(__name__)


def effective_max_input_length(settings: Settings, info: ModelInfo) -> int:
    """TEI's start-up rule (and words) for inputs longer than ``--max-batch-tokens``.

    Without auto-truncation a model whose inputs may be longer than one batch cannot be
    served (start-up fails); with it, inputs are truncated to ``max_batch_tokens``.
    """
    if info.max_input_length <= settings.max_batch_tokens:
        return info.max_input_length
    length, budget = info.max_input_length, settings.max_batch_tokens
    if not settings.auto_truncate:
        raise ConfigurationError(
            f"The maximum input length is `{length}` which exceeds `--max-batch-tokens="
            f"{budget}`. Either increase `--max-batch-tokens` to at least `{length}`, or set "
            f"`--auto-truncate true` so that regardless the maximum input length, those are "
            f"truncated to `{budget}` tokens."
        )
    logger.warning(
        "The maximum input length is `%d` which exceeds `--max-batch-tokens=%d`. Input "
        "sequences will be truncated to `%d` tokens, as `--auto-truncate` is either not "
        "provided (defaults to true) or provided as true. To avoid truncation, increase "
        "`--max-batch-tokens` to at least `%d` and set `--auto-truncate false`.",
        length,
        budget,
        budget,
        length,
    )
    return settings.max_batch_tokens


def resolve_default_prompt(settings: Settings, info: ModelInfo) -> str | None:
    """``--default-prompt`` or the text ``--default-prompt-name`` names (checked at start)."""
    name = settings.default_prompt_name
    if name is None:
        return settings.default_prompt
    if not info.prompts:
        raise ConfigurationError(
            f"`default-prompt-name` is set to `{name}` but no prompts were found in the "
            f"Sentence Transformers configuration"
        )
    if name not in info.prompts:
        raise ConfigurationError(
            f"`default-prompt-name` is set to `{name}` but it was not found in the Sentence "
            f"Transformers prompts. Available prompts: {rust_debug_list(sorted(info.prompts))}"
        )
    return info.prompts[name]
