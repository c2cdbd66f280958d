"""Every variant (M1..M4) prepares, trains a few steps, evaluates and draws its samples on a real local Ray.

M1 has captions and no future, so its samples are pose and frames decoded from the other modalities;
M2's next modalities span six frames, so its roll-out feeds back the last of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from motionlab.config import load_config
from motionlab.training.runner import TrainSettings, fit
from motionlab.training.schedule import MILLION, TokenSchedule
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
STEPS = 6


def few_steps(name: str) -> list[str]:
    """Overrides that make the tiny preset a STEPS-step run with one evaluation and one checkpoint."""
    base = load_config(name, preset="tiny")
    millions = TokenSchedule.from_config(base).tokens_per_step * STEPS / MILLION
    return [f"total_tokens={millions}", "warmup_tokens=0", f"eval_freq={millions}", f"save_ckpt_freq={millions}"]


@pytest.fixture(scope="module")
def tokens(ray_local, prepared_tokens):
    return prepared_tokens


@pytest.mark.parametrize("name", ["m1", "m2", "m3", "m4"])
def test_variant_trains_evaluates_and_draws(name: str, tokens, tmp_path: Path) -> None:
    cfg = load_config(name, preset="tiny", overrides=few_steps(name))
    data = tokens(name)  # M1 on M2's tokens, M3 and M4 on one shared set
    ws = Workspace(tmp_path / "ws").ensure()
    outcome = fit(cfg, data, ws, TrainSettings(local_mode=True, max_failures=0, samples=1))
    assert outcome.metrics["step"] == STEPS
    client = MlflowClient(ws.mlflow_uri)
    run = client.get_run(outcome.run_id)
    assert run.data.tags["variant"] == cfg.variant and run.info.status == "FINISHED"
    metrics = run.data.metrics
    for modality in cfg.modalities:
        assert np.isfinite(metrics[f"eval/loss_{modality}"]), modality
        assert np.isfinite(metrics[f"test/loss_{modality}"]), modality
    gifs = sorted(a.path for a in client.list_artifacts(outcome.run_id, "gifs"))
    if name == "m1":  # no next modalities: pose and frames reconstructed from the rest
        assert gifs == ["gifs/coords_pose.gif", "gifs/tok_rgb_frames.gif"]
        assert "test/mpjpe_px_coords_next" not in metrics
    else:
        assert gifs == ["gifs/rollout_00_frames.gif", "gifs/rollout_00_pose.gif"]
        assert metrics["test/mpjpe_px_coords_next_copy"] >= 0 and 0 <= metrics["test/pck_coords_next"] <= 1
        assert -1 <= metrics["test/ssim_tok_rgb_next"] <= 1
