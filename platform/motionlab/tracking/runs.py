"""MLflow conventions shared by every run: experiment names, run names, tags, metric keys.

Every variant and every sweep trial uses the same keys, so the MLflow UI can put M1..M4 side by side.
Workers log through an `MlflowClient` bound to a run id (no fluent global state), which works the same in
the driver, a Ray Train worker or a Tune trial.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from motionlab.config import ExperimentConfig, MotionConfig

# Nothing leaves the machine unless the user configured it.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

EXPERIMENT_MULTIMODAL = "multimodal"
EXPERIMENT_MOTION = "motion"  # text-to-motion SSMs; the `model` tag tells MotionSSM and PhysicsSSM apart
RUN_NAME_TAG = "motionlab.run_name"  # the Ray Train run name: a restarted training finds its MLflow run by it
KIND_TAG = "motionlab.kind"  # "train" (a training), "sweep" (a sweep's parent run) or "trial" (a sweep's child)
SWEEP_TAG = "motionlab.sweep"  # the sweep's name, on its parent and every child run
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag: the UI folds trials under their sweep
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_BATCH = 100  # MLflow accepts at most 100 params per log_batch call


def git_commit(start: Path | None = None) -> str:
    """The commit of the source tree that runs, or 'unknown' outside a git checkout."""
    where = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def default_run_name(cfg: ExperimentConfig | MotionConfig) -> str:
    """Variant (or motion model) plus time, e.g. `M4-tiny-20261202-101500`, `PhysicsSSM-tiny-...`: unique,
    sortable, readable in the UI."""
    preset = f"-{cfg.preset}" if cfg.preset else ""
    return f"{cfg.run_label}{preset}-{datetime.now():%Y%m%d-%H%M%S}"


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, created on first use; artifacts go to `artifact_location` (never the cwd's mlruns/)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # another process created it between the lookup and here
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_run(client: MlflowClient, experiment: str, run_name: str) -> str | None:
    """The MLflow run a Ray Train run of this name logged to before (a resumed training), if any."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


def open_training_run(
    uri: str,
    cfg: ExperimentConfig | MotionConfig,
    run_name: str,
    tags: Mapping[str, str],
    experiment: str = EXPERIMENT_MULTIMODAL,
    artifact_location: str | None = None,
) -> tuple[str, bool]:
    """Create (or find, when resuming) the run; returns (run_id, resumed). Params are the whole resolved config."""
    client = MlflowClient(uri)
    existing = find_run(client, experiment, run_name)
    if existing is not None:
        client.update_run(existing, status="RUNNING")
        return existing, True
    all_tags = {**cfg.tracking_tags(), "config": cfg.name, "preset": cfg.preset or "", RUN_NAME_TAG: run_name,
                KIND_TAG: "train", "git_commit": git_commit(), **tags}
    run = client.create_run(experiment_id(client, experiment, artifact_location), run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    params = [Param(k, v[:MAX_PARAM_CHARS]) for k, v in cfg.flatten().items()]
    for i in range(0, len(params), _BATCH):
        client.log_batch(run_id, params=params[i : i + _BATCH])
    client.log_text(run_id, cfg.to_yaml(), "config/resolved.yaml")
    return run_id, False


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """The fluent API (log_model) on `uri`, then back: mlflow.set_tracking_uri also exports
    MLFLOW_TRACKING_URI, which would silently send every later run of this process to the same store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None unsets the variable again


class RunLogger:
    """Metrics of one run from any process; a no-op where `run_id` is None (ranks other than 0)."""

    def __init__(self, uri: str | None, run_id: str | None) -> None:
        self.run_id = run_id
        self.client = MlflowClient(uri) if (uri and run_id) else None

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        if self.client is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def tags(self, values: Mapping[str, str]) -> None:
        if self.client is not None:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])
