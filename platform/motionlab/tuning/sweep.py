"""Sweeps (4M alphas and lr, PhysicsSSM lambda_physics and lr): Ray Tune trials that each run a `TorchTrainer`.

A trial of a config with one worker (or none) trains inside its own Tune trial process (`launch="auto"`): the
driver reads the data once and hands it to every trial through the object store, Tune reuses the trial
process (torch and the project imported once), a killed trial restarts from its last reported checkpoint
under Tune's `FailureConfig`, and the loop is the same skeleton with the same checkpoints and reports. A
multi-worker trial (or `launch="trainer"`) builds its own TorchTrainer with `TuneReportCallback`, under a
Train run name fixed by the trial id, so a restarted worker group resumes from its own checkpoint (Train V2
cannot be handed to `Tuner` directly). Optuna (TPE, seeded) proposes, ASHA stops trials whose metric lags,
and the sweep is one MLflow parent run with one child run per trial. The best trial's whole config is written as YAML.
What a trial trains and which metric ranks it come from a `SweepTask` (`tuning.tasks`), the search space
from `SweepSettings.space`; this module is the one driver for every kind of sweep.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from motionlab.tracking.runs import (
    KIND_TAG,
    SWEEP_TAG,
    RunLogger,
    experiment_id,
    git_commit,
)
from motionlab.tuning.mlflow_trials import TrialRuns, drop_unsaved_trials, failure_file, root_cause, trial_run_name
from motionlab.tuning.space import PhysicsSpace, SearchSpace
from motionlab.tuning.tasks import SweepConfig, SweepData, SweepTask, default_task
from motionlab.tuning.trial_times import TrialTimes
from motionlab.workspace import Workspace

METRIC, MODE = "eval/loss", "min"  # the 4M sweep's; a task names its own
BEST_CONFIG = "best_config.yaml"
TRIAL_DRIVER_CPU = 0.01
LAUNCHES = ("auto", "process", "trainer")
CHECKPOINTS_KEPT = 2  # per in-process trial, as a training run keeps


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep searches; what each trial trains is the config."""

    # default: sweep-<variant or model>-<time>; an existing name with resume=True continues it
    name: str | None = None
    num_samples: int = 8
    max_concurrent: int = 1
    seed: int = 0
    search: str = "tpe"  # "tpe" (Optuna TPE) or "random" (Optuna's random sampler: the baseline)
    scheduler: str = "asha"  # "asha" or "fifo" (every trial runs to the end)
    space: SearchSpace | PhysicsSpace = field(default_factory=SearchSpace)
    # trials evaluated before the searcher proposes any (Optuna's enqueued trials); None: the base config's own
    # alphas and lr, so every sweep also measures the config it set out to improve
    start_points: tuple[dict[str, float], ...] | None = None
    # random trials before TPE models the results; None: a third of the budget, 3 to 10 (Optuna's own default of
    # 10 left a sweep of 8 trials purely random)
    tpe_startup_trials: int | None = None
    resume: bool = False
    trial_max_failures: int = 1  # worker-group restarts of one trial from its checkpoint
    experiment: str | None = None  # None: the task's (multimodal for 4M, motion for the SSMs)
    # fault drills by trial number (the trailing index of the Tune trial id): {1: {"poison_at_step": 5}}
    drills: dict[int, dict[str, Any]] = field(default_factory=dict)
    # where a trial trains: "auto" (in its own process when the config has at most one worker, else a
    # TorchTrainer), "process" or "trainer"
    launch: str = "auto"
    reuse_actors: bool = True  # a finished trial's process serves the next trial of the same resources

    def in_process(self, cfg: SweepConfig) -> bool:
        """True when trials train inside their own Tune process."""
        if self.launch not in LAUNCHES:
            raise ValueError(f"sweep launch '{self.launch}': unknown; use one of {', '.join(LAUNCHES)}")
        if self.launch == "process" and cfg.resources.num_workers > 1:
            raise ValueError(f"sweep launch 'process' runs one worker, but the config asks for "
                             f"resources.num_workers={cfg.resources.num_workers}; fix: use launch 'auto' or 'trainer'")
        return self.launch == "process" or (self.launch == "auto" and cfg.resources.num_workers <= 1)


@dataclass
class SweepOutcome:
    name: str
    parent_run_id: str
    best_params: dict[str, float]
    best_loss: float  # the best trial's value of `metric`
    best_config: Path
    trials: int
    errored: int
    metric: str = METRIC
    # every trial's last report ({metric, "step"}), in Tune's order; ASHA-stopped trials end at earlier steps
    trial_reports: tuple[dict[str, float], ...] = ()
    # where each trial's wall time went ({phase: seconds} and "wall", `tuning.trial_times`), in creation order;
    # empty for a resumed sweep
    trial_times: tuple[dict[str, float], ...] = ()
    in_process: bool = True  # whether trials trained in their own Tune process


def default_sweep_name(cfg: SweepConfig) -> str:
    preset = f"-{cfg.preset}" if cfg.preset else ""
    return f"sweep-{cfg.run_label}{preset}-{datetime.now():%Y%m%d-%H%M%S}"


def _trial_number(trial_id: str) -> int:
    """1-based order in which the searcher created this trial, read from Tune's trial folder name
    (`<trainable>_<trial id>_<number>_<params>`); -1 where the name does not follow that shape."""
    name = Path(tune.get_context().get_trial_dir()).name
    head = name.split(f"{trial_id}_", 1)[-1].split("_", 1)[0]
    return int(head) if head.isdigit() else -1


def run_trial(params: dict[str, float], base: SweepConfig, data_root: str, storage: str, sweep: str,
              max_failures: int, drills: dict[int, dict[str, Any]], task: SweepTask,
              space: SearchSpace | PhysicsSpace, payload: Any = None) -> None:
    """One trial: the base config with the trial's parameters, trained in this process on `payload` (the
    driver's preloaded data) or, with no payload, by its own TorchTrainer."""
    started = time.time()
    cfg = space.trial_config(base, params)
    trial_id = tune.get_context().get_trial_id()
    drill = dict(drills.get(_trial_number(trial_id), {}))
    if "fail_at_step" in drill:  # the kill drill fires once per trial: its marker lives beside the trial
        drill.setdefault("fail_marker", str(Path(storage) / f"{trial_id}.killed"))
    try:
        if payload is not None:
            returned = _train_in_process(cfg, payload, drill, started, task, Path(storage), trial_id)
        else:
            returned = _train_with_trainer(cfg, data_root, drill, started, task, Path(storage),
                                           trial_run_name(sweep, trial_id), max_failures)
        if "diverged" in returned:
            raise FloatingPointError(returned["diverged"])
    except Exception as e:
        # the driver's TrialRuns records the root cause on the trial's MLflow run
        failure_file(Path(storage), trial_id).write_text(root_cause(e))
        raise


def _train_in_process(cfg: SweepConfig, payload: Any, drill: dict[str, Any], started: float, task: SweepTask,
                      storage: Path, trial_id: str) -> dict[str, Any]:
    from motionlab.training.session import TuneSession
    from motionlab.training.skeleton import LoopOptions

    diverged = storage / f"{trial_id}.diverged"
    if diverged.exists():
        # Tune restarts a failed in-process trial, but a NaN comes back after every restart: fail at once
        return {"diverged": diverged.read_text()}
    session = TuneSession(cfg.resources.use_gpu, extra=task.report_extra)
    returned = task.train_in_trial(cfg, payload, LoopOptions(started_at=started, **drill), session)
    if "diverged" in returned:
        diverged.write_text(returned["diverged"])
    return returned


def _train_with_trainer(cfg: SweepConfig, data_root: str, drill: dict[str, Any], started: float, task: SweepTask,
                        storage: Path, run_name: str, max_failures: int) -> dict[str, Any]:
    data = task.open_data(Path(data_root), cfg)
    # MLflow is written by the driver's TrialRuns
    trainer = task.build_trainer(cfg, data, {**drill, "started_at": started}, run_name, storage, max_failures,
                                 callbacks=[task.report_callback()])
    return trainer.fit().return_value or {}


def trial_resources(cfg: SweepConfig, in_process: bool) -> dict[str, float]:
    """What Tune reserves for one trial: the one worker's CPUs and GPUs when it trains in the trial's process;
    a token share otherwise (the trial only drives its TorchTrainer, whose workers hold the real resources;
    Tune refuses an empty request)."""
    if not in_process:
        return {"CPU": TRIAL_DRIVER_CPU}
    r = cfg.resources
    return {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.use_gpu else {})}


def _start_points(settings: SweepSettings, cfg: SweepConfig) -> list[dict[str, float]]:
    if settings.start_points is None:
        return [settings.space.base_point(cfg)]
    return [dict(p) for p in settings.start_points]


def _searcher(settings: SweepSettings, cfg: SweepConfig, task: SweepTask) -> OptunaSearch:
    if settings.search == "tpe":
        startup = settings.tpe_startup_trials or min(10, max(3, settings.num_samples // 3))
        sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=startup)
    elif settings.search == "random":
        sampler = optuna.samplers.RandomSampler(seed=settings.seed)
    else:
        raise ValueError(f"unknown search '{settings.search}'; use 'tpe' or 'random'")
    return OptunaSearch(metric=task.metric, mode=task.mode, sampler=sampler,
                        points_to_evaluate=_start_points(settings, cfg))


def _scheduler(settings: SweepSettings, task: SweepTask, total_steps: int, eval_every: int):
    if settings.scheduler == "fifo":
        return FIFOScheduler()
    # rungs in optimizer steps; the first rung after two evaluations, so no trial is judged on warm-up alone
    return ASHAScheduler(time_attr="step", metric=task.metric, mode=task.mode, max_t=total_steps,
                         grace_period=min(2 * eval_every, total_steps), reduction_factor=2)


def _parent_run(client: MlflowClient, settings: SweepSettings, task: SweepTask, cfg: SweepConfig, name: str,
                workspace: Workspace, data: SweepData) -> str:
    """The sweep's parent run, found again by name when the sweep resumes."""
    exp_id = experiment_id(client, settings.experiment or task.experiment, workspace.mlflow_artifacts)
    found = client.search_runs([exp_id], filter_string=f"tags.`{SWEEP_TAG}` = '{name}' and tags.`{KIND_TAG}` = 'sweep'",
                               max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    tags = {KIND_TAG: "sweep", SWEEP_TAG: name, **cfg.tracking_tags(), "config": cfg.name,
            "preset": cfg.preset or "", "git_commit": git_commit(), "data_manifest": data.digest}
    run = client.create_run(exp_id, run_name=name, tags=tags)
    params = {"search": settings.search, "scheduler": settings.scheduler, "num_samples": str(settings.num_samples),
              "max_concurrent": str(settings.max_concurrent), "seed": str(settings.seed), "metric": task.metric,
              "start_points": str(len(_start_points(settings, cfg))),
              "trials_in_process": str(settings.in_process(cfg)),
              **settings.space.describe(cfg), **task.describe()}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.log_text(run.info.run_id, cfg.to_yaml(), "config/base.yaml")
    return run.info.run_id


def run_sweep(cfg: SweepConfig, data: SweepData, workspace: Workspace,
              settings: SweepSettings = SweepSettings(), task: SweepTask | None = None) -> SweepOutcome:
    """Run (or resume) a sweep; Ray must be initialised with its dashboard (Train cleans up through it).

    `task` None: the config's own (`tuning.tasks.default_task`): a 4M config by eval loss, a motion config by
    the default objective.
    """
    task = task or default_task(cfg)
    experiment = settings.experiment or task.experiment
    name = settings.name or default_sweep_name(cfg)
    uri = workspace.mlflow_uri
    client = MlflowClient(uri)
    root = workspace.ray_storage / "sweeps"
    path = root / name
    restoring = settings.resume and tune.Tuner.can_restore(str(path))
    if settings.resume and not restoring:
        print(f"no sweep state at {path}; starting sweep {name} afresh")
    parent = _parent_run(client, settings, task, cfg, name, workspace, data)
    total_steps, eval_every = task.schedule(cfg, data)
    trials_storage = workspace.ray_storage / "sweeps" / f"{name}-trials"
    trials_storage.mkdir(parents=True, exist_ok=True)
    in_process = settings.in_process(cfg)
    # the data every trial trains on, read once here: with_parameters puts it in the object store once
    payload = task.preload(data, cfg) if in_process else None
    trainable = tune.with_parameters(run_trial, base=cfg, data_root=str(data.root), storage=str(trials_storage),
                                     sweep=name, max_failures=settings.trial_max_failures, drills=settings.drills,
                                     task=task, space=settings.space, payload=payload)
    trainable = tune.with_resources(trainable, trial_resources(cfg, in_process))
    where = "in their own processes" if in_process else "by their own TorchTrainers"
    print(f"{'resuming' if restoring else 'starting'} sweep {name}: {settings.num_samples} trials of "
          f"{cfg.run_label} trained {where}, {settings.search} + {settings.scheduler}, MLflow parent run {parent} "
          f"({uri})")
    times = TrialTimes()
    if restoring:
        saved = {t.trial_id for t in tune.ExperimentAnalysis(str(path)).trials}
        exp_id = experiment_id(client, experiment, workspace.mlflow_artifacts)
        for dropped in drop_unsaved_trials(client, exp_id, name, saved):
            print(f"run {dropped}: its trial started after the sweep's last saved state; deleted, its place runs "
                  "again as a new trial")
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        callback = TrialRuns(uri, experiment, parent, name, cfg,
                             {"data_manifest": data.digest, "data_dir": str(data.root)}, total_steps,
                             trials_storage, workspace.mlflow_artifacts, space=settings.space)
        searcher = ConcurrencyLimiter(_searcher(settings, cfg, task), settings.max_concurrent)
        tuner = tune.Tuner(
            trainable,
            param_space=settings.space.param_space(cfg),
            tune_config=tune.TuneConfig(search_alg=searcher,
                                        scheduler=_scheduler(settings, task, total_steps, eval_every),
                                        num_samples=settings.num_samples,
                                        max_concurrent_trials=settings.max_concurrent,
                                        reuse_actors=settings.reuse_actors),
            run_config=tune.RunConfig(
                name=name, storage_path=str(root), callbacks=[callback, times],
                # an in-process trial's restarts are Tune's; a TorchTrainer's worker group restarts under Train's
                failure_config=tune.FailureConfig(max_failures=settings.trial_max_failures if in_process else 0),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT)),
        )
    results = tuner.fit()
    outcome = _finish(client, results, cfg, name, parent, workspace, task, settings.space)
    outcome.trial_times = tuple(times.table().values())
    outcome.in_process = in_process
    return outcome


def _finish(client: MlflowClient, results: tune.ResultGrid, cfg: SweepConfig, name: str, parent: str,
            workspace: Workspace, task: SweepTask, space: SearchSpace | PhysicsSpace) -> SweepOutcome:
    """Best trial -> YAML config beside the sweep and on the parent run; counts and best metric as metrics."""
    metric = task.metric
    errored = sum(1 for r in results if r.error is not None)
    logger = RunLogger(workspace.mlflow_uri, parent)
    try:
        best = results.get_best_result(metric=metric, mode=task.mode, scope="last", filter_nan_and_inf=True)
    except RuntimeError:
        best = None
    if best is None or metric not in (best.metrics or {}):
        logger.tags({"motionlab.failure": f"no trial reported {metric}"})
        client.set_terminated(parent, status="FAILED")
        raise RuntimeError(f"sweep {name}: none of {len(results)} trials reported {metric}; see the Tune log")
    params = {k: float(v) for k, v in best.config.items()}
    best_cfg = space.trial_config(cfg, params)
    out = workspace.root / "sweeps" / name / BEST_CONFIG
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# best trial of sweep {name}: {metric} {best.metrics[metric]:.4f}\n"
    out.write_text(header + best_cfg.to_yaml())
    client.log_artifact(parent, str(out))
    logger.metrics({f"best/{metric}": float(best.metrics[metric]), "trials": float(len(results)),
                    "trials_failed": float(errored)}, step=0)
    logger.tags({"best_params": json.dumps({k: round(v, 6) for k, v in params.items()})})
    client.set_terminated(parent, status="FINISHED")
    print(f"sweep {name}: best {metric} {best.metrics[metric]:.4f} with "
          + ", ".join(f"{k}={v:.4g}" for k, v in params.items()) + f"; config written to {out}")
    reports = tuple({metric: float(r.metrics[metric]), "step": float(r.metrics.get("step", -1))}
                    for r in results if r.metrics and metric in r.metrics)
    return SweepOutcome(name, parent, params, float(best.metrics[metric]), out, len(results), errored, metric,
                        reports)
