"""Driver side of a text-to-motion training: the MLflow run, the TorchTrainer, the logged model, then evaluation.

The same conventions as the 4M runner (and its helpers): a run is named once (model plus time, or
`--run-name`); the Ray Train run and the MLflow run share the name, so starting the same name again resumes
both, Ray Train from its last checkpoint in the workspace and MLflow by appending to the run it finds by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import ray
import torch
from ray.train.torch import TorchTrainer

from motionlab.config import MotionConfig
from motionlab.tracking.runs import (
    EXPERIMENT_MOTION,
    RunLogger,
    using_tracking_uri,
)
from motionlab.training.checkpoint import META_FILE, MODEL_FILE, read_state
from motionlab.training.motion_data import MotionData
from motionlab.training.motion_evaluation import EVALUATOR_DIR, MotionEvalSettings, finish_motion_run
from motionlab.training.motion_loop import VOCAB_FILE, load_motion_model, motion_train_loop
from motionlab.training.runner import TrainOutcome, fit_to_checkpoint, open_run, run_config, scaling_config
from motionlab.training.skeleton import LoopOptions
from motionlab.workspace import Workspace


@dataclass(frozen=True)
class MotionTrainSettings:
    """How a motion training runs (the config says what it learns)."""

    run_name: str | None = None
    experiment: str = EXPERIMENT_MOTION
    max_failures: int = 2  # worker-group restarts from the last checkpoint before the run fails
    local_mode: bool = False  # ScalingConfig(num_workers=0): the loop runs in this process (fast tests)
    log_model: bool = True  # the final checkpoint as an MLflow logged model
    evaluate: bool = True  # test-split metrics, the comparison table, PyBullet playback and GIFs after training
    evaluation: MotionEvalSettings = field(default_factory=MotionEvalSettings)
    fail_at_step: int | None = None  # fault drill, see LoopOptions
    fail_marker: str | None = None
    poison_at_step: int | None = None  # fault drill, see LoopOptions
    extra_tags: dict[str, str] = field(default_factory=dict)


def build_motion_trainer(cfg: MotionConfig, data: MotionData, opts: LoopOptions, run_name: str, storage: Path,
                         max_failures: int, local_mode: bool = False,
                         callbacks: list | None = None) -> TorchTrainer:
    """The TorchTrainer of one motion run; the same `(storage, run_name)` resumes from its last checkpoint."""
    payload = data.payload()
    # one copy in the object store (per node) instead of one inside every worker's pickled train function
    shipped = ray.put(payload) if (ray.is_initialized() and not local_mode) else payload
    return TorchTrainer(
        motion_train_loop,
        train_loop_config={"cfg": cfg, "opts": opts, "data": shipped},
        scaling_config=scaling_config(cfg, local_mode),
        run_config=run_config(run_name, storage, max_failures, callbacks),
    )


def log_final_model(checkpoint: Path, uri: str, run_id: str) -> None:
    """The final weights as a logged model named `model`, and the checkpoint's weights, meta and vocabulary under
    `checkpoint/` (what `load_motion_model` reads back without unpickling code)."""
    client = mlflow.tracking.MlflowClient(uri)
    for name in (MODEL_FILE, META_FILE, VOCAB_FILE):
        client.log_artifact(run_id, str(checkpoint / name), "checkpoint")
    model, _ = load_motion_model(checkpoint)
    step = read_state(checkpoint).step
    with using_tracking_uri(uri), mlflow.start_run(run_id=run_id):
        # pickle: the pt2 default would trace forward() and needs an example batch
        mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "motionlab"],
                                 step=step)


def fit_motion(cfg: MotionConfig, data: MotionData, workspace: Workspace,
               settings: MotionTrainSettings = MotionTrainSettings()) -> TrainOutcome:
    """Train (or resume) one MotionSSM/PhysicsSSM run; Ray must be initialised unless `settings.local_mode`."""
    uri = workspace.mlflow_uri
    detail = f": {cfg.model_kind} on {len(data.train)} train and {len(data.val)} val motions from {data.root}"
    run_name, run_id, resumed = open_run(cfg, data, workspace, settings, detail)
    opts = LoopOptions(mlflow_uri=uri, run_id=run_id, fail_at_step=settings.fail_at_step,
                       fail_marker=settings.fail_marker, poison_at_step=settings.poison_at_step,
                       keep_dir=str(workspace.ray_storage / run_name / "final") if settings.local_mode else None)
    trainer = build_motion_trainer(cfg, data, opts, run_name, workspace.ray_storage, settings.max_failures,
                                   settings.local_mode)
    logger = RunLogger(uri, run_id)
    result = fit_to_checkpoint(trainer, run_name, logger)
    checkpoint = Path(opts.keep_dir) if opts.keep_dir else Path(result.checkpoint.path)
    logger.tags({"checkpoint": str(checkpoint)})
    if settings.log_model:
        log_final_model(checkpoint, uri, run_id)
    outcome = TrainOutcome(run_name, run_id, resumed, checkpoint, dict(result.return_value or result.metrics or {}))
    if settings.evaluate:
        try:
            outcome.metrics.update(finish_motion_run(cfg, data, checkpoint, uri, run_id,
                                                     workspace.root / EVALUATOR_DIR, settings.evaluation))
        except Exception:
            logger.client.set_terminated(run_id, status="FAILED")  # not left RUNNING in the UI
            raise
    logger.client.set_terminated(run_id, status="FINISHED")
    return outcome
