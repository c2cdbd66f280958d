"""4M training on a real local Ray: Ray Train workers, DDP over gloo, fault recovery, resume after a kill,
and the MLflow run read back (tags, params, metric histories, artifacts, the logged model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import kill_tree, printed_until, run_script
from motionlab.config import load_config
from motionlab.tracking.runs import RUN_NAME_TAG, find_run
from motionlab.training.checkpoint import MODEL_FILE, load_model_state, read_state
from motionlab.training.data import PreparedData, token_arrays
from motionlab.training.runner import TrainSettings, fit
from motionlab.training.schedule import TokenSchedule
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[1]

# Short schedules: 2048 tokens a step at the tiny preset (batch 16 x 128 tokens per sample).
QUICK = ["total_tokens=0.05", "warmup_tokens=0.005", "eval_freq=0.02", "save_ckpt_freq=0.02"]


@pytest.fixture(scope="module")
def m4_data(ray_local, prepared_tokens) -> PreparedData:
    return prepared_tokens("m4")


@pytest.fixture(scope="module")
def trained(m4_data: PreparedData, tmp_path_factory):
    """One real training on two Ray Train workers (DDP over gloo, the train split streamed to both) long enough
    for the eval loss to fall, whose rank 0 is killed once at step 60 (after the checkpoint of step 49) and
    recovered by FailureConfig."""
    ws = Workspace(tmp_path_factory.mktemp("ws-train")).ensure()
    cfg = load_config("m4", preset="tiny", overrides=["total_tokens=0.4", "warmup_tokens=0.04", "eval_freq=0.1",
                                                      "save_ckpt_freq=0.1", "resources.num_workers=2",
                                                      "resources.cpus_per_worker=0.5"])
    marker = ws.root / "killed"
    outcome = fit(cfg, m4_data, ws, TrainSettings(max_failures=1, samples=2, fail_at_step=60,
                                                  fail_marker=str(marker)))
    return cfg, ws, outcome


def test_training_learns_and_the_mlflow_run_holds_everything(trained, m4_data: PreparedData) -> None:
    cfg, ws, outcome = trained
    schedule = TokenSchedule.from_config(cfg)
    assert outcome.metrics["step"] == schedule.total_steps == 196
    client = MlflowClient(ws.mlflow_uri)
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == outcome.run_name
    assert run.info.run_name.startswith("M4-tiny-")
    assert client.get_experiment(run.info.experiment_id).name == "multimodal"
    tags = run.data.tags
    assert tags["variant"] == "M4" and tags["data_manifest"] == m4_data.digest and len(tags["git_commit"]) >= 7
    # params: the whole resolved config, flattened
    assert run.data.params["model.dim"] == "128" and run.data.params["lr"] == "0.002"
    assert run.data.params["modalities"] == '["tok_rgb", "coords", "tok_rgb_next", "coords_next"]'
    assert set(cfg.flatten()) <= set(run.data.params)

    def history(key: str) -> list[float]:
        return [m.value for m in sorted(client.get_metric_history(outcome.run_id, key), key=lambda m: m.step)]

    for name in cfg.modalities:
        assert len(history(f"train/loss_{name}")) >= 5
        # before training, then every 0.1M of 0.4M tokens; the evaluation at step 49 ran once only, since the
        # restarted worker resumed from that step's checkpoint
        assert [m.step for m in client.get_metric_history(outcome.run_id, f"eval/loss_{name}")] == [0, 49, 98, 147,
                                                                                                     196]
        assert 0.0 <= history(f"eval/acc_{name}")[-1] <= 1.0
    eval_loss = history("eval/loss")
    assert eval_loss[-1] < eval_loss[0] - 1.0, eval_loss  # the eval loss falls from the untrained model's
    assert history("tokens_seen")[-1] == schedule.total_steps * schedule.tokens_per_step
    assert history("lr")[-1] == pytest.approx(cfg.min_lr, abs=1e-6)
    assert min(history("tokens_per_s")) > 0
    # test-split evaluation: the pose prediction metrics and their copy baselines
    metrics = run.data.metrics
    for key in ("test/loss_coords_next", "test/mpjpe_px_coords_next", "test/mpjpe_px_coords_next_copy",
                "test/pck_coords_next", "test/ssim_tok_rgb_next", "test/ssim_tok_rgb_next_copy"):
        assert np.isfinite(metrics[key]), key
    # next-frame token accuracy beside copying, whose value is the test split's own share of unchanged tokens
    test = token_arrays(m4_data.read_pandas("test", list(cfg.modalities)), list(cfg.modalities))
    for current, target in (("tok_rgb", "tok_rgb_next"), ("coords", "coords_next")):
        assert metrics[f"test/next_acc_{target}_copy"] == pytest.approx(float((test[current] == test[target]).mean()))
        assert 0.0 <= metrics[f"test/next_acc_{target}"] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"config", "plots", "gifs"} <= artifacts
    assert {a.path for a in client.list_artifacts(outcome.run_id, "plots")} == {"plots/train_loss.png",
                                                                               "plots/eval_loss.png"}
    gifs = [a.path for a in client.list_artifacts(outcome.run_id, "gifs")]
    assert "gifs/rollout_00_pose.gif" in gifs and "gifs/rollout_00_frames.gif" in gifs
    # artifacts land in the workspace, never in the working directory's mlruns/
    assert (ws.root / "mlartifacts").is_dir()
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{outcome.run_id}'")
    assert [m.name for m in models] == ["model"]


def test_final_checkpoint_loads_with_weights_only(trained) -> None:
    cfg, _, outcome = trained
    state = read_state(outcome.checkpoint)
    assert state.step == 196 and state.model_config["dim"] == 128
    weights = load_model_state(outcome.checkpoint)  # torch.load(weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    assert (outcome.checkpoint / MODEL_FILE).stat().st_size > 100_000


def test_generate_command_logs_gifs_to_the_run(trained) -> None:
    _, ws, outcome = trained
    proc = subprocess.run([sys.executable, "-m", "motionlab.cli", "--workspace", str(ws.root), "generate", "--run",
                           outcome.run_id, "--samples", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "logged 2 GIFs" in proc.stdout
    client = MlflowClient(ws.mlflow_uri)
    gifs = [a.path for a in client.list_artifacts(outcome.run_id, "gifs")]
    # the training logged two samples; the command logged sample 0 again under the same two names
    assert sorted(gifs) == ["gifs/rollout_00_frames.gif", "gifs/rollout_00_pose.gif", "gifs/rollout_01_frames.gif",
                            "gifs/rollout_01_pose.gif"]


def test_local_mode_runs_the_loop_in_process(m4_data: PreparedData, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    cfg = load_config("m4", preset="tiny", overrides=QUICK)
    outcome = fit(cfg, m4_data, ws, TrainSettings(local_mode=True, evaluate=False, max_failures=0))
    assert outcome.metrics["step"] == TokenSchedule.from_config(cfg).total_steps == 25
    assert read_state(outcome.checkpoint).step == 25


def test_killed_worker_recovers_from_its_last_checkpoint(trained) -> None:
    _, ws, outcome = trained
    assert (ws.root / "killed").read_text() == "killed at step 60\n"
    # the restarted worker group began at the checkpoint of step 49, not at 0, and finished the schedule
    assert outcome.metrics["start_step"] == 49 and outcome.metrics["step"] == 196
    assert outcome.metrics["world_size"] == 2 and np.isfinite(outcome.metrics["train/loss"])


def _checkpoints(ws: Path, run: str) -> list[Path]:
    # checkpoint folders only: Train also keeps its checkpoint_manager_snapshot.json there
    return sorted(p for p in (ws / "ray" / run).glob("checkpoint_*") if p.is_dir())


def _registered(ws: Path, run: str) -> bool:
    """Whether Train's controller has recorded a checkpoint of the run (its snapshot is what a restart reads; a
    folder on disk that the controller never recorded is not resumed from)."""
    snapshot = ws / "ray" / run / "checkpoint_manager_snapshot.json"
    try:
        return bool(json.loads(snapshot.read_text()).get("checkpoint_results"))
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return False


def test_resume_after_the_process_is_killed(m4_data: PreparedData, tmp_path: Path, capfd, monkeypatch) -> None:
    ws = tmp_path / "ws"
    env = {**os.environ, "MOTIONLAB_WORKSPACE": str(ws), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    # 59 steps, a checkpoint every 20
    args = ["--config", "m4", "--preset", "tiny", "--data", str(m4_data.root), "--run-name", "resume-me", "--no-eval",
            "--num-cpus", "2", "total_tokens=0.12", "warmup_tokens=0.01", "save_ckpt_freq=0.04", "eval_freq=0.12"]
    log = (tmp_path / "first.log").open("w")
    # the entry script in a process of its own, with its own Ray, killed mid-run with everything under it
    first = subprocess.Popen([sys.executable, str(REPO / "experiments" / "train_multimodal.py"), *args], env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not _registered(ws, "resume-me") and first.poll() is None:
        time.sleep(0.5)
    assert _registered(ws, "resume-me"), (tmp_path / "first.log").read_text()[-3000:]
    kill_tree(first)  # the driver, its Ray and the worker, mid-run
    done = read_state(_checkpoints(ws, "resume-me")[-1]).step
    assert 0 < done < 59
    # the same script again, run in this process (on this module's Ray): no second interpreter and Ray start-up
    monkeypatch.setenv("MOTIONLAB_WORKSPACE", str(ws))
    capfd.readouterr()
    assert run_script(REPO / "experiments" / "train_multimodal.py", args) == 0
    out = printed_until(capfd, "resuming from step ")
    resumed_at = int(out.split("resuming from step ")[1].split()[0])
    # the last checkpoint the controller registered before the kill (the newest one on disk, or the one before)
    assert 0 < resumed_at <= done and resumed_at % 20 == 0
    assert "finished at step 59" in out
    client = MlflowClient(Workspace(ws).mlflow_uri)
    run_id = find_run(client, "multimodal", "resume-me")
    runs = client.search_runs([client.get_experiment_by_name("multimodal").experiment_id])
    assert [r.data.tags[RUN_NAME_TAG] for r in runs] == ["resume-me"]  # the same MLflow run, not a second one
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "tokens_seen")]
    assert max(steps) == 59 and min(steps) < resumed_at  # one history across both processes


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_mixed_precision_trains(dtype: str, m4_data: PreparedData, tmp_path: Path) -> None:
    """bf16 autocast, and fp16 with a grad scaler (its state goes into the checkpoint)."""
    ws = Workspace(tmp_path / "ws").ensure()
    cfg = load_config("m4", preset="tiny", overrides=["total_tokens=0.01", "warmup_tokens=0", "eval_freq=0.01",
                                                      "save_ckpt_freq=0.01", f"dtype={dtype}"])
    outcome = fit(cfg, m4_data, ws, TrainSettings(local_mode=True, evaluate=False, max_failures=0))
    assert outcome.metrics["step"] == 5 and np.isfinite(outcome.metrics["train/loss"])
    trainer_state = torch.load(outcome.checkpoint / "trainer.pt", weights_only=True)
    assert ("scaler" in trainer_state) == (dtype == "fp16")


def test_a_diverging_run_fails_with_its_reason_and_is_not_retried(m4_data: PreparedData, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    cfg = load_config("m4", preset="tiny", overrides=QUICK)
    with pytest.raises(FloatingPointError, match="train loss is nan at step 3"):
        fit(cfg, m4_data, ws, TrainSettings(local_mode=True, evaluate=False, max_failures=2, poison_at_step=3))
    client = MlflowClient(ws.mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("multimodal").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["motionlab.failure"] == "FloatingPointError: train loss is nan at step 3; lower lr or use fp32"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) <= 3
