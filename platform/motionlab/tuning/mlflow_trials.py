"""One MLflow child run per Tune trial, written from the Tune driver only (one writer, even on SQLite).

Ray's `MLflowLoggerCallback` opens a fresh run whenever a trial starts, so a sweep resumed after its driver
was killed would log a restarted trial twice. Here a trial's run is found again by its name tag
(`<sweep>-<trial id>`), so a resumed sweep keeps exactly one child run per trial.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from ray import tune

from motionlab.config import ExperimentConfig, MotionConfig
from motionlab.tracking.runs import KIND_TAG, PARENT_TAG, RUN_NAME_TAG, SWEEP_TAG, RunLogger, open_training_run
from motionlab.tuning.space import PhysicsSpace, SearchSpace

LOGGED_PREFIXES = ("train/", "eval/")
LOGGED_KEYS = ("lr", "tokens_seen", "tokens_per_s", "samples_seen", "samples_per_s")
FAILURE_TAG = "motionlab.failure"
STOPPED_TAG = "motionlab.stopped_early"


def failure_file(storage: Path, trial_id: str) -> Path:
    return storage / f"{trial_id}.failure"


def root_cause(error: BaseException) -> str:
    """The innermost `SomeError: message` line of a (Train-wrapped) error: the reason a person can act on."""
    lines = [line.strip() for line in str(error).splitlines()]
    causes = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return (causes[-1] if causes else f"{type(error).__name__}: {lines[-1] if lines else ''}")[:5000]


def trial_run_name(sweep: str, trial_id: str) -> str:
    return f"{sweep}-{trial_id}"


def drop_unsaved_trials(client: MlflowClient, experiment_id: str, sweep: str, saved: set[str]) -> list[str]:
    """Delete (softly: `mlflow runs restore` brings one back) the child runs of trials that started after Tune's
    last saved experiment state: the resumed sweep never hears of them again and runs their place as new trials,
    so keeping them would show one trial twice. Returns the deleted runs' names."""
    keep = {trial_run_name(sweep, t) for t in saved}
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and "
                              f"tags.`{KIND_TAG}` = 'trial' and attributes.status = 'RUNNING'")
    dropped = []
    for run in runs:
        name = run.data.tags.get(RUN_NAME_TAG, "")
        if name not in keep:
            client.set_tag(run.info.run_id, FAILURE_TAG, "started after the sweep's last saved state, then the "
                           "driver died; the resumed sweep re-ran its place as a new trial")
            client.set_terminated(run.info.run_id, status="KILLED")
            client.delete_run(run.info.run_id)
            dropped.append(name)
    return dropped


class TrialRuns(tune.Callback):
    """Driver-side Tune callback: child runs under the sweep's parent run, metrics at every report."""

    def __init__(self, uri: str, experiment: str, parent_run_id: str, sweep: str, base: ExperimentConfig | MotionConfig,
                 tags: dict[str, str], total_steps: int, storage: Path, artifact_location: str | None = None,
                 space: SearchSpace | PhysicsSpace | None = None) -> None:
        self.storage = storage
        self.uri, self.experiment, self.parent_run_id, self.sweep = uri, experiment, parent_run_id, sweep
        self.base, self.tags, self.total_steps = base, tags, total_steps
        self.artifact_location = artifact_location
        self.space = space or SearchSpace()  # how a trial's parameters become its config
        self.run_ids: dict[str, str] = {}
        self.last_step: dict[str, int] = {}

    def _run_id(self, trial: Any) -> str:
        if trial.trial_id not in self.run_ids:
            cfg = self.space.trial_config(self.base, trial.config)
            tags = {**self.tags, KIND_TAG: "trial", SWEEP_TAG: self.sweep, PARENT_TAG: self.parent_run_id}
            run_id, _ = open_training_run(self.uri, cfg, trial_run_name(self.sweep, trial.trial_id), tags,
                                          experiment=self.experiment, artifact_location=self.artifact_location)
            self.run_ids[trial.trial_id] = run_id
        return self.run_ids[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_id(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        metrics = {k: float(v) for k, v in result.items()
                   if isinstance(v, int | float) and (k.startswith(LOGGED_PREFIXES) or k in LOGGED_KEYS)}
        step = int(result.get("step", result.get("training_iteration", 0)))
        self.last_step[trial.trial_id] = step
        if metrics:
            RunLogger(self.uri, self._run_id(trial)).metrics(metrics, step)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger = RunLogger(self.uri, self._run_id(trial))
        step = self.last_step.get(trial.trial_id, 0)
        if step < self.total_steps:  # the scheduler stopped it: a result, not a failure
            logger.tags({STOPPED_TAG: f"at step {step} of {self.total_steps}"})
        logger.client.set_terminated(logger.run_id, status="FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger = RunLogger(self.uri, self._run_id(trial))
        written = failure_file(self.storage, trial.trial_id)
        reason = written.read_text() if written.exists() else "the trial's process died (see the Tune log)"
        logger.tags({FAILURE_TAG: reason})
        logger.client.set_terminated(logger.run_id, status="FAILED")
