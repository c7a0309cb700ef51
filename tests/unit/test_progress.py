"""Progress of long work: tqdm bars with an ETA on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from huggingface_hub.utils.tqdm import are_progress_bars_disabled, enable_progress_bars

from tei_ort.cli.progress import LogProgress, TerminalProgress, download_bar, make_progress
from tei_ort.exporters.export import Variant, export_to_file
from tei_ort.exporters.progress import Advance
from tei_ort.exporters.tensorrt import progress_monitor
from tei_ort.exporters.weights import WeightStore
from tei_ort.model.info import Head
from tests.support.graphs import checkpoint_files
from tests.support.tiny_models import make_model


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Recorder:
    """A Progress that keeps what it is told."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.meters: list[tuple[str, float | None, str]] = []
        self.amounts: dict[str, float] = {}
        self.closed: list[str] = []

    def __call__(self, message: str) -> None:
        self.steps.append(message)

    @contextmanager
    def meter(self, description: str, total: float | None, unit: str = "B") -> Iterator[Advance]:
        self.meters.append((description, total, unit))
        self.amounts[description] = 0.0

        def advance(amount: float) -> None:
            self.amounts[description] += amount

        yield advance
        self.closed.append(description)


@pytest.fixture
def hub_bars() -> Iterator[None]:
    yield
    enable_progress_bars()  # make_progress turns them off for the whole process


def test_log_lines_say_how_far_and_the_eta() -> None:
    lines: list[str] = []
    clock = _Clock()
    progress = LogProgress(lines.append, interval=10, clock=clock)
    with progress.meter("exporting", 400, "step") as advance:
        clock.now = 5
        advance(50)  # within the interval: no line
        clock.now = 20
        advance(50)  # 100 of 400 in 20 s: 300 more take 60 s
        clock.now = 80
    assert lines == [
        "exporting (400 step)",
        "exporting: 100 step of 400 step (25%), ETA 01:00",
        "exporting: done, 100 step in 01:20",
    ]


def test_log_lines_for_work_of_unknown_length_keep_coming() -> None:
    lines: list[str] = []
    with LogProgress(lines.append, interval=0.05).meter("optimizing", None, "s"):
        time.sleep(0.3)
    assert lines[0] == "optimizing"
    assert any(line.startswith("optimizing: running for") for line in lines[1:-1])
    assert lines[-1].startswith("optimizing: done")


def test_terminal_bars_show_an_eta() -> None:
    stream = _Tty()
    progress = make_progress(lambda _: None, json_output=False, stream=stream)
    assert isinstance(progress, TerminalProgress)
    with progress.meter("exporting the weights", 4 << 20) as advance:
        advance(1 << 20)
        advance(3 << 20)
    shown = stream.getvalue()
    assert "exporting the weights: 100%" in shown and "4.00M/4.00M" in shown
    assert "<00:00" in shown  # tqdm's [elapsed<remaining]


@pytest.mark.usefixtures("hub_bars")
@pytest.mark.parametrize(("tty", "json_output"), [(False, False), (True, True)])
def test_lines_without_a_terminal_or_with_json_output(tty: bool, json_output: bool) -> None:
    stream = _Tty() if tty else io.StringIO()
    progress = make_progress(lambda _: None, json_output=json_output, stream=stream)
    assert isinstance(progress, LogProgress)
    assert are_progress_bars_disabled()  # huggingface_hub's download bars too
    with progress.meter("exporting", 10) as advance:
        advance(10)
    assert stream.getvalue() == ""


def test_export_meters_the_weights_it_streams(tmp_path: Path) -> None:
    make_model("bert", "base", tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    files = checkpoint_files(tmp_path / "model")
    recorder = _Recorder()
    graph = tmp_path / "model.onnx"
    external = export_to_file(
        config, files, Head.BASE, graph, Variant.ORT, external_threshold=0, progress=recorder
    )
    assert external
    ((description, total, unit),) = recorder.meters
    assert "external data" in description and unit == "B"
    assert total == WeightStore(files).nbytes_float32()
    assert recorder.amounts[description] >= 0.9 * total
    assert recorder.closed == [description]


def test_tensorrt_phases_become_meters() -> None:
    class FakeMonitor:  # TensorRT's IProgressMonitor, as a base class
        def __init__(self) -> None:
            pass

    recorder = _Recorder()
    monitor: Any = progress_monitor(SimpleNamespace(IProgressMonitor=FakeMonitor), recorder)
    monitor.phase_start("Building engine", None, 3)
    monitor.phase_start("Tactic selection", "Building engine", 100)  # nested: not shown
    for step in range(3):
        assert monitor.step_complete("Tactic selection", step)
        assert monitor.step_complete("Building engine", step)
    monitor.phase_finish("Tactic selection")
    monitor.phase_finish("Building engine")
    assert recorder.meters == [("TensorRT: Building engine", 3, "step")]
    assert recorder.amounts == {"TensorRT: Building engine": 3}
    assert recorder.closed == ["TensorRT: Building engine"]


def test_downloads_are_lines_without_a_terminal() -> None:
    lines: list[str] = []
    clock = _Clock()
    bar_class = download_bar(LogProgress(lines.append, interval=10, clock=clock))
    assert bar_class is not None
    bar = bar_class(total=4_000_000, desc="Downloading bytes", unit="B", unit_scale=True)
    bar.mininterval = 0  # tqdm's own throttle runs on the real clock
    clock.now = 20
    bar.update(1_000_000)
    clock.now = 25
    bar.update(1_000_000)  # within the interval: no line
    bar.close()
    assert len(lines) == 2, lines
    assert lines[0].startswith("Downloading bytes: 1.00M/4.00M (25%), ") and ", ETA " in lines[0]
    assert lines[1].startswith("Downloading bytes: 2.00M/4.00M (50%)")


def test_hub_downloads_use_the_bar_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tei_ort.model import hub

    seen: dict[str, Any] = {}

    def fake_download(model_id: str, **kwargs: Any) -> str:
        seen.update(kwargs)
        return str(tmp_path)

    monkeypatch.setattr(hub, "snapshot_download", fake_download)
    bar_class = download_bar(LogProgress(lambda _: None))
    hub.resolve_model("org/model", download_bar=bar_class)
    assert seen["tqdm_class"] is bar_class
    assert download_bar(TerminalProgress(lambda _: None, _Tty())) is None  # hub's own bars
