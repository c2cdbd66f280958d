"""The per-worker train loop of the text-to-motion SSMs (MotionSSM, PhysicsSSM) on Ray Train.

The loop is the shared `training.skeleton`; this module supplies what is particular to motion: the schedule
in epochs (the team's way) turned into optimizer steps, the OneCycleLR of `models.motion.make_scheduler`
read as a function of the step, batches from the packed split (`training.motion_data`), the masked-MSE (+
lambda x physics) loss with its parts, and the val-split evaluation.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from motionlab.config import MotionConfig
from motionlab.datasets.motion_features import recover_joints
from motionlab.models.motion import (
    MotionModelBase,
    MotionSSMConfig,
    collate_motion,
    length_mask,
    make_optimizer,
    make_scheduler,
    masked_mse,
    motion_model_class,
)
from motionlab.models.text_vocab import WordVocab
from motionlab.physics.losses import physics_loss, to_metres
from motionlab.training.checkpoint import load_model_state, read_state
from motionlab.training.motion_data import MotionPayload, epoch_rows
from motionlab.training.phases import PhaseClock
from motionlab.training.session import Session, TrainSession
from motionlab.training.skeleton import LoopOptions, StepPlan, TrainTask, run_training

VOCAB_FILE = "vocab.json"
UNIT, RATE_LABEL = "samples", "samples/s"


def model_config(cfg: MotionConfig, vocab_size: int) -> MotionSSMConfig:
    """The model's own config (MotionSSMConfig or PhysicsSSMConfig) from the experiment config."""
    fields: dict[str, Any] = {
        "vocab_size": vocab_size, "dataset": cfg.data.dataset, **cfg.model.model_dump(),
        "lr": cfg.lr, "weight_decay": cfg.weight_decay, "betas": tuple(cfg.betas), "batch_size": cfg.batch_size,
        "epochs": cfg.epochs, "pct_start": cfg.pct_start, "div_factor": cfg.div_factor,
        "final_div_factor": cfg.final_div_factor, "grad_clip": cfg.grad_clip,
    }
    if cfg.model_kind == "PhysicsSSM":
        fields.update(lambda_physics=cfg.lambda_physics, **cfg.physics.model_dump())
    return motion_model_class(cfg.model_kind).config_class.from_dict(fields)


def epoch_plan(cfg: MotionConfig, num_train: int) -> StepPlan:
    """Epochs -> optimizer steps: `epochs x ceil(train samples / batch_size)` (models.motion.steps_total);
    evaluation and checkpoint intervals, stated in epochs, rounded to whole steps (at least one)."""
    per_epoch = max(1, math.ceil(num_train / cfg.batch_size))
    total = cfg.epochs * per_epoch

    def steps(epochs: float) -> int:
        return max(1, min(round(epochs * per_epoch), total))

    return StepPlan(total, steps(cfg.eval_freq), steps(cfg.save_ckpt_freq), cfg.batch_size, UNIT, RATE_LABEL)


def onecycle_lrs(model_cfg: MotionSSMConfig, total_steps: int) -> np.ndarray:
    """(total_steps,) the lr of every update under the team's OneCycleLR: read off `make_scheduler` itself, so
    the schedule is exactly the one the models were tuned with, and a function of the step for resumption."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=model_cfg.lr)
    scheduler = make_scheduler(probe, model_cfg, total_steps)
    lrs = np.empty(total_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": nothing is optimized here
        for i in range(total_steps):
            lrs[i] = probe.param_groups[0]["lr"]
            if i + 1 < total_steps:
                scheduler.step()
    return lrs


def physics_terms(model: MotionModelBase, features: torch.Tensor, lengths: torch.Tensor,
                  weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Physics loss terms of (B, T, D) z-scored motions, per sample on its real frames, averaged over samples.

    The same terms PhysicsSSM trains on, computed for any motion model, so MotionSSM and PhysicsSSM runs are
    compared on the same `eval/physics_*` columns.
    """
    spec = model.spec
    joints = to_metres(recover_joints(model.denormalize(features), spec.num_joints), spec)  # (B, T, J, 3) m
    per_sample = [physics_loss(joints[i, :n], spec.fps, spec, weights) for i, n in enumerate(lengths.tolist())]
    return {k: torch.stack([s[k] for s in per_sample]).mean() for k in per_sample[0]}


def _metric_name(key: str) -> str:
    return key.replace("/", "_")  # 'physics/sliding' -> 'physics_sliding' (train/physics_sliding)


class MotionLoss(torch.nn.Module):
    """The loss as the forward pass (DDP wraps this): batch -> (loss, {mse, physics_<term>, ...})."""

    def __init__(self, model: MotionModelBase) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model.compute_loss(batch)
        loss = out.pop("loss")
        return loss, {_metric_name(k): v for k, v in out.items()}


class MotionTask(TrainTask):
    """A text-to-motion SSM as the shared loop sees it."""

    def __init__(self, cfg: MotionConfig, payload: MotionPayload, session: Session) -> None:
        rank, world, device = session.rank, session.world, session.device
        if cfg.batch_size < world:
            raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {world} workers; fix: raise "
                             "batch_size or lower resources.num_workers")
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        torch.manual_seed(cfg.data.seed)
        self.vocab = WordVocab(list(payload.vocab_tokens))
        self.model_cfg = model_config(cfg, len(self.vocab))
        self.model = motion_model_class(cfg.model_kind).from_config(self.model_cfg, payload.mean, payload.std)
        self.model.to(device)
        self.optimizer = make_optimizer(self.model, self.model_cfg)
        self.clip_grad = cfg.grad_clip
        # PhysicsSSM's projector encoder only serves the optional reconstruction term
        self.find_unused_parameters = cfg.model_kind == "PhysicsSSM" and cfg.physics.recon_weight == 0
        self.train_samples = payload.train.samples()
        self.val_samples = payload.val.samples() if rank == 0 else []
        self.plan = epoch_plan(cfg, len(self.train_samples))
        self.steps_per_epoch = self.plan.total_steps // cfg.epochs
        self.lrs = onecycle_lrs(self.model_cfg, self.plan.total_steps)

    def loss_module(self) -> torch.nn.Module:
        return MotionLoss(self.model)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        rows = epoch_rows(len(self.train_samples), self.cfg.batch_size, step, self.cfg.data.seed)
        mine = rows[self.rank :: self.world]  # this rank's share of the global batch
        # captions drawn by (seed, rank, step): a resumed step sees the batch it would have seen
        rng = np.random.default_rng([self.cfg.data.seed, self.rank, step])
        batch = collate_motion([self.train_samples[i] for i in mine], self.vocab, self.model_cfg.max_text_len, rng)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Val-split feature MSE over real frames, physics terms over samples (first caption of each), and
        `eval/loss` = mse + lambda_physics x physics total (the training objective, for sweeps)."""
        model = self.model
        was_training = model.training
        model.eval()
        sq_sum, frame_values, sums, count = 0.0, 0.0, {}, 0
        weights = self.model_cfg.physics_weights if hasattr(self.model_cfg, "physics_weights") else None
        for start in range(0, len(self.val_samples), self.cfg.batch_size):
            chunk = self.val_samples[start : start + self.cfg.batch_size]
            batch = collate_motion(chunk, self.vocab, self.model_cfg.max_text_len)
            feats, lengths = batch["features"].to(self.device), batch["lengths"].to(self.device)
            pred = model.predict(batch["text_tokens"].to(self.device), lengths, feats.shape[1])  # (B, T, D)
            mask = length_mask(lengths, feats.shape[1])  # (B, T)
            values = float(mask.sum()) * feats.shape[-1]
            sq_sum += float(masked_mse(pred, feats, mask)) * values
            frame_values += values
            for key, value in physics_terms(model, pred, lengths, weights).items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(chunk)
            count += len(chunk)
        model.train(was_training)
        out = {"eval/mse": sq_sum / max(frame_values, 1.0)}
        out.update({f"eval/physics_{k}": v / max(count, 1) for k, v in sums.items()})
        out["eval/loss"] = out["eval/mse"] + self.cfg.lambda_physics * out.get("eval/physics_total", 0.0)
        return out

    def lr_at(self, step: int) -> float:
        return float(self.lrs[min(step, len(self.lrs) - 1)])

    def model_config(self) -> dict[str, Any]:
        return {"model_kind": self.cfg.model_kind, "config": self.model_cfg.to_dict()}

    def progress(self, step: int, seen: int) -> str:
        return f"epoch {step / self.steps_per_epoch:.1f}/{self.cfg.epochs}"

    def save_extra(self, folder: Path) -> None:
        self.vocab.save(folder / VOCAB_FILE)


def motion_train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: `config` holds `cfg` (MotionConfig), `opts` (LoopOptions) and `data` (a MotionPayload, or
    its ObjectRef when Ray runs the workers: one copy per node in the object store)."""
    clock = PhaseClock()
    clock.mark("loop")
    session = TrainSession()
    with clock.phase("build"):
        data = config["data"]
        payload: MotionPayload = ray.get(data) if isinstance(data, ray.ObjectRef) else data
        task = MotionTask(config["cfg"], payload, session)
    return run_training(task, config["opts"], session, clock)


def motion_train_in_process(cfg: MotionConfig, opts: LoopOptions, payload: MotionPayload,
                            session: Session) -> dict[str, Any]:
    """One worker in the calling process (a sweep trial's), on the payload its driver packed once."""
    clock = PhaseClock()
    clock.mark("loop")
    with clock.phase("build"):
        task = MotionTask(cfg, payload, session)
    return run_training(task, opts, session, clock)


def load_motion_model(checkpoint: Path) -> tuple[MotionModelBase, WordVocab]:
    """A checkpoint folder -> (model in eval mode, its caption vocabulary); weights load with weights_only."""
    state = read_state(Path(checkpoint))
    kind, model_cfg = state.model_config["model_kind"], state.model_config["config"]
    model = motion_model_class(kind).from_config(model_cfg)
    model.load_state_dict(load_model_state(Path(checkpoint)))  # the mean/std buffers come with the weights
    return model.eval(), WordVocab.load(Path(checkpoint) / VOCAB_FILE)
