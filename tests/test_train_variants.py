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
from motionlab.pipelines.penn_action import PipelineSettings, prepare_penn_action
from motionlab.training.data import PreparedData
from motionlab.training.runner import TrainSettings, fit
from motionlab.training.schedule import MILLION, TokenSchedule
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
STEPS = 6


@pytest.fixture(scope="module")
def small_source(tmp_path_factory) -> Path:
    """Ten short generated videos: enough for a train, an eval and a test video."""
    from motionlab.datasets.synth_penn import synth_penn_action

    root = tmp_path_factory.mktemp("penn-small") / "penn_action"
    synth_penn_action(root, videos=10, seed=11, size=(120, 160), frames=(18, 26))
    return root


def few_steps(name: str) -> list[str]:
    """Overrides that make the tiny preset a STEPS-step run with one evaluation and one checkpoint."""
    base = load_config(name, preset="tiny")
    millions = TokenSchedule.from_config(base).tokens_per_step * STEPS / MILLION
    return [f"total_tokens={millions}", "warmup_tokens=0", f"eval_freq={millions}", f"save_ckpt_freq={millions}"]


@pytest.fixture(scope="module")
def tokens(ray_local, small_source: Path, workspace: Workspace, fsq_steps: int, tmp_path_factory):
    """Prepared datasets by config, each prepared once: M1 trains on M2's tokens (its modalities, lengths and
    vocabularies are a subset of M2's) and M4 on M3's (the same layout), as a user may point --data at them."""
    made: dict[str, PreparedData] = {}

    def get(name: str) -> PreparedData:
        source_cfg = {"m1": "m2", "m4": "m3"}.get(name, name)
        if source_cfg not in made:
            out = tmp_path_factory.mktemp(f"tokens-{source_cfg}")
            prepare_penn_action(small_source, load_config(source_cfg, preset="tiny"), out, workspace,
                                PipelineSettings(fsq_steps=fsq_steps))
            made[source_cfg] = out
        return PreparedData.open(made[source_cfg], load_config(name, preset="tiny"))

    return get


@pytest.mark.parametrize("name", ["m1", "m2", "m3", "m4"])
def test_variant_trains_evaluates_and_draws(name: str, tokens, tmp_path: Path) -> None:
    cfg = load_config(name, preset="tiny", overrides=few_steps(name))
    data = tokens(name)
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
