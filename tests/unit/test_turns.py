"""``Turns``: engine runs of several models go first come, first served."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from tei_ort.engines.base import EngineInputs, OutputName
from tei_ort.engines.fake import FakeEngine
from tei_ort.serving.turns import Turns, TurnTakingEngine


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.001)


def test_the_thread_that_asked_first_runs_next() -> None:
    """A busy model that releases and asks again queues behind the model already waiting,
    whatever order the OS would wake them in."""
    turns = Turns()
    order: list[str] = []
    turns.acquire()  # the busy model's first run

    def run(name: str) -> None:
        with turns:
            order.append(name)

    idle = threading.Thread(target=run, args=("idle",))
    idle.start()
    wait_for(lambda: turns.waiting == 1)
    turns.release()  # the busy model's run ends ...
    busy_again = threading.Thread(target=run, args=("busy",))
    busy_again.start()  # ... and it asks again at once
    idle.join(5)
    busy_again.join(5)
    assert order == ["idle", "busy"]
    assert turns.waiting == 0
    with turns:  # free again: taken at once
        pass


def test_runs_never_overlap_and_every_thread_gets_turns() -> None:
    turns = Turns()
    inside = 0
    most = 0
    counts = {name: 0 for name in "abc"}
    lock = threading.Lock()
    stop = time.monotonic() + 0.3

    def loop(name: str) -> None:
        nonlocal inside, most
        while time.monotonic() < stop:
            with turns:
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.001)
                with lock:
                    inside -= 1
                counts[name] += 1

    threads = [threading.Thread(target=loop, args=(name,)) for name in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most == 1
    assert max(counts.values()) - min(counts.values()) <= 2  # strict alternation


def test_turn_taking_engine_is_the_engine() -> None:
    inner = FakeEngine(OutputName.LAST_HIDDEN_STATE, hidden_size=8)
    engine = TurnTakingEngine(inner, Turns())
    ids = np.array([[101, 2054, 102]], dtype=np.int64)  # (1, 3)
    inputs = EngineInputs(ids, np.ones_like(ids))
    np.testing.assert_array_equal(engine.run(inputs), inner.run(inputs))
    assert (engine.output_name, engine.compute_type, engine.dtype) == (
        inner.output_name,
        inner.compute_type,
        inner.dtype,
    )
    assert engine.pad_multiple == inner.pad_multiple
