"""The evaluation after a motion training: a smoke MotionSSM run in local mode, evaluated on the test split by the
driver (feature MSE, physics and text-motion metrics against the real test motions, PyBullet playback in Ray tasks,
the table and GIFs), then the MLflow run read back; a motion PyBullet cannot play is counted, never raised."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from motionlab.config import load_motion_config
from motionlab.evaluation import EVALUATOR_NOTE
from motionlab.training.motion_data import MotionData, default_motion_root
from motionlab.training.motion_evaluation import (
    EVALUATOR_DIR,
    REAL_ROW,
    TABLE_FILE,
    MotionEvalSettings,
    joints_in_units,
    pybullet_metrics,
)
from motionlab.training.motion_loop import load_motion_model
from motionlab.training.motion_runner import MotionTrainSettings, fit_motion
from motionlab.training.runner import TrainOutcome
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
EVAL = MotionEvalSettings(gifs=2, evaluator_overrides={"epochs": 8})  # smoke: tiny evaluator, 4 PyBullet motions


@dataclass
class Evaluated:
    ws: Workspace
    outcome: TrainOutcome
    client: MlflowClient
    metrics: dict[str, float]


@pytest.fixture(scope="module")
def evaluated(ray_local, tmp_path_factory) -> Evaluated:
    import torch

    ws = Workspace(tmp_path_factory.mktemp("ws-eval")).ensure()
    cfg = load_motion_config("motion", preset="smoke")
    data = MotionData.open(default_motion_root(ws, cfg), cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on busy shared cores (see the torch_one_thread fixture)
    try:
        outcome = fit_motion(cfg, data, ws, MotionTrainSettings(local_mode=True, max_failures=0, log_model=False,
                                                                evaluation=EVAL))
    finally:
        torch.set_num_threads(threads)
    client = MlflowClient(ws.mlflow_uri)
    return Evaluated(ws, outcome, client, client.get_run(outcome.run_id).data.metrics)


def test_test_metrics_are_logged_with_sane_values(evaluated: Evaluated) -> None:
    m = evaluated.metrics
    run = evaluated.client.get_run(evaluated.outcome.run_id)
    assert run.info.status == "FINISHED"
    n = m["test/num_samples"]
    assert n >= 6  # the smoke data's test split (6 motions, caption sub-clips included)
    assert 0 < m["test/mse"] < 10
    for prefix in ("test/", "test/real_"):
        assert 0 <= m[f"{prefix}skating_ratio"] <= 1
        assert m[f"{prefix}penetration_m"] >= 0 and m[f"{prefix}floating_m"] >= 0 and m[f"{prefix}jerk_mps3"] > 0
        top = [m[f"{prefix}r_precision_top{k}"] for k in (1, 2, 3)]
        assert all(0 <= v <= 1 for v in top) and top[0] <= top[1] <= top[2]
        assert m[f"{prefix}diversity"] > 0 and 0 < m[f"{prefix}mm_distance"] <= 2  # unit vectors
        assert m[f"{prefix}r_precision_batch"] == min(n, 32)
    assert m["test/fid"] >= 0 and m["test/real_fid"] >= 0
    # the generated data stands on the floor it was made on: its own penetration is (near) zero
    assert m["test/real_penetration_m"] < 0.01
    # PyBullet: 4 generated motions on the smoke preset; failures counted, tracking measured on the others
    assert m["test/pybullet_motions"] == 4 and m["test/pybullet_failed"] in (0, 1, 2, 3, 4)
    if m["test/pybullet_failed"] < 4:
        assert 0 <= m["test/pybullet_fall_rate"] <= 1 and 0 < m["test/pybullet_tracking_error_m"] < 2
    # every logged test metric is at the final step, and the outcome returns what was logged
    step = evaluated.outcome.metrics["step"]
    assert {h.step for h in evaluated.client.get_metric_history(evaluated.outcome.run_id, "test/mse")} == {step}
    assert evaluated.outcome.metrics["test/mse"] == pytest.approx(m["test/mse"])


def test_the_table_holds_both_rows_and_the_note(evaluated: Evaluated, capsys) -> None:
    path = evaluated.client.download_artifacts(evaluated.outcome.run_id, TABLE_FILE, str(evaluated.ws.root))
    table = Path(path).read_text()
    print(table)  # shown with -s: the figures a reader of the run sees
    lines = table.splitlines()
    real = next(line for line in lines if line.startswith(REAL_ROW))
    model = next(line for line in lines if line.startswith("MotionSSM"))
    assert f"Note: {EVALUATOR_NOTE}" in table and "R@1" in lines[0] and "FID" in lines[0]
    # the real row has no feature MSE (nothing to compare with); the model's row has its own
    assert real.split()[3] == "-" and float(model.split()[1]) == pytest.approx(evaluated.metrics["test/mse"], abs=1e-4)


def test_gifs_are_logged_and_the_evaluator_is_cached_in_the_workspace(evaluated: Evaluated) -> None:
    gifs = [a.path for a in evaluated.client.list_artifacts(evaluated.outcome.run_id, "gifs")]
    ok = 4 - int(evaluated.metrics["test/pybullet_failed"])
    assert len(gifs) == min(2, ok) and all(p.startswith("gifs/motion_") and p.endswith(".gif") for p in gifs)
    cached = list((evaluated.ws.root / EVALUATOR_DIR).glob("*/model.pt"))
    assert len(cached) == 1


def test_a_motion_pybullet_cannot_play_is_counted_not_raised(evaluated: Evaluated, tmp_path: Path) -> None:
    import torch

    model, vocab = load_motion_model(evaluated.outcome.checkpoint)
    text = vocab.encode(["a person walks forward"], model.cfg.max_text_len)
    lengths = torch.tensor([30])
    good = joints_in_units(model, model.generate(text, lengths), lengths)[0]  # (30, 21, 3)
    bad = np.full_like(good, np.nan)
    metrics, gifs = pybullet_metrics([good, bad], model, tmp_path, gifs=0)
    assert metrics["pybullet_motions"] == 2 and metrics["pybullet_failed"] >= 1 and gifs == []


def test_no_eval_logs_no_test_metrics(tmp_path: Path, evaluated: Evaluated) -> None:
    cfg = load_motion_config("motion", preset="smoke", overrides=["epochs=1"])
    data = MotionData.open(default_motion_root(evaluated.ws, cfg), cfg)
    ws = Workspace(tmp_path / "ws").ensure()
    outcome = fit_motion(cfg, data, ws, MotionTrainSettings(local_mode=True, max_failures=0, log_model=False,
                                                            evaluate=False))
    run = MlflowClient(ws.mlflow_uri).get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and "eval/mse" in run.data.metrics
    assert not [k for k in run.data.metrics if k.startswith("test/")]
    assert not (ws.root / EVALUATOR_DIR).exists()
