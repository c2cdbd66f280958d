"""Where a run's wall time goes: seconds per phase and wall-clock marks, carried in every report as `time/...`.

The train loop times its phases (building the model, the first batch, optimizer steps, evaluations,
checkpoints); a sweep's driver adds what happens around the loop (the trial's start, the framework's
start-up, MLflow writes), so `benchmarks/sweep_phases.py` can say what a trial spends outside training.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

PREFIX = "time/"
SECONDS, AT = "_s", "_at"


class PhaseClock:
    """Accumulated seconds per phase (`time/<phase>_s`) and wall-clock marks (`time/<mark>_at`, Unix seconds)."""

    def __init__(self, marks: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.marks: dict[str, float] = dict(marks or {})

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def metrics(self) -> dict[str, float]:
        """The phases and marks so far, plus `time/report_at` (now): what a report carries."""
        out = {f"{PREFIX}{k}{SECONDS}": v for k, v in self.seconds.items()}
        out.update({f"{PREFIX}{k}{AT}": v for k, v in self.marks.items()})
        out[f"{PREFIX}report{AT}"] = time.time()
        return out


def read_phases(result: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(seconds per phase, marks) of a report's `time/...` entries."""
    seconds = {k[len(PREFIX):-len(SECONDS)]: float(v) for k, v in result.items()
               if k.startswith(PREFIX) and k.endswith(SECONDS)}
    marks = {k[len(PREFIX):-len(AT)]: float(v) for k, v in result.items() if k.startswith(PREFIX) and k.endswith(AT)}
    return seconds, marks
