"""What a sweep trains: a task tells the one sweep driver (`tuning.sweep`) how a trial reads its data and trains
(in its own process on data the driver preloaded, or by its own TorchTrainer), how long its schedule is, which
MLflow experiment it belongs to and which metric ranks it.

The driver owns everything else (Optuna, ASHA, the parent and child runs, resume, the best config), so a fix
to it reaches the 4M alpha sweep and the PhysicsSSM lambda sweep at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from motionlab.config import ExperimentConfig, MotionConfig
from motionlab.tracking.runs import EXPERIMENT_MOTION, EXPERIMENT_MULTIMODAL
from motionlab.training.session import Session

# what every task's data has: `root` (the folder a trial reopens) and `digest` (the MLflow data_manifest tag)
SweepData = Any
SweepConfig = ExperimentConfig | MotionConfig


class SweepTask(ABC):
    """One kind of sweep trial; instances are pickled into every trial, so they hold plain values only."""

    experiment: str
    metric: str = "eval/loss"
    mode: str = "min"

    @abstractmethod
    def open_data(self, root: Path, cfg: SweepConfig) -> SweepData:
        """The data a trial trains on, reopened inside the trial from the folder the driver resolved."""

    @abstractmethod
    def build_trainer(self, cfg: SweepConfig, data: SweepData, drill: dict[str, Any], run_name: str,
                      storage: Path, max_failures: int, callbacks: list) -> TorchTrainer:
        """The trial's TorchTrainer; `drill` holds LoopOptions fields (fault drills, the trial's start time).
        MLflow is written by the driver, so no run id goes to the workers."""

    @abstractmethod
    def schedule(self, cfg: SweepConfig, data: SweepData) -> tuple[int, int]:
        """(total optimizer steps, steps between evaluations): ASHA's rungs and the early-stop tag."""

    @abstractmethod
    def preload(self, data: SweepData, cfg: SweepConfig) -> Any:
        """What an in-process trial trains on, read once by the sweep's driver and shared through the object
        store (the data every trial of the sweep reads: the space changes no data setting)."""

    @abstractmethod
    def train_in_trial(self, cfg: SweepConfig, payload: Any, opts: Any, session: Session) -> dict[str, Any]:
        """Train one worker in the trial's own process on `preload`'s payload; returns the loop's final values."""

    def report_callback(self) -> TuneReportCallback:
        """What forwards the trial's Train reports to Tune (and so to Optuna, ASHA and the child run)."""
        return TuneReportCallback()

    def report_extra(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Metrics a report gains before Tune sees it (in-process trials; a TorchTrainer's go through
        `report_callback`); none by default."""
        return {}

    def describe(self) -> dict[str, str]:
        """Extra params of the sweep's parent run."""
        return {}


class MultimodalTask(SweepTask):
    """A 4M variant on prepared tokens, ranked by its eval loss."""

    experiment = EXPERIMENT_MULTIMODAL

    def open_data(self, root: Path, cfg: SweepConfig) -> SweepData:
        from motionlab.training.data import PreparedData

        return PreparedData.open(root, cfg)

    def build_trainer(self, cfg: SweepConfig, data: SweepData, drill: dict[str, Any], run_name: str,
                      storage: Path, max_failures: int, callbacks: list) -> TorchTrainer:
        from motionlab.training.loop import LoopOptions
        from motionlab.training.runner import build_trainer

        opts = LoopOptions(text_eos=data.text_eos(), **drill)
        return build_trainer(cfg, data, opts, run_name, storage, max_failures, callbacks=callbacks)

    def preload(self, data: SweepData, cfg: SweepConfig) -> Any:
        return data.in_memory(cfg)

    def train_in_trial(self, cfg: SweepConfig, payload: Any, opts: Any, session: Session) -> dict[str, Any]:
        from motionlab.training.loop import train_in_process

        return train_in_process(cfg, replace(opts, text_eos=payload.text_eos), payload, session)

    def schedule(self, cfg: SweepConfig, data: SweepData) -> tuple[int, int]:
        from motionlab.training.schedule import TokenSchedule

        schedule = TokenSchedule.from_config(cfg)
        return schedule.total_steps, schedule.eval_every


OBJECTIVE = "eval/objective"
# weight of the physics total in the objective. Not the config's lambda_physics (0.1): on the smoke data the
# physics total (0.29 untrained, 0.004 to 0.04 trained) is then about 1% of the objective next to a z-scored MSE
# near 2.4, so the sweep would rank by MSE alone; at 1.0 the untrained physics weighs about 12% of it.
DEFAULT_OBJECTIVE_WEIGHT = 1.0


@dataclass(frozen=True)
class Objective:
    """`eval/objective = eval/mse + weight x eval/physics_total`, one fixed yardstick for every trial.

    A trial's own `eval/loss` weighs physics by that trial's `lambda_physics`, so ranking by it would favour the
    smallest lambda whatever the motions look like.
    """

    weight: float = DEFAULT_OBJECTIVE_WEIGHT
    reconstruction: str = "eval/mse"
    physics: str = "eval/physics_total"

    def __call__(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The objective of a report that holds an evaluation; {} for a report without one."""
        if self.reconstruction not in metrics or self.physics not in metrics:
            return {}
        return {OBJECTIVE: float(metrics[self.reconstruction]) + self.weight * float(metrics[self.physics])}

    def describe(self) -> str:
        return f"{self.reconstruction} + {self.weight:g} * {self.physics}"


class ObjectiveReportCallback(TuneReportCallback):
    """Tune's report callback with the objective added to every report that carries an evaluation; it runs in the
    trial's Train controller, so the workers' loop stays the same for trainings and sweeps."""

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.objective = objective

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        with_objective = [{**m, **self.objective(m)} for m in metrics]
        super().after_report(run_context, with_objective, checkpoint)


@dataclass(frozen=True)
class MotionTask(SweepTask):
    """MotionSSM/PhysicsSSM on a KIT-ML-layout folder, ranked by the objective (`eval/objective`)."""

    objective: Objective = Objective()
    experiment: str = EXPERIMENT_MOTION
    metric: str = OBJECTIVE

    def open_data(self, root: Path, cfg: SweepConfig) -> SweepData:
        from motionlab.training.motion_data import MotionData

        return MotionData.open(root, cfg)

    def build_trainer(self, cfg: SweepConfig, data: SweepData, drill: dict[str, Any], run_name: str,
                      storage: Path, max_failures: int, callbacks: list) -> TorchTrainer:
        from motionlab.training.motion_runner import build_motion_trainer
        from motionlab.training.skeleton import LoopOptions

        return build_motion_trainer(cfg, data, LoopOptions(**drill), run_name, storage, max_failures,
                                    callbacks=callbacks)

    def preload(self, data: SweepData, cfg: SweepConfig) -> Any:
        return data.payload()

    def train_in_trial(self, cfg: SweepConfig, payload: Any, opts: Any, session: Session) -> dict[str, Any]:
        from motionlab.training.motion_loop import motion_train_in_process

        return motion_train_in_process(cfg, opts, payload, session)

    def report_extra(self, metrics: dict[str, Any]) -> dict[str, float]:
        return self.objective(metrics)

    def schedule(self, cfg: SweepConfig, data: SweepData) -> tuple[int, int]:
        from motionlab.training.motion_loop import epoch_plan

        plan = epoch_plan(cfg, len(data.train))
        return plan.total_steps, plan.eval_every

    def report_callback(self) -> TuneReportCallback:
        return ObjectiveReportCallback(self.objective)

    def describe(self) -> dict[str, str]:
        return {"objective": self.objective.describe(), "objective_weight": f"{self.objective.weight:g}"}


def default_task(cfg: SweepConfig) -> SweepTask:
    """The task a config implies: a motion config sweeps with the default objective, a 4M one by eval loss."""
    return MotionTask() if isinstance(cfg, MotionConfig) else MultimodalTask()
