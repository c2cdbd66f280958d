"""Driver side of a 4M training: the MLflow run, the TorchTrainer, then evaluation and artifacts.

A run is named once (variant plus time, or `--run-name`); the Ray Train run and the MLflow run share that
name, so starting the same name again resumes both: Ray Train from its last checkpoint in the workspace,
MLflow by appending to the run it finds through the `motionlab.run_name` tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from motionlab.config import ExperimentConfig, MotionConfig
from motionlab.tracking.runs import EXPERIMENT_MULTIMODAL, RunLogger, default_run_name, open_training_run
from motionlab.training.data import PreparedData
from motionlab.training.loop import LoopOptions, train_loop
from motionlab.workspace import Workspace

CHECKPOINTS_KEPT = 2
LIGHT_CPU = 0.25  # Parquet read tasks: a fraction, so they never wait behind the training workers


@dataclass(frozen=True)
class TrainSettings:
    """How a training runs (the config says what it learns)."""

    run_name: str | None = None
    experiment: str = EXPERIMENT_MULTIMODAL
    max_failures: int = 2  # worker-group restarts from the last checkpoint before the run fails
    local_mode: bool = False  # ScalingConfig(num_workers=0): the loop runs in this process (fast tests)
    evaluate: bool = True
    samples: int = 8  # generated samples (GIFs) after training
    fail_at_step: int | None = None  # fault drill, see LoopOptions
    fail_marker: str | None = None
    poison_at_step: int | None = None  # fault drill, see LoopOptions
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    run_name: str
    run_id: str
    resumed: bool
    checkpoint: Path
    metrics: dict[str, Any]


def scaling_config(cfg: ExperimentConfig | MotionConfig, local_mode: bool = False) -> ray.train.ScalingConfig:
    """Workers and their resources from the config's `resources` section."""
    r = cfg.resources
    if local_mode:
        return ray.train.ScalingConfig(num_workers=0)
    per_worker: dict[str, float] = {"CPU": r.cpus_per_worker}
    if r.use_gpu:
        per_worker["GPU"] = r.gpus_per_worker
    return ray.train.ScalingConfig(num_workers=r.num_workers, use_gpu=r.use_gpu, resources_per_worker=per_worker)


def split_datasets(cfg: ExperimentConfig, data: PreparedData) -> dict[str, ray.data.Dataset]:
    """The train split as a Ray Data dataset holding only the model's token columns (rank 0 reads the small eval
    split itself, see `loop.eval_batches`)."""
    columns = list(cfg.modalities)
    # the training log line carries progress; per-epoch dataset bars in every worker would bury it
    ray.data.DataContext.get_current().enable_progress_bars = False
    # Not ray.data.from_arrow, though it starts faster: its metadata tasks ask for a whole CPU each and hang
    # when trial workers hold fractions of a small node (a sweep's third trial waited forever)
    return {"train": ray.data.read_parquet(str(data.split_dir("train")), num_cpus=LIGHT_CPU).select_columns(columns)}


def run_config(run_name: str, storage: Path, max_failures: int, callbacks: list | None = None) -> ray.train.RunConfig:
    """Train's run identity and recovery: the same `(storage, run_name)` resumes from the run's last checkpoint,
    and a failed worker group restarts from it up to `max_failures` times."""
    return ray.train.RunConfig(
        name=run_name,
        storage_path=str(storage),
        failure_config=ray.train.FailureConfig(max_failures=max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        callbacks=callbacks or [],
    )


def build_trainer(cfg: ExperimentConfig, data: PreparedData, opts: LoopOptions, run_name: str, storage: Path,
                  max_failures: int, local_mode: bool = False, callbacks: list | None = None) -> TorchTrainer:
    """The TorchTrainer of one run; the same `(storage, run_name)` resumes from that run's last checkpoint."""
    return TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg, "opts": opts, "data": data},
        scaling_config=scaling_config(cfg, local_mode),
        datasets=split_datasets(cfg, data),
        # one worker reads the whole split in its own process; splitting would start a coordinator actor for it
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"] if cfg.resources.num_workers > 1 else []),
        run_config=run_config(run_name, storage, max_failures, callbacks),
    )


def fit_to_checkpoint(trainer: TorchTrainer, run_name: str, logger: RunLogger) -> ray.train.Result:
    """Run the trainer to its end. A crash, a diverged loss or a run that saved nothing marks the MLflow run
    FAILED (with the reason for a divergence) and raises; otherwise the result has its final checkpoint."""
    run_id = logger.run_id
    try:
        result = trainer.fit()
    except Exception:
        logger.client.set_terminated(run_id, status="FAILED")
        raise
    returned = dict(result.return_value or {})
    if "diverged" in returned:
        logger.tags({"motionlab.failure": f"FloatingPointError: {returned['diverged']}"})
        logger.client.set_terminated(run_id, status="FAILED")
        raise FloatingPointError(f"run {run_name}: {returned['diverged']}")
    if result.checkpoint is None:
        logger.client.set_terminated(run_id, status="FAILED")
        raise RuntimeError(f"run {run_name} ended without a checkpoint; see the log above")
    return result


def open_run(cfg: Any, data: Any, workspace: Workspace, settings: Any, detail: str = "") -> tuple[str, str, bool]:
    """The run's name, MLflow run id and whether it resumes (found again by name), announced in one line.

    `data` carries `digest` and `root`; `settings` carries `run_name`, `experiment` and `extra_tags` (both the
    4M and the motion settings do).
    """
    uri = workspace.mlflow_uri
    run_name = settings.run_name or default_run_name(cfg)
    tags = {"data_manifest": data.digest, "data_dir": str(data.root), **settings.extra_tags}
    run_id, resumed = open_training_run(uri, cfg, run_name, tags, experiment=settings.experiment,
                                        artifact_location=workspace.mlflow_artifacts)
    print(f"{'resuming' if resumed else 'starting'} run {run_name} (MLflow run {run_id}, experiment "
          f"{settings.experiment}, tracking {uri}){detail}")
    return run_name, run_id, resumed


def fit(cfg: ExperimentConfig, data: PreparedData, workspace: Workspace,
        settings: TrainSettings = TrainSettings()) -> TrainOutcome:
    """Train (or resume) one run; Ray must be initialised."""
    uri = workspace.mlflow_uri
    run_name, run_id, resumed = open_run(cfg, data, workspace, settings)
    opts = LoopOptions(mlflow_uri=uri, run_id=run_id, text_eos=data.text_eos(),
                       fail_at_step=settings.fail_at_step, fail_marker=settings.fail_marker,
                       poison_at_step=settings.poison_at_step,
                       keep_dir=str(workspace.ray_storage / run_name / "final") if settings.local_mode else None)
    trainer = build_trainer(cfg, data, opts, run_name, workspace.ray_storage, settings.max_failures,
                            settings.local_mode)
    logger = RunLogger(uri, run_id)
    result = fit_to_checkpoint(trainer, run_name, logger)
    checkpoint = Path(opts.keep_dir) if opts.keep_dir else Path(result.checkpoint.path)
    logger.tags({"checkpoint": str(checkpoint)})
    outcome = TrainOutcome(run_name, run_id, resumed, checkpoint, dict(result.return_value or result.metrics or {}))
    if settings.evaluate:
        from motionlab.training.evaluation import finish_run

        outcome.metrics.update(finish_run(cfg, data, checkpoint, uri, run_id, samples=settings.samples))
    logger.client.set_terminated(run_id, status="FINISHED")
    return outcome
