"""Where each sweep trial's wall time goes, from the driver's side and the trial's own reports.

The driver marks when Tune created a trial, when its actor started and when it ended; the trial's reports
carry the train loop's phases (`training.phases`: build, first batch, steps, evaluations, checkpoints) and
its marks (the trial function's start, the loop's start, the last report). Together they split a trial's
wall time into the table `benchmarks/sweep_phases.py` prints.
"""

from __future__ import annotations

import time
from typing import Any

from ray import tune

from motionlab.training.phases import read_phases

# the table's rows, in the order a trial goes through them
PHASES = (
    "tune_start",  # Tune created the trial -> the trial function runs (actor start, parameters fetched)
    "framework_start",  # trial function -> train loop (a TorchTrainer's controller and worker group)
    "build",  # model, optimizer, eval rows
    "resume",  # reading the last checkpoint
    "first_batch",  # the first batch: the dataset read
    "first_step",  # the first optimizer step (warm-up)
    "training",  # every later step and its batch
    "eval",  # evaluations, the untrained one included
    "checkpoint",  # writing checkpoint files
    "worker_mlflow",  # MLflow writes from the loop (none in a sweep: the driver writes)
    "after_loop",  # last report -> Tune marks the trial ended (worker group shutdown)
    "other",  # reports, log lines and the rest
)
# what `train_share` counts: optimizer steps (their batches included) and evaluation
TRAINING_PHASES = ("first_step", "training", "eval")


def split_wall(created: float, ended: float, seconds: dict[str, float], marks: dict[str, float]) -> dict[str, float]:
    """{phase: seconds} of one trial plus `wall`; `other` is what no phase accounts for."""
    wall = max(ended - created, 0.0)
    trial_at = marks.get("trial", marks.get("loop", created))
    loop_at = marks.get("loop", trial_at)
    out = {
        "tune_start": max(trial_at - created, 0.0),
        "framework_start": max(loop_at - trial_at, 0.0),
        "build": seconds.get("build", 0.0),
        "resume": seconds.get("resume", 0.0),
        "first_batch": seconds.get("first_batch", 0.0),
        "first_step": seconds.get("first_step", 0.0),
        "training": seconds.get("steps", 0.0) + seconds.get("batches", 0.0),
        "eval": seconds.get("eval", 0.0),
        "checkpoint": seconds.get("checkpoint", 0.0),
        "worker_mlflow": seconds.get("mlflow", 0.0),
        "after_loop": max(ended - marks.get("report", ended), 0.0),
    }
    out["other"] = max(wall - sum(out.values()), 0.0)
    out["wall"] = wall
    return out


def train_share(phases: dict[str, float]) -> float:
    """Share of a trial's wall time spent in optimizer steps and evaluation."""
    return sum(phases[p] for p in TRAINING_PHASES) / max(phases["wall"], 1e-9)


class TrialTimes(tune.Callback):
    """Driver-side Tune callback: each trial's created/started/ended marks and its last report's phases."""

    def __init__(self) -> None:
        self.marks: dict[str, dict[str, float]] = {}
        self.reports: dict[str, dict[str, Any]] = {}

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.time()
        for trial in trials:
            self.marks.setdefault(trial.trial_id, {"created": now})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.marks.setdefault(trial.trial_id, {"created": time.time()}).setdefault("started", time.time())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.reports[trial.trial_id] = result

    def _end(self, trial: Any) -> None:
        self.marks.setdefault(trial.trial_id, {"created": time.time()})["ended"] = time.time()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)

    def table(self) -> dict[str, dict[str, float]]:
        """{trial id: split_wall(...)} of every ended trial, in creation order."""
        out = {}
        for trial_id, marks in sorted(self.marks.items(), key=lambda kv: kv[1]["created"]):
            if "ended" not in marks:
                continue
            seconds, loop_marks = read_phases(self.reports.get(trial_id, {}))
            out[trial_id] = split_wall(marks["created"], marks["ended"], seconds, loop_marks)
        return out
