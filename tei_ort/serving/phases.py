"""Which step of a request an error belongs to, and where tokenization runs.

TEI counts every error of the tokenization step as ``te_request_failure{err="tokenization"}``
whatever its type; a tokenizer's own failure is a ``TokenizerError``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from tei_ort.errors import RequestError, TokenizerError
from tei_ort.serving.encoding import Item

logger = logging.getLogger(__name__)


# A request of one input up to this many characters is tokenized on the event loop: a
# sentence is a few tens of microseconds of tokenizer work, less than the hand-over to a
# pool thread and back (two thread wake-ups), which under load come out of the engine's
# CPU. Longer or batched inputs go to the pool, so as not to hold up the event loop.
INLINE_TOKENIZE_CHARS = 2048


def tokenize_inline(items: Sequence[Item]) -> bool:
    """Whether ``items`` is small enough to tokenize on the event loop."""
    if len(items) != 1:
        return False
    item = items[0]
    if isinstance(item, str):
        return len(item) <= INLINE_TOKENIZE_CHARS
    if isinstance(item, tuple):
        return len(item[0]) + len(item[1]) <= INLINE_TOKENIZE_CHARS
    return len(item) <= INLINE_TOKENIZE_CHARS  # token ids


@contextlib.contextmanager
def tokenization_errors() -> Iterator[None]:
    """A tokenizer failure as the client sees it: a RequestError of the tokenization phase."""
    try:
        yield
    except RequestError as exc:
        raise mark_phase(exc, "tokenization") from None
    except Exception as exc:
        logger.exception("tokenization failed")
        raise mark_phase(TokenizerError(f"tokenizer error {exc}"), "tokenization") from exc


def mark_phase(exc: RequestError, label: str) -> RequestError:
    """Record that ``exc`` is counted under another ``err`` label (TEI counts every error of
    the tokenization step as ``tokenization``, whatever its type)."""
    exc.__dict__["metric_phase"] = label
    return exc


def failure_label(exc: RequestError) -> str:
    label = exc.__dict__.get("metric_phase", exc.metric_label)
    return str(label)
