"""MotionSSM and PhysicsSSM training through the shared train-loop skeleton: the epoch schedule and OneCycleLR,
local mode for both models, a real local Ray with two DDP workers whose rank 0 is killed and recovers from its
checkpoint, resume by name after a crash through the entry script, and the MLflow runs read back. The evaluation
after training is off here (tests/test_motion_evaluation.py covers it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import printed_until, run_script
from motionlab.config import load_motion_config
from motionlab.models.motion import make_scheduler, steps_total
from motionlab.models.physics_ssm import PhysicsSSM
from motionlab.tracking.runs import RUN_NAME_TAG, find_run
from motionlab.training.checkpoint import read_state
from motionlab.training.motion_data import MotionData, dataset_fingerprint, default_motion_root, epoch_rows
from motionlab.training.motion_loop import epoch_plan, load_motion_model, model_config, onecycle_lrs
from motionlab.training.motion_runner import MotionTrainSettings, fit_motion
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"MotionSSM": "motion", "PhysicsSSM": "physics"}


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def smoke_ws(tmp_path_factory) -> Workspace:
    """A workspace whose KIT-ML look-alike (64 motions: 56 train, 6 val) the smoke preset generated."""
    ws = Workspace(tmp_path_factory.mktemp("ws-smoke")).ensure()
    default_motion_root(ws, load_motion_config("motion", preset="smoke"))
    return ws


# -- the schedule, without Ray ----------------------------------------------------------------------------


def test_epochs_become_steps_and_the_lr_is_the_teams_onecycle() -> None:
    cfg = load_motion_config("physics", preset="tiny")
    plan = epoch_plan(cfg, num_train=56)
    # 30 epochs x ceil(56 / 16) = 120 steps, an evaluation every 5 epochs, a checkpoint every 10
    assert (plan.total_steps, plan.eval_every, plan.ckpt_every, plan.per_step) == (120, 20, 40, 16)
    assert plan.total_steps == steps_total(model_config(cfg, 10), 56)
    lrs = onecycle_lrs(model_config(cfg, 10), plan.total_steps)
    # the lr each update of a real optimizer gets from make_scheduler
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.AdamW([param], lr=cfg.lr)
    scheduler = make_scheduler(opt, model_config(cfg, 10), plan.total_steps)
    seen = []
    for _ in range(plan.total_steps):
        seen.append(opt.param_groups[0]["lr"])
        param.grad = torch.zeros(1)
        opt.step()
        if len(seen) < plan.total_steps:
            scheduler.step()
    np.testing.assert_allclose(lrs, seen, rtol=1e-12)
    assert lrs[0] == pytest.approx(3e-3 / 25) and lrs.max() == pytest.approx(3e-3)
    assert int(lrs.argmax()) == 35 and lrs[-1] == pytest.approx(3e-3 / 25 / 1e4)


def test_an_epoch_visits_every_sample_and_ranks_split_each_batch() -> None:
    n, batch = 56, 16
    for epoch in range(2):
        rows = np.concatenate([epoch_rows(n, batch, epoch * 4 + b, seed=42) for b in range(4)])
        assert len(rows) == 64 and set(rows.tolist()) == set(range(n))  # the last batch wraps 8 rows around
    first, again = epoch_rows(n, batch, 5, seed=42), epoch_rows(n, batch, 5, seed=42)
    assert np.array_equal(first, again) and not np.array_equal(first, epoch_rows(n, batch, 1, seed=42))
    shares = [first[r::2] for r in range(2)]
    assert sorted(np.concatenate(shares).tolist()) == sorted(first.tolist()) and [len(s) for s in shares] == [8, 8]


def test_generated_data_follows_the_config_and_is_fingerprinted(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    root = default_motion_root(ws, load_motion_config("motion", preset="smoke"))
    assert root == ws.data / "kit_ml"
    ids = sum(len((root / f"{s}.txt").read_text().split()) for s in ("train", "val", "test"))
    digest = dataset_fingerprint(root)
    assert ids == 64 and len(digest) == 16 and dataset_fingerprint(root) == digest
    data = MotionData.open(root, load_motion_config("motion", preset="smoke"))
    assert (len(data.train), len(data.val)) == (56, 6) and data.digest == digest
    assert data.payload().train.frames == sum(s.length for s in data.train.samples)
    # a config asking for more motions regenerates them; other data then has another fingerprint
    default_motion_root(ws, load_motion_config("motion", preset="smoke", overrides=["data.generated_motions=70"]))
    assert sum(len((root / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")) == 70
    assert dataset_fingerprint(root) != digest


# -- local mode: both models, the MLflow run read back ----------------------------------------------------


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("kind", ["MotionSSM", "PhysicsSSM"])
def test_local_mode_trains_and_logs_the_run(kind: str, smoke_ws: Workspace, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    cfg = load_motion_config(CONFIGS[kind], preset="smoke")
    data = MotionData.open(default_motion_root(smoke_ws, cfg), cfg)
    outcome = fit_motion(cfg, data, ws, MotionTrainSettings(local_mode=True, max_failures=0, evaluate=False))
    # 6 epochs x ceil(56 / 16) steps of 16 samples
    assert outcome.metrics["step"] == 24 and outcome.metrics["samples_seen"] == 24 * 16
    state = read_state(outcome.checkpoint)
    assert (state.step, state.seen, state.unit) == (24, 384, "samples")
    model, vocab = load_motion_model(outcome.checkpoint)
    assert type(model).model_kind == kind and len(vocab) == len(data.vocab)
    text = vocab.encode(["a person walks forward"], model.cfg.max_text_len)
    assert model.generate(text, torch.tensor([30])).shape == (1, 30, 251)

    client = MlflowClient(ws.mlflow_uri)
    run = client.get_run(outcome.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "motion"
    assert run.info.status == "FINISHED" and run.info.run_name.startswith(f"{kind}-smoke-")
    tags, params = run.data.tags, run.data.params
    assert tags["model"] == kind and tags["data_manifest"] == data.digest and len(tags["git_commit"]) >= 7
    assert "variant" not in tags
    assert params["lambda_physics"] == ("0.1" if kind == "PhysicsSSM" else "0.0")
    assert params["model.d_model"] == "64" and params["epochs"] == "6" and set(cfg.flatten()) <= set(params)
    # evaluated untrained, then every 2 epochs (8 steps); train points at every step (log_every = 8 // 5)
    assert [s for s, _ in _history(client, outcome.run_id, "eval/mse")] == [0, 8, 16, 24]
    assert [s for s, _ in _history(client, outcome.run_id, "train/mse")] == list(range(1, 25))
    assert [s for s, _ in _history(client, outcome.run_id, "eval/physics_total")] == [0, 8, 16, 24]
    assert _history(client, outcome.run_id, "samples_seen")[-1] == (24, 384.0)
    assert min(v for _, v in _history(client, outcome.run_id, "samples_per_s")) > 0
    assert _history(client, outcome.run_id, "lr")[-1][1] == pytest.approx(cfg.lr / 25 / 1e4)
    physics_train = [k for k in run.data.metrics if k.startswith("train/physics_")]
    if kind == "PhysicsSSM":
        assert {"train/physics_sliding", "train/physics_total"} <= set(physics_train)
        loss, mse, total = (run.data.metrics[k] for k in ("eval/loss", "eval/mse", "eval/physics_total"))
        assert loss == pytest.approx(mse + 0.1 * total)
    else:
        assert physics_train == [] and run.data.metrics["eval/loss"] == run.data.metrics["eval/mse"]
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id, "checkpoint")}
    assert artifacts == {"checkpoint/model.pt", "checkpoint/meta.json", "checkpoint/vocab.json"}
    assert client.list_artifacts(outcome.run_id, "config")[0].path == "config/resolved.yaml"
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{outcome.run_id}'")
    assert [m.name for m in models] == ["model"]


# -- a real local Ray ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recovered(ray_local, tmp_path_factory):
    """PhysicsSSM on two Ray Train workers (DDP over gloo), 256 generated motions for 10 epochs, whose rank 0 is
    killed once at step 60 (after the checkpoint of step 56) and recovered by FailureConfig."""
    ws = Workspace(tmp_path_factory.mktemp("ws-ray")).ensure()
    cfg = load_motion_config("physics", preset="tiny", overrides=[
        "epochs=10", "eval_freq=2", "save_ckpt_freq=4", "resources.num_workers=2", "resources.cpus_per_worker=1"])
    data = MotionData.open(default_motion_root(ws, cfg), cfg)
    marker = ws.root / "killed"
    outcome = fit_motion(cfg, data, ws, MotionTrainSettings(max_failures=1, fail_at_step=60, fail_marker=str(marker),
                                                          evaluate=False))
    return cfg, ws, data, outcome


def test_ray_run_learns_and_recovers_a_killed_worker(recovered) -> None:
    cfg, ws, data, outcome = recovered
    assert len(data.train) == 218  # 14 steps an epoch, 140 in all
    assert (ws.root / "killed").read_text() == "killed at step 60\n"
    # the restarted group began at the checkpoint of step 56 (4 epochs), not at 0, and finished the schedule
    assert outcome.metrics["start_step"] == 56 and outcome.metrics["step"] == 140
    assert outcome.metrics["world_size"] == 2
    client = MlflowClient(ws.mlflow_uri)
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "PhysicsSSM"
    # before training, then every 2 epochs; the evaluation at step 56 ran once, before the kill
    eval_mse = _history(client, outcome.run_id, "eval/mse")
    assert [s for s, _ in eval_mse] == [0, 28, 56, 84, 112, 140]
    assert eval_mse[-1][1] < 0.85 * eval_mse[0][1], eval_mse  # the val MSE falls from the untrained model's
    train = [v for _, v in _history(client, outcome.run_id, "train/loss")]
    assert np.mean(train[-3:]) < 0.8 * np.mean(train[:3]), train
    assert np.isfinite(run.data.metrics["eval/physics_total"])
    assert read_state(outcome.checkpoint).step == 140 and isinstance(load_motion_model(outcome.checkpoint)[0],
                                                                     PhysicsSSM)


def test_a_finished_run_started_again_reports_its_final_evaluation(recovered) -> None:
    """A driver that dies after the last checkpoint (a sweep job stopped at the end of a trial) starts the run
    again: it resumes at the end, trains nothing, and reports the final weights' evaluation, which a restored
    Tune trial needs to rank it, without logging it a second time."""
    cfg, ws, data, first = recovered
    again = fit_motion(cfg, data, ws, MotionTrainSettings(run_name=first.run_name, evaluate=False, log_model=False))
    assert (again.run_id, again.resumed) == (first.run_id, True)
    assert again.metrics["start_step"] == again.metrics["step"] == 140
    client = MlflowClient(ws.mlflow_uri)
    eval_mse = _history(client, first.run_id, "eval/mse")
    assert [s for s, _ in eval_mse] == [0, 28, 56, 84, 112, 140]  # nothing logged twice
    assert again.metrics["eval/mse"] == pytest.approx(eval_mse[-1][1], rel=1e-5)  # the same weights, evaluated


def test_a_crashed_run_resumes_by_name_through_the_entry_script(ray_local, tmp_path: Path, capfd,
                                                                  monkeypatch) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    args = ["--preset", "smoke", "--run-name", "resume-me", "epochs=5", "save_ckpt_freq=1", "eval_freq=1"]
    cfg = load_motion_config("motion", preset="smoke", overrides=args[4:])
    data = MotionData.open(default_motion_root(ws, cfg), cfg)
    # the first attempt dies at step 10 with no restarts left: a crash (checkpoints every 4 steps)
    with pytest.raises(Exception):  # noqa: B017 (Train raises its own error types for a dead worker group)
        fit_motion(cfg, data, ws, MotionTrainSettings(run_name="resume-me", max_failures=0, fail_at_step=10,
                                                      fail_marker=str(tmp_path / "killed"), log_model=False,
                                                      evaluate=False))
    client = MlflowClient(ws.mlflow_uri)
    run_id = find_run(client, "motion", "resume-me")
    assert client.get_run(run_id).info.status == "FAILED"
    # the same name again, from the entry script, on the workspace's data (found, not generated again); run in
    # this process, on this module's Ray
    monkeypatch.setenv("MOTIONLAB_WORKSPACE", str(ws.root))
    capfd.readouterr()
    assert run_script(REPO / "experiments" / "train_motion_ssm.py", [*args, "--no-eval", "--num-cpus", "2"]) == 0
    out = printed_until(capfd, "resuming from step ")
    assert "generating" not in out and "resuming run resume-me" in out
    resumed_at = int(out.split("resuming from step ")[1].split()[0])
    assert resumed_at in (4, 8)  # the last checkpoint the controller registered before the crash
    assert "finished at step 20" in out
    runs = client.search_runs([client.get_experiment_by_name("motion").experiment_id])
    assert [r.data.tags[RUN_NAME_TAG] for r in runs] == ["resume-me"]  # the same MLflow run, not a second one
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not [k for k in client.get_run(run_id).data.metrics if k.startswith("test/")]  # --no-eval
    steps = [s for s, _ in _history(client, run_id, "samples_seen")]
    assert max(steps) == 20 and min(steps) < resumed_at  # one history across both attempts
