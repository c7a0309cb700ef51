"""Steps of the image test, each timed and reported as it ends (PASS / FAIL and why)."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field


class CheckFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Step:
    name: str
    detail: str = ""
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def step(self, name: str, *, fatal: bool = False) -> Iterator[Step]:
        """Time a step; a failure is reported and, unless ``fatal``, the test goes on."""
        step = Step(name)
        self.steps.append(step)
        print(f"-- {name}", flush=True)
        start = time.monotonic()
        try:
            yield step
        except (KeyboardInterrupt, SystemExit) as exc:  # a signal: the step did not finish
            step.seconds = time.monotonic() - start
            step.error = f"interrupted: {exc or type(exc).__name__}"
            print(f"FAIL {name} ({step.seconds:.1f} s): {step.error}", flush=True)
            raise
        except (CheckFailed, Exception) as exc:  # every failure is reported
            step.seconds = time.monotonic() - start
            step.error = str(exc) if isinstance(exc, CheckFailed) else traceback.format_exc()
            print(f"FAIL {name} ({step.seconds:.1f} s)\n{_indent(step.error)}", flush=True)
            if fatal:
                raise
            return
        step.seconds = time.monotonic() - start
        detail = f": {step.detail}" if step.detail else ""
        print(f"PASS {name} ({step.seconds:.1f} s){detail}", flush=True)

    def figure(self, name: str, value: str) -> None:
        self.figures[name] = value

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.error is not None]

    def summary(self) -> str:
        lines = ["", "== image test summary"]
        for step in self.steps:
            mark = "FAIL" if step.error else "PASS"
            lines.append(f"{mark} {step.seconds:7.1f} s  {step.name}")
        for name, value in self.figures.items():
            lines.append(f"     {name}: {value}")
        total = time.monotonic() - self.started
        verdict = f"{len(self.failed)} failed" if self.failed else "all passed"
        lines.append(f"== {len(self.steps)} steps, {verdict}, {total:.0f} s in all")
        return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines()[-40:])
