"""The PhysicsSSM lambda_physics sweep through the one sweep driver, on a real local Ray (with its dashboard), a
real Optuna study and real MLflow runs: the space and the objective, then the smoke sweep read back from MLflow
(parent and one child per trial in experiment `motion`, the trial's lambda and lr as params, the objective at
every evaluation equal to mse + w x physics total) and the best config loaded again."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from motionlab.config import load_motion_config
from motionlab.tracking.runs import KIND_TAG, PARENT_TAG, SWEEP_TAG
from motionlab.training.motion_data import MotionData, default_motion_root
from motionlab.tuning.mlflow_trials import STOPPED_TAG
from motionlab.tuning.space import PhysicsSpace
from motionlab.tuning.sweep import BEST_CONFIG, SweepSettings, run_sweep
from motionlab.tuning.tasks import OBJECTIVE, MotionTask, Objective
from motionlab.workspace import Workspace

WEIGHT = 0.5  # not the default, so the test sees the weight reach the trials


def test_physics_space_and_objective() -> None:
    cfg = load_motion_config("physics", preset="smoke")
    space = PhysicsSpace()
    assert set(space.param_space(cfg)) == {"lambda_physics", "lr"}
    assert space.describe(cfg) == {"space.lambda_physics": "loguniform(0.001, 10)",
                                   "space.lr": "loguniform(0.0003, 0.03)"}
    assert space.base_point(cfg) == {"lambda_physics": 0.1, "lr": 3e-3}  # the config's own values
    assert PhysicsSpace(lambda_range=(0.5, 2.0)).base_point(cfg)["lambda_physics"] == 0.5  # clipped into the space
    trial = space.trial_config(cfg, {"lambda_physics": 2.5, "lr": 1e-3})
    assert (trial.lambda_physics, trial.lr, trial.preset, trial.epochs) == (2.5, 1e-3, "smoke", cfg.epochs)
    assert trial.model == cfg.model and trial.data == cfg.data  # everything else is the base config
    objective = Objective(weight=WEIGHT)
    assert objective({"eval/mse": 2.0, "eval/physics_total": 0.3, "step": 8}) == {OBJECTIVE: pytest.approx(2.15)}
    assert objective({"train/loss": 1.0, "step": 3}) == {}  # a report without an evaluation has no objective
    assert objective.describe() == "eval/mse + 0.5 * eval/physics_total"


@pytest.fixture(scope="module")
def smoke_sweep(ray_with_dashboard, tmp_path_factory):
    """Three smoke trials (6 epochs of 56 generated motions: 24 steps, evaluated every 8): the config's own
    lambda and lr first, then two TPE start-up picks; ASHA may stop one at its rung of step 16."""
    ws = Workspace(tmp_path_factory.mktemp("ws-physweep")).ensure()
    cfg = load_motion_config("physics", preset="smoke")
    data = MotionData.open(default_motion_root(ws, cfg), cfg)
    settings = SweepSettings(name="phys", num_samples=3, seed=0, space=PhysicsSpace())
    outcome = run_sweep(cfg, data, ws, settings, MotionTask(Objective(weight=WEIGHT)))
    return cfg, ws, outcome


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smoke_sweep_records_trials_and_the_best_config(smoke_sweep) -> None:
    cfg, ws, outcome = smoke_sweep
    assert (outcome.trials, outcome.errored, outcome.metric) == (3, 0, OBJECTIVE)
    client = MlflowClient(ws.mlflow_uri)
    exp = client.get_experiment_by_name("motion")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = 'phys'")
    parent = [r for r in runs if r.data.tags[KIND_TAG] == "sweep"]
    trials = sorted((r for r in runs if r.data.tags[KIND_TAG] == "trial"), key=lambda r: r.info.start_time)
    assert len(parent) == 1 and parent[0].info.run_id == outcome.parent_run_id
    assert parent[0].info.status == "FINISHED" and parent[0].data.tags["model"] == "PhysicsSSM"
    p = parent[0].data.params
    assert (p["metric"], p["objective_weight"], p["space.lambda_physics"]) == (OBJECTIVE, "0.5",
                                                                                 "loguniform(0.001, 10)")
    assert len(trials) == 3 and all(t.data.tags[PARENT_TAG] == outcome.parent_run_id for t in trials)
    assert all(t.info.status == "FINISHED" and t.data.tags["model"] == "PhysicsSSM" for t in trials)

    # params are each trial's whole config: the base config's lambda and lr first, then Optuna's picks
    lambdas = [float(t.data.params["lambda_physics"]) for t in trials]
    lrs = [float(t.data.params["lr"]) for t in trials]
    assert (lambdas[0], lrs[0]) == (0.1, 3e-3)
    assert all(1e-3 <= lam <= 10 for lam in lambdas) and len(set(lambdas)) == 3
    assert all(3e-4 <= lr <= 3e-2 for lr in lrs) and all(t.data.params["epochs"] == "6" for t in trials)

    def history(run_id: str, key: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(run_id, key)}

    for t in trials:
        objective = history(t.info.run_id, OBJECTIVE)
        mse, physics = history(t.info.run_id, "eval/mse"), history(t.info.run_id, "eval/physics_total")
        # evaluated untrained, then every 2 epochs (8 steps), the last evaluation carried by the checkpoint report
        # of step 12; a trial ASHA stopped ends at its rung of step 16
        assert sorted(objective) == sorted(mse) and sorted(objective) in ([0, 8, 12, 16], [0, 8, 12, 16, 24])
        assert t.data.tags.get(STOPPED_TAG) == (None if max(objective) == 24 else "at step 16 of 24")
        for step, value in objective.items():
            assert value == pytest.approx(mse[step] + WEIGHT * physics[step], rel=1e-9)
        # the trial's own eval/loss weighs physics by its own lambda: not the sweep's yardstick
        loss = history(t.info.run_id, "eval/loss")
        lam = float(t.data.params["lambda_physics"])
        assert loss[8] == pytest.approx(mse[8] + lam * physics[8], rel=1e-6)

    # the best trial: the lowest last objective, whose value is its mse + w x physics total
    finished = [t for t in trials if max(history(t.info.run_id, OBJECTIVE)) == 24]
    best = min(finished, key=lambda t: t.data.metrics[OBJECTIVE])
    m = best.data.metrics
    assert outcome.best_loss == pytest.approx(m[OBJECTIVE], rel=1e-9)
    assert outcome.best_loss == pytest.approx(m["eval/mse"] + WEIGHT * m["eval/physics_total"], rel=1e-9)
    assert outcome.best_params["lambda_physics"] == pytest.approx(float(best.data.params["lambda_physics"]), rel=1e-5)

    # the best config: written beside the sweep and on the parent run, and loadable as a motion config
    assert outcome.best_config == ws.root / "sweeps" / "phys" / BEST_CONFIG
    assert BEST_CONFIG in [a.path for a in client.list_artifacts(outcome.parent_run_id)]
    best_cfg = load_motion_config(outcome.best_config)
    assert best_cfg.model_kind == "PhysicsSSM" and best_cfg.epochs == cfg.epochs and best_cfg.model == cfg.model
    assert best_cfg.lambda_physics == pytest.approx(float(best.data.params["lambda_physics"]), rel=1e-5)
    assert best_cfg.lr == pytest.approx(float(best.data.params["lr"]), rel=1e-5)
    print(f"best lambda_physics {best_cfg.lambda_physics:.4g}, lr {best_cfg.lr:.3g}, {OBJECTIVE} "
          f"{outcome.best_loss:.4f} (mse {m['eval/mse']:.4f}, physics_total {m['eval/physics_total']:.4f})")


def test_mlflow_stays_in_the_workspace(smoke_sweep) -> None:
    _, ws, _ = smoke_sweep
    assert ws.mlflow_uri == f"sqlite:///{ws.root / 'mlflow.db'}" and (ws.root / "mlflow.db").is_file()
    assert not (Path.cwd() / "mlruns").exists()
