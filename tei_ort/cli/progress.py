"""How ``build`` and ``serve`` show long work: bars on a terminal, plain lines elsewhere.

On a terminal (stderr is a TTY and ``--json-output`` is off) every meter is a tqdm bar
with its rate and ETA, and huggingface_hub draws its own download bars. Anywhere else (a
container log, a pipe, JSON logs) bars would be control characters in the log: a meter is
then a line when it starts, one every ``LOG_INTERVAL_S`` with what is done and the ETA,
and one at the end, and huggingface_hub's bars are turned off.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

from tei_ort.exporters.progress import Advance, Progress

Emit = Callable[[str], None]
LOG_INTERVAL_S = 10.0
_DOWNLOAD_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%), {rate_fmt}, ETA {remaining}"


class _Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, interval: float, tick: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(interval, tick), name="tei-ort-progress", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float, tick: Callable[[], None]) -> None:
        while not self._stop.wait(interval):
            tick()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _amount(value: float, unit: str) -> str:
    if unit == "B":
        return str(tqdm.format_sizeof(value, "B", 1024))
    return f"{value:g} {unit}"


class TerminalProgress:
    """Steps through ``emit``; meters as tqdm bars on ``stream``."""

    def __init__(self, emit: Emit, stream: TextIO) -> None:
        self.emit = emit
        self.stream = stream

    def __call__(self, message: str) -> None:
        self.emit(message)

    @contextlib.contextmanager
    def meter(self, description: str, total: float | None, unit: str = "B") -> Iterator[Advance]:
        in_bytes = unit == "B"
        bar = tqdm(
            total=total,
            desc=description,
            unit=unit,
            unit_scale=in_bytes,
            unit_divisor=1024 if in_bytes else 1000,
            file=self.stream,
            dynamic_ncols=True,
        )
        # a step of unknown length still shows that time passes
        ticker = _Ticker(0.5, bar.refresh) if total is None else None
        try:
            yield bar.update
        finally:
            if ticker is not None:
                ticker.stop()
            bar.close()


class LogProgress:
    """Steps and meters as plain lines through ``emit`` (at most one per ``interval``)."""

    def __init__(
        self,
        emit: Emit,
        interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.interval = interval
        self.clock = clock

    def __call__(self, message: str) -> None:
        self.emit(message)

    @contextlib.contextmanager
    def meter(self, description: str, total: float | None, unit: str = "B") -> Iterator[Advance]:
        start = self.clock()
        last = start
        done = 0.0
        lock = threading.Lock()
        self.emit(description + ("" if total is None else f" ({_amount(total, unit)})"))

        def advance(amount: float) -> None:
            nonlocal done, last
            with lock:
                done += amount
                now = self.clock()
                if now - last < self.interval:
                    return
                last = now
            self.emit(self._line(description, done, total, now - start, unit))

        def still_running() -> None:
            elapsed = tqdm.format_interval(self.clock() - start)
            self.emit(f"{description}: running for {elapsed}")

        ticker = _Ticker(self.interval, still_running) if total is None else None
        try:
            yield advance
        finally:
            if ticker is not None:
                ticker.stop()
        elapsed = tqdm.format_interval(self.clock() - start)
        shown = f"{_amount(done, unit)} " if done else ""
        self.emit(f"{description}: done, {shown}in {elapsed}")

    @staticmethod
    def _line(description: str, done: float, total: float | None, elapsed: float, unit: str) -> str:
        text = f"{description}: {_amount(done, unit)}"
        if total:
            text += f" of {_amount(total, unit)} ({min(done / total, 1.0):.0%})"
            if 0 < done < total:
                eta = elapsed * (total - done) / done
                text += f", ETA {tqdm.format_interval(eta)}"
        return text


def download_bar(progress: Progress) -> type[tqdm] | None:
    """The tqdm class huggingface_hub shows downloads with: its own bars on a terminal,
    lines through the same ``emit`` (at most one per interval, with the ETA) elsewhere."""
    if not isinstance(progress, LogProgress):
        return None
    emit, interval, clock = progress.emit, progress.interval, progress.clock

    class LogTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.update(file=io.StringIO(), disable=False)  # nothing is drawn
            self._emitted = clock()
            super().__init__(*args, **kwargs)

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            if clock() - self._emitted >= interval:
                self._emitted = clock()
                emit(self._line())
            return True

        def close(self) -> None:
            if not self.disable and self.n:
                emit(self._line())
            super().close()

        def _line(self) -> str:
            meter = {**self.format_dict, "bar_format": _DOWNLOAD_FORMAT, "ncols": None}
            return str(self.format_meter(**meter))

    return LogTqdm


def on_terminal(stream: TextIO, json_output: bool) -> bool:
    """Whether bars can be drawn: ``stream`` is a terminal and logs are not JSON."""
    return not json_output and stream.isatty()


def make_progress(emit: Emit, *, json_output: bool, stream: TextIO) -> Progress:
    """Bars on a terminal, lines elsewhere; huggingface_hub's download bars follow suit."""
    from huggingface_hub.utils.tqdm import disable_progress_bars

    if on_terminal(stream, json_output):
        return TerminalProgress(emit, stream)
    disable_progress_bars()
    return LogProgress(emit)
