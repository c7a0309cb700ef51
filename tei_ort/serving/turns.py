"""Engines of several models taking turns on the cores.

Each served model has its own engine thread; left alone, a model under a burst keeps its
engine busy back to back and the threads of every engine fight over the same cores (each
ORT session sizes its pool to all of them). ``Turns`` is a first-come, first-served lock
around engine runs: when a model's run ends while another model waits, the waiting one
runs next, so an idle model's single request waits for at most the one batch in progress,
never for the whole burst (bench/multi_model.py measures it).
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType

import numpy as np
from numpy.typing import NDArray

from tei_ort.engines.base import Engine, EngineInputs


class Turns:
    """A FIFO lock: the thread that asked first runs next (``threading.Lock`` promises no
    order, and the thread that just released it usually takes it again)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._busy = False
        self._waiting: deque[threading.Lock] = deque()

    @property
    def waiting(self) -> int:
        """Threads waiting for their turn."""
        with self._guard:
            return len(self._waiting)

    def acquire(self) -> None:
        with self._guard:
            if not self._busy:
                self._busy = True
                return
            baton = threading.Lock()
            baton.acquire()
            self._waiting.append(baton)
        baton.acquire()  # released by the holder's release(): the turn is handed over

    def release(self) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()  # stays busy: the waiter holds it now
            else:
                self._busy = False

    def __enter__(self) -> Turns:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class TurnTakingEngine(Engine):
    """An engine whose runs wait for their turn among the models of one server."""

    def __init__(self, engine: Engine, turns: Turns) -> None:
        self.inner = engine
        self.turns = turns
        self.output_name = engine.output_name
        self.compute_type = engine.compute_type
        self.dtype = engine.dtype
        self.max_batch_size = engine.max_batch_size
        self.pad_multiple = engine.pad_multiple

    def run(self, inputs: EngineInputs) -> NDArray[np.float32]:
        with self.turns:
            return self.inner.run(inputs)

    def close(self) -> None:
        self.inner.close()
