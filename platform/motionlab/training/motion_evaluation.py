"""Test-split evaluation of a trained text-to-motion model, logged to its MLflow run when training ends.

Three views of the same generated test motions (one per test sample, first caption, the real length):
- feature MSE against the real motion in z-scored feature space over real frames (what training minimises);
- physics metrics (`physics.losses.motion_metrics`: foot skating, penetration, floating, jerk) of generated and
  real motions, so a model's figures are read against the data's own floor;
- text-motion metrics (R-precision, FID, diversity, MM-distance) in the project's own evaluator, trained on the
  same training split and cached in the workspace (`evaluation.load_or_train_evaluator`), with the real test
  motions as the reference row;
and PyBullet playback of a few generated motions in Ray tasks (`physics.pybullet_eval`), whose failures are
counted rather than raised, with GIFs of the first successful ones.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from motionlab.config import MotionConfig
from motionlab.datasets.motion import SPECS, MotionSample, MotionSplit, read_motion_dataset
from motionlab.datasets.motion_features import recover_joints
from motionlab.evaluation import (
    load_or_train_evaluator,
    metrics_table,
    split_rows,
    text_motion_metrics,
)
from motionlab.models.motion import MotionModelBase, collate_motion, length_mask
from motionlab.models.text_vocab import WordVocab
from motionlab.physics.losses import motion_metrics, to_metres
from motionlab.physics.pybullet_eval import SimConfig, evaluate_motions, summarise, write_gifs
from motionlab.tracking.runs import RunLogger
from motionlab.training.checkpoint import read_state
from motionlab.training.motion_data import MotionData
from motionlab.training.motion_loop import load_motion_model

TEST_SPLIT = "test"
SMALL_PRESETS = ("tiny", "smoke")  # presets that get the tiny evaluator and few PyBullet motions
SMALL_PYBULLET_MOTIONS, DEFAULT_PYBULLET_MOTIONS = 4, 16
EVALUATOR_DIR = "evaluators"  # <workspace>/evaluators/<dataset fingerprint>-<config key>
REAL_ROW = "real (test set)"
TABLE_FILE = "evaluation/table.txt"
PHYSICS_KEYS = ("skating_ratio", "penetration_m", "floating_m", "jerk_mps3")
PYBULLET_KEYS = {"tracking_error_m": "pybullet_tracking_error_m", "fall_rate": "pybullet_fall_rate",
                 "failed": "pybullet_failed", "motions": "pybullet_motions"}


@dataclass(frozen=True)
class MotionEvalSettings:
    """What the evaluation after training does; None picks by the config's preset (small for tiny/smoke)."""

    pybullet_motions: int | None = None  # generated test motions played back in PyBullet
    gifs: int = 3  # GIFs of successful playbacks logged under gifs/
    evaluator_size: str | None = None  # "tiny" | "default"
    evaluator_overrides: dict[str, Any] = field(default_factory=dict)  # EvaluatorConfig fields, e.g. epochs
    seed: int = 0  # R-precision batches, diversity pairs, real-FID halves

    def resolved(self, cfg: MotionConfig) -> tuple[int, str]:
        small = cfg.preset in SMALL_PRESETS
        motions = self.pybullet_motions
        if motions is None:
            motions = SMALL_PYBULLET_MOTIONS if small else DEFAULT_PYBULLET_MOTIONS
        return motions, self.evaluator_size or ("tiny" if small else "default")


@dataclass
class Generated:
    """Real and generated test motions, row-aligned: sample i, its first caption, its real length."""

    real: torch.Tensor  # (N, T, D) z-scored, zero past each length
    generated: torch.Tensor  # (N, T, D) z-scored, zero past each length
    lengths: torch.Tensor  # (N,)
    captions: list[str]  # (N,)


def read_test_split(root: Path, cfg: MotionConfig) -> MotionSplit:
    """The test split with the training's length filter, z-scored by the dataset's own statistics."""
    split = read_motion_dataset(root, SPECS[cfg.data.dataset], TEST_SPLIT, normalize=True,
                                min_length=cfg.data.min_length, max_length=cfg.data.max_length)
    print(split.summary)
    return split


@torch.no_grad()
def generate_test_motions(model: MotionModelBase, vocab: WordVocab, samples: Sequence[MotionSample],
                          batch_size: int) -> Generated:
    """One generated motion per test sample, from its first caption at its real length."""
    if not samples:
        raise ValueError("generate_test_motions: the test split kept no samples; list motion ids in test.txt or "
                         "widen data.min_length/data.max_length")
    lengths = torch.tensor([s.length for s in samples], dtype=torch.long)
    frames, dim = int(lengths.max()), samples[0].features.shape[1]
    real = torch.zeros(len(samples), frames, dim)
    generated = torch.zeros(len(samples), frames, dim)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        batch = collate_motion(chunk, vocab, model.cfg.max_text_len)  # first caption of each
        n, t = len(chunk), batch["features"].shape[1]
        real[start:start + n, :t] = batch["features"]
        generated[start:start + n, :t] = model.generate(batch["text_tokens"], batch["lengths"])  # (B, t, D)
    generated *= length_mask(lengths, frames)[..., None]
    return Generated(real, generated, lengths, [s.captions[0].text for s in samples])


def feature_mse(gen: Generated) -> float:
    """Mean squared error over real frames and every feature, pooled over samples (longer clips weigh more)."""
    mask = length_mask(gen.lengths, gen.real.shape[1])  # (N, T)
    sq = ((gen.generated - gen.real) ** 2).sum(-1)  # (N, T)
    return float(sq[mask].sum() / (mask.sum() * gen.real.shape[-1]))


def joints_in_units(model: MotionModelBase, features: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
    """(N, T, D) z-scored features -> N arrays (T_i, J, 3) of joint positions in the dataset's units."""
    joints = recover_joints(model.denormalize(features), model.spec.num_joints)  # (N, T, J, 3)
    return [joints[i, :n].numpy() for i, n in enumerate(lengths.tolist())]


def physics_means(model: MotionModelBase, motions: Sequence[np.ndarray]) -> dict[str, float]:
    """`motion_metrics` of each clip (in metres), averaged over clips."""
    spec = model.spec
    per_clip = [motion_metrics(to_metres(m, spec), spec.fps, spec) for m in motions]
    return {k: float(np.nanmean([c[k] for c in per_clip])) for k in PHYSICS_KEYS}


def pybullet_metrics(motions: Sequence[np.ndarray], model: MotionModelBase, gif_dir: Path, gifs: int
                     ) -> tuple[dict[str, float], list[Path]]:
    """Playback of the given motions (dataset units) in Ray tasks -> summary metrics and GIF paths.

    Without a running Ray the playback is skipped with one line: the evaluation never starts a cluster itself.
    """
    import ray

    if not motions:
        return {}, []
    if not ray.is_initialized():
        print(f"PyBullet playback skipped: Ray is not initialised ({len(motions)} motions not played back)")
        return {}, []
    results = evaluate_motions(list(motions), model.spec, SimConfig(keep_trajectories=gifs > 0))
    for r in results:
        if r["status"] != "ok":
            print(f"PyBullet motion {r['index']} failed: {r['reason']}")
    summary = summarise(results)
    paths = write_gifs(results, gif_dir, model.spec.fps, count=gifs) if gifs > 0 else []
    return {PYBULLET_KEYS[k]: summary[k] for k in PYBULLET_KEYS}, paths


def evaluation_table(name: str, real: dict[str, float], model_row: dict[str, float]) -> str:
    """The comparison table with the real test motions as the reference row (and the evaluator's note)."""
    return metrics_table({REAL_ROW: real, name: model_row})


def evaluate_motion_checkpoint(cfg: MotionConfig, data: MotionData, checkpoint: Path, cache_root: Path,
                               out_dir: Path, settings: MotionEvalSettings = MotionEvalSettings()
                               ) -> tuple[dict[str, float], str, list[Path]]:
    """Every test metric of one checkpoint -> (metrics keyed `test/...`, the table, GIF paths under out_dir)."""
    motions_n, size = settings.resolved(cfg)
    model, vocab = load_motion_model(checkpoint)
    test = read_test_split(data.root, cfg)
    gen = generate_test_motions(model, vocab, test.samples, cfg.batch_size)
    generated_joints = joints_in_units(model, gen.generated, gen.lengths)
    real_physics = physics_means(model, joints_in_units(model, gen.real, gen.lengths))
    gen_physics = physics_means(model, generated_joints)

    evaluator = load_or_train_evaluator(cache_root, data.train, size=size, **settings.evaluator_overrides)
    text = text_motion_metrics(evaluator, evaluator.tokenize(gen.captions), gen.real, gen.lengths, gen.generated,
                               gen.lengths, seed=settings.seed)
    real_text, gen_text = split_rows(text)

    mse = feature_mse(gen)
    metrics: dict[str, float] = {"test/mse": mse, "test/num_samples": float(len(gen.lengths))}
    metrics.update({f"test/{k}": v for k, v in gen_physics.items()})
    metrics.update({f"test/real_{k}": v for k, v in real_physics.items()})
    metrics.update({f"test/{k}": v for k, v in text.items() if k != "num_samples"})
    playback, gifs = pybullet_metrics(generated_joints[:motions_n], model, out_dir / "gifs", settings.gifs)
    metrics.update({f"test/{k}": v for k, v in playback.items()})
    table = evaluation_table(cfg.model_kind, {**real_physics, **real_text},
                             {"feature_mse": mse, **gen_physics, **gen_text})
    return metrics, table, gifs


def finish_motion_run(cfg: MotionConfig, data: MotionData, checkpoint: Path, uri: str, run_id: str,
                      cache_root: Path, settings: MotionEvalSettings = MotionEvalSettings()) -> dict[str, float]:
    """Evaluate the final checkpoint on the test split and log metrics, the table and GIFs to the run."""
    client = MlflowClient(uri)
    step = read_state(checkpoint).step
    with tempfile.TemporaryDirectory() as tmp:
        metrics, table, gifs = evaluate_motion_checkpoint(cfg, data, checkpoint, cache_root, Path(tmp), settings)
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        RunLogger(uri, run_id).metrics(finite, step)
        print(table)
        client.log_text(run_id, table + "\n", TABLE_FILE)
        for path in gifs:
            client.log_artifact(run_id, str(path), "gifs")
    print("test " + " | ".join(f"{k.removeprefix('test/')} {v:.4f}" for k, v in sorted(finite.items())))
    return finite
