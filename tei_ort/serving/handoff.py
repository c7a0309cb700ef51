"""The one-batch hand-off between the batcher thread and the engine thread (and probes).

The batcher forms a batch only when the engine thread asks for one (``wait_wanted``), so a
batch holds everything queued up to that moment; /health probes jump the queue.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tei_ort.engines.base import EngineInputs
from tei_ort.serving.queue import Entry


@dataclass
class Batch:
    entries: list[Entry]
    inputs: EngineInputs
    tokens: int  # real tokens, before padding


class Probe:
    """A health probe handed to the engine thread."""

    def __init__(self, inputs: EngineInputs) -> None:
        self.inputs = inputs
        self.done = threading.Event()
        self.ok = False


class Slot:
    """The one-batch hand-off between the batcher and the engine thread (plus probes)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._batch: Batch | None = None
        self._probes: list[Probe] = []
        self._closed = False
        self._wanted = False  # the engine thread waits in take()

    def wait_wanted(self) -> bool:
        """Until the engine thread asks for a batch and none is waiting; False once closed."""
        with self._cond:
            while (self._batch is not None or not self._wanted) and not self._closed:
                self._cond.wait()
            return not self._closed

    def put(self, batch: Batch) -> None:
        with self._cond:
            self._batch = batch
            self._cond.notify_all()

    def probe(self, probe: Probe) -> None:
        with self._cond:
            self._probes.append(probe)
            self._cond.notify_all()

    def take(self) -> Batch | Probe | None:
        with self._cond:
            self._wanted = True
            self._cond.notify_all()
            while self._batch is None and not self._probes and not self._closed:
                self._cond.wait()
            self._wanted = False
            if self._probes:
                return self._probes.pop(0)
            batch, self._batch = self._batch, None
            self._cond.notify_all()
            return batch

    def close(self) -> Batch | None:
        with self._cond:
            self._closed = True
            batch, self._batch = self._batch, None
            for probe in self._probes:
                probe.done.set()
            self._probes.clear()
            self._cond.notify_all()
            return batch
