"""Alpha sweeps on a real local Ray (with its dashboard), a real Optuna study and real MLflow runs:
parent and child runs, a diverging trial recorded as failed, a killed trial worker resumed from its
checkpoint, and the best config written as YAML. A sweep whose driver dies and is resumed with --resume is
tested as a stopped `ray job` in test_job_submit.py (the same driver runs every kind of sweep)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import load_benchmark
from motionlab.config import load_config
from motionlab.tracking.runs import KIND_TAG, PARENT_TAG, RUN_NAME_TAG, SWEEP_TAG
from motionlab.training.data import PreparedData
from motionlab.tuning.mlflow_trials import FAILURE_TAG, STOPPED_TAG, drop_unsaved_trials
from motionlab.tuning.space import SearchSpace, trial_config, trial_overrides
from motionlab.tuning.sweep import (
    BEST_CONFIG,
    TRIAL_DRIVER_CPU,
    SweepOutcome,
    SweepSettings,
    run_sweep,
    trial_resources,
)
from motionlab.tuning.trial_times import split_wall, train_share
from motionlab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
# 25 steps at the smoke preset (2048 tokens a step), evaluations every 10, checkpoints every 10
QUICK = ["total_tokens=0.05", "warmup_tokens=0.005", "eval_freq=0.02", "save_ckpt_freq=0.02"]


def test_trial_parameters_become_config_overrides() -> None:
    cfg = load_config("m4", preset="smoke")
    space = SearchSpace(alpha_range=(0.2, 5.0))
    keys = set(space.param_space(cfg))
    assert keys == {f"{f}.{m}" for f in ("input_alphas", "target_alphas") for m in cfg.modalities} | {"lr"}
    params = {"input_alphas.coords": 0.25, "target_alphas.tok_rgb_next": 4.5, "lr": 3e-4}
    overrides = trial_overrides(cfg, params)
    assert overrides == ["input_alphas=[1.5, 0.25, 0.5, 0.5]", "target_alphas=[0.5, 0.5, 4.5, 1.5]", "lr=0.0003"]
    trial = trial_config(cfg, params)
    assert trial.input_alphas == [1.5, 0.25, 0.5, 0.5] and trial.lr == 3e-4
    assert trial.preset == "smoke" and trial.model == cfg.model  # everything else is the base config
    assert space.describe(cfg) == {"space.alphas": "loguniform(0.2, 5)", "space.lr": "loguniform(0.0002, 0.02)"}
    # the base config as a trial: its own values, clipped into the space, which turn back into the base config
    base = space.base_point(cfg)
    assert base["input_alphas.tok_rgb"] == 1.5 and base["input_alphas.tok_rgb_next"] == 0.5 and base["lr"] == cfg.lr
    narrow = SearchSpace(alpha_range=(1.0, 5.0), lr_range=(1e-2, 1e-1)).base_point(cfg)
    assert narrow["input_alphas.tok_rgb_next"] == 1.0 and narrow["lr"] == 1e-2
    same = trial_config(cfg, base)
    assert (same.input_alphas, same.target_alphas, same.lr) == (cfg.input_alphas, cfg.target_alphas, cfg.lr)


@pytest.fixture(scope="module")
def smoke_data(ray_with_dashboard, prepared_tokens) -> PreparedData:
    return prepared_tokens("m4", "smoke")


def child_runs(client: MlflowClient, sweep: str) -> list:
    exp = client.get_experiment_by_name("multimodal")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}'")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sweep_records_failures_early_stops_and_the_best_config(smoke_data: PreparedData, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    cfg = load_config("m4", preset="smoke", overrides=QUICK)
    space = SearchSpace(lr_range=(1e-5, 1e-2))
    base = space.base_point(cfg)
    starved = {**base, "lr": 1e-5}  # barely moves in 20 steps: ASHA must stop it at its first rung
    # trial 1 diverges (its loss turns NaN at step 5); trial 2's worker dies at step 15 and resumes at step 10;
    # trial 3 lags trial 2 at the rung of step 20 (two evaluations) and is stopped there
    settings = SweepSettings(name="sw", num_samples=3, seed=1, scheduler="asha", space=space,
                             start_points=(base, base, starved),
                             drills={1: {"poison_at_step": 5}, 2: {"fail_at_step": 15}})
    outcome = run_sweep(cfg, smoke_data, ws, settings)
    assert (outcome.trials, outcome.errored) == (3, 1)
    client = MlflowClient(ws.mlflow_uri)
    runs = child_runs(client, "sw")
    parent = [r for r in runs if r.data.tags[KIND_TAG] == "sweep"]
    trials = sorted((r for r in runs if r.data.tags[KIND_TAG] == "trial"), key=lambda r: r.info.start_time)
    assert len(parent) == 1 and parent[0].info.run_id == outcome.parent_run_id
    assert parent[0].info.status == "FINISHED" and parent[0].data.params["search"] == "tpe"
    assert parent[0].data.params["start_points"] == "3"
    assert len(trials) == 3 and all(t.data.tags[PARENT_TAG] == outcome.parent_run_id for t in trials)
    diverged, killed, stopped = trials
    assert [t.info.status for t in trials] == ["FAILED", "FINISHED", "FINISHED"]
    assert "train loss is nan at step 5" in diverged.data.tags[FAILURE_TAG]
    for t, point in zip(trials, (base, base, starved), strict=True):
        # params are the trial's whole config: the start point's alphas and lr, not the searcher's
        assert json.loads(t.data.params["input_alphas"]) == [round(point[f"input_alphas.{m}"], 6)
                                                             for m in cfg.modalities]
        assert float(t.data.params["lr"]) == pytest.approx(point["lr"], rel=1e-5)

    def eval_steps(run) -> list[int]:
        return [m.step for m in client.get_metric_history(run.info.run_id, "eval/loss")]

    # the killed trial finished its schedule from the checkpoint of step 10
    assert eval_steps(killed) == [0, 10, 20, 25]  # before training, then every 10 steps and at the end
    markers = list((ws.ray_storage / "sweeps" / "sw-trials").glob("*.killed"))
    assert len(markers) == 1 and markers[0].read_text() == "killed at step 15\n"
    assert STOPPED_TAG not in killed.data.tags
    # ASHA stopped the starved trial at its first rung: a result, recorded as such, not a failure
    assert eval_steps(stopped) == [0, 10, 20]
    assert stopped.data.tags[STOPPED_TAG] == "at step 20 of 25"
    assert stopped.data.metrics["eval/loss"] > killed.data.metrics["eval/loss"] + 0.2
    assert outcome.best_loss == pytest.approx(killed.data.metrics["eval/loss"], rel=1e-6)
    # every trial keeps its last report: the diverged one its evaluation before training, the stopped one step 20,
    # the finished one step 25
    reports = sorted((r["step"], r["eval/loss"]) for r in outcome.trial_reports)
    assert reports == [(0, pytest.approx(diverged.data.metrics["eval/loss"], rel=1e-6)),
                       (20, pytest.approx(stopped.data.metrics["eval/loss"], rel=1e-6)),
                       (25, pytest.approx(killed.data.metrics["eval/loss"], rel=1e-6))]
    artifacts = [a.path for a in client.list_artifacts(outcome.parent_run_id)]
    assert BEST_CONFIG in artifacts
    best_cfg = load_config(outcome.best_config)
    assert best_cfg.input_alphas == json.loads(killed.data.params["input_alphas"])
    assert best_cfg.lr == pytest.approx(float(killed.data.params["lr"]))


def test_trials_train_in_process_unless_several_workers() -> None:
    cfg = load_config("m4", preset="smoke")
    assert SweepSettings().in_process(cfg) and SweepSettings(launch="process").in_process(cfg)
    assert not SweepSettings(launch="trainer").in_process(cfg)
    multi = load_config("m4", preset="smoke", overrides=["resources.num_workers=2"])
    assert not SweepSettings().in_process(multi)  # DDP and Train's FailureConfig: a TorchTrainer per trial
    with pytest.raises(ValueError, match="num_workers=2"):
        SweepSettings(launch="process").in_process(multi)
    with pytest.raises(ValueError, match="unknown"):
        SweepSettings(launch="inline").in_process(cfg)
    # an in-process trial holds its worker's resources; a trial that drives a TorchTrainer a token share
    assert trial_resources(cfg, True) == {"CPU": 0.5} and trial_resources(cfg, False) == {"CPU": TRIAL_DRIVER_CPU}
    gpu = load_config("m4", preset="smoke", overrides=["resources.use_gpu=true", "resources.gpus_per_worker=0.5"])
    assert trial_resources(gpu, True) == {"CPU": 0.5, "GPU": 0.5}


def test_a_trials_wall_time_splits_into_phases() -> None:
    marks = {"trial": 102.0, "loop": 110.0, "report": 140.0}
    seconds = {"build": 1.0, "first_batch": 2.0, "first_step": 0.5, "steps": 20.0, "batches": 3.0, "eval": 2.5,
               "checkpoint": 0.2}
    phases = split_wall(100.0, 141.0, seconds, marks)
    assert (phases["tune_start"], phases["framework_start"], phases["after_loop"]) == (2.0, 8.0, 1.0)
    assert phases["training"] == 23.0 and phases["wall"] == 41.0
    assert phases["other"] == pytest.approx(41.0 - 40.2)  # what no phase accounts for
    assert sum(v for k, v in phases.items() if k != "wall") == pytest.approx(41.0)
    assert train_share(phases) == pytest.approx(26.0 / 41.0)
    # a trial without loop marks (it died before its first report) is all start-up
    bare = split_wall(100.0, 105.0, {}, {})
    assert bare["tune_start"] == 0.0 and bare["other"] == 5.0 and train_share(bare) == 0.0


def test_runs_of_trials_tune_never_saved_are_dropped_on_resume(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("multimodal", artifact_location=str(tmp_path / "artifacts"))

    def run(trial: str, status: str, sweep: str = "sw") -> str:
        tags = {KIND_TAG: "trial", SWEEP_TAG: sweep, RUN_NAME_TAG: f"{sweep}-{trial}"}
        run_id = client.create_run(exp, tags=tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status=status)
        return run_id

    finished, running, lost, other_sweep = run("a", "FINISHED"), run("b", "RUNNING"), run("c", "RUNNING"), \
        run("c", "RUNNING", sweep="other")
    assert drop_unsaved_trials(client, exp, "sw", {"a", "b"}) == ["sw-c"]
    left = {r.info.run_id for r in client.search_runs([exp])}
    assert left == {finished, running, other_sweep}  # another sweep's runs are not this sweep's to drop
    gone = client.get_run(lost)
    assert gone.info.lifecycle_stage == "deleted" and gone.info.status == "KILLED"
    assert "last saved state" in gone.data.tags[FAILURE_TAG]


def trial_dirs(ws: Workspace, sweep: str) -> list[Path]:
    folder = ws.ray_storage / "sweeps" / sweep
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("run_trial"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_trials_in_process_and_by_trainer_keep_one_contract(smoke_data: PreparedData, tmp_path: Path) -> None:
    """The same kill drill through both launches: an in-process trial restarts under Tune from the checkpoint it
    reported, a TorchTrainer's worker group under Train; both report the loop's phases."""
    ws = Workspace(tmp_path / "ws").ensure()
    cfg = load_config("m4", preset="smoke", overrides=QUICK)
    client = MlflowClient(ws.mlflow_uri)
    for launch, name in (("process", "sw-proc"), ("trainer", "sw-train")):
        settings = SweepSettings(name=name, num_samples=1, seed=1, scheduler="fifo", launch=launch,
                                 drills={1: {"fail_at_step": 15}})
        outcome = run_sweep(cfg, smoke_data, ws, settings)
        assert (outcome.trials, outcome.errored, outcome.in_process) == (1, 0, launch == "process")
        runs = child_runs(client, name)
        parent = next(r for r in runs if r.data.tags[KIND_TAG] == "sweep")
        trial = next(r for r in runs if r.data.tags[KIND_TAG] == "trial")
        assert parent.data.params["trials_in_process"] == str(launch == "process")
        history = [m.step for m in client.get_metric_history(trial.info.run_id, "eval/loss")]
        assert history == [0, 10, 20, 25] and trial.info.status == "FINISHED"  # resumed from step 10
        assert [m.read_text() for m in (ws.ray_storage / "sweeps" / f"{name}-trials").glob("*.killed")] == \
            ["killed at step 15\n"]
        (phases,) = outcome.trial_times
        assert sum(v for k, v in phases.items() if k != "wall") == pytest.approx(phases["wall"], rel=1e-6)
        assert all(v >= 0 for v in phases.values())
        # the restarted process's phases: from its checkpoint at step 10 to step 25, evaluated at 20 and 25
        assert phases["resume"] > 0 and phases["training"] > 0 and phases["eval"] > 0 and phases["first_batch"] > 0
    # an in-process trial's checkpoints live in its Tune trial folder, the last two kept (10, 20, 25 reported)
    (proc_trial,) = trial_dirs(ws, "sw-proc")
    assert len(list(proc_trial.glob("checkpoint_*"))) == 2


def test_the_phase_benchmark_prints_shares_and_the_ratio() -> None:
    bench = load_benchmark("sweep_phases")

    def outcome(trials: tuple) -> SweepOutcome:
        return SweepOutcome("s", "p", {}, 1.0, Path("best.yaml"), len(trials), 0, trial_times=trials)

    loop = {"steps": 20.0, "eval": 2.0, "first_step": 0.5}
    slow = tuple(split_wall(0.0, 50.0, loop, {"trial": 5.0, "loop": 17.0, "report": 46.0}) for _ in range(2))
    fast = tuple(split_wall(0.0, 25.0, loop, {"trial": 1.0, "loop": 1.1, "report": 24.9}) for _ in range(2))
    arms = [bench.Arm("trainer", outcome(slow), 104.0), bench.Arm("in-process", outcome(fast), 52.0)]
    assert bench.share(slow) == pytest.approx(22.5 / 50) and bench.share(fast) == pytest.approx(22.5 / 25)
    assert bench.summary(arms) == "train_share=0.90 sweep_time_ratio=0.50"
    lines = bench.table(arms)
    framework = next(line for line in lines if line.startswith("framework_start")).split()
    assert framework[1:] == ["12.00", "24.0%", "0.10", "0.4%"]  # mean seconds per trial, share of trial wall
    assert next(line for line in lines if line.startswith("wall")).split()[1:] == ["50.00", "100.0%", "25.00",
                                                                                   "100.0%"]
