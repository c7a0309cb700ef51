"""Progress of long work, reported to whatever the caller shows it with.

Exporting a large model streams gigabytes of weights, and ONNX Runtime's optimizer and
TensorRT's builder take minutes. The code that does the work calls a ``Progress`` given
from above and never decides how it is shown (a bar on a terminal, log lines, nothing):
the command line does (``tei_ort.cli.progress``), since this layer knows nothing of it.

``progress(message)`` reports a step; ``with progress.meter(what, total, unit) as advance``
measures one, ``advance(amount)`` as amounts get done (``total`` None: not known ahead).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

Advance = Callable[[float], None]


class Progress(Protocol):
    def __call__(self, message: str) -> None:
        """A step begins."""

    def meter(
        self, description: str, total: float | None, unit: str = "B"
    ) -> AbstractContextManager[Advance]:
        """Measure a long step; the value entered takes each amount done."""


def _ignore(_: float) -> None:
    pass


class Quiet:
    """Progress that shows nothing (the in-process API, tests)."""

    def __call__(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def meter(self, description: str, total: float | None, unit: str = "B") -> Iterator[Advance]:
        yield _ignore


QUIET = Quiet()
