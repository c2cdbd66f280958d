"""The per-worker train loop of the 4M model that Ray Train runs on every worker.

It receives a Ray Data shard of the train split, masks each batch (4M Dirichlet budgets), and counts its
schedule in tokens. Checkpoints and metrics leave through `ray.train.report`, so a run started again
with the same name, or a worker group restarted after a failure, continues from the last checkpoint;
masking is seeded by (seed, rank, step), so a resumed step sees the masks it would have seen.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.data
import ray.train
import torch

from motionlab.config import ExperimentConfig
from motionlab.masking import MaskingSpec, mask_batch
from motionlab.models.fourm import FourM, FourMConfig
from motionlab.tracking.runs import RunLogger
from motionlab.training.checkpoint import (
    TrainState,
    load_model_state,
    load_trainer_state,
    read_state,
    save_checkpoint,
)
from motionlab.training.data import token_arrays, valid_lengths
from motionlab.training.schedule import TokenSchedule

EVAL_SEED_OFFSET = 10_007  # evaluation masks differ from training masks but are the same at every evaluation
LOG_LINES_PER_EVAL = 5  # log lines (and MLflow train points) between two evaluations
SHUFFLE_BUFFER = 256
CACHE_BUDGET_BYTES = 512 * 2**20
FAULT_DRILL_WAIT_S = 5.0  # over two of Ray Train's 2 s controller polls
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoopOptions:
    """What the driver tells the workers besides the config."""

    mlflow_uri: str | None = None
    run_id: str | None = None
    text_eos: int | None = None
    fail_at_step: int | None = None  # fault drill: rank 0 dies once at this step (marker file below)
    fail_marker: str | None = None
    keep_dir: str | None = None  # local mode persists no checkpoint: the final one is copied here
    poison_at_step: int | None = None  # fault drill: the loss turns NaN from this step on (a diverging run)


class LossModule(torch.nn.Module):
    """The loss as the forward pass, so DDP all-reduces the gradients of every head it reaches."""

    def __init__(self, model: FourM) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict, dict]:
        return self.model.compute_loss(batch)


def to_tensors(arrays: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def masked_batch(
    batch: dict[str, Any], cfg: ExperimentConfig, spec: MaskingSpec, rng: np.random.Generator, eos: int | None,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Parquet rows -> 4M encoder/decoder tensors: enc_* (B, N_in), dec_* (B, N_tgt)."""
    tokens = token_arrays(batch, list(cfg.modalities))  # no-op for cached (B, L) arrays
    masked = mask_batch(tokens, spec, rng, valid_lengths(tokens, eos))
    return to_tensors(masked.as_dict(), device)


def build_optimizer(model: torch.nn.Module, cfg: ExperimentConfig) -> torch.optim.AdamW:
    """AdamW (0.9, 0.95); weight decay on matrices only, never on norms, biases or embeddings' 1-d params."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def autocast(cfg: ExperimentConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST[cfg.dtype])


class EpochCache:
    """Batches of the train shard forever: streamed by Ray Data the first epoch, then from memory.

    A small tokenised split (a few hundred MB at most) is re-read cheaper from this process than by
    starting a new streaming execution every epoch, which costs seconds on a small node; a larger
    shard goes over the budget, drops the cache and streams every epoch.
    """

    def __init__(self, shard: Any, batch_size: int, seed: int, columns: list[str],
                 budget_bytes: int = CACHE_BUDGET_BYTES) -> None:
        self.shard, self.batch_size, self.seed, self.columns = shard, batch_size, seed, columns
        self.budget = budget_bytes
        self.rows: dict[str, np.ndarray] | None = None

    def _stream(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        return self.shard.iter_batches(batch_size=self.batch_size, batch_format="numpy",
                                       local_shuffle_buffer_size=SHUFFLE_BUFFER, local_shuffle_seed=self.seed + epoch)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        epoch = 0
        kept: list[dict[str, np.ndarray]] | None = []
        size = 0
        for batch in self._stream(epoch):
            tokens = token_arrays(batch, self.columns)
            if kept is not None:
                kept.append(tokens)
                size += sum(a.nbytes for a in tokens.values())
                if size > self.budget:
                    kept = None
            yield tokens
        if kept == []:
            raise RuntimeError("the train split gave this worker no rows; prepare more videos or use fewer workers")
        if kept is not None:
            self.rows = {c: np.concatenate([b[c] for b in kept]) for c in self.columns}
        while True:
            epoch += 1
            if self.rows is None:
                yield from (token_arrays(b, self.columns) for b in self._stream(epoch))
                continue
            n = len(next(iter(self.rows.values())))
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield {c: a[idx] for c, a in self.rows.items()}


@torch.no_grad()
def eval_batches(shard: Any, columns: list[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    """The eval split as token arrays, read once: every evaluation then sees the same rows in the same order."""
    return [token_arrays(b, columns) for b in shard.iter_batches(batch_size=batch_size, batch_format="numpy")]


def evaluate(model: FourM, batches: list[dict[str, np.ndarray]], cfg: ExperimentConfig, spec: MaskingSpec,
             opts: LoopOptions, device: torch.device) -> dict[str, float]:
    """Eval-split loss and token accuracy per modality under fixed masks, weighted by target counts."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(cfg.data.seed + EVAL_SEED_OFFSET)
    sums: dict[str, list[float]] = {}
    for batch in batches:
        tensors = masked_batch(batch, cfg, spec, rng, opts.text_eos, device)
        with autocast(cfg, device):
            _, losses, accs = model.compute_loss(tensors)
        for name, loss in losses.items():
            mod = cfg.modality_index(name)
            count = float(((tensors["dec_mod"] == mod) & ~tensors["dec_pad"]).sum())
            acc = sums.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += float(loss) * count
            acc[1] += float(accs[name]) * count
            acc[2] += count
    model.train(was_training)
    out: dict[str, float] = {}
    for name, (loss_sum, acc_sum, count) in sums.items():
        out[f"eval/loss_{name}"] = loss_sum / count
        out[f"eval/acc_{name}"] = acc_sum / count
    if sums:
        out["eval/loss"] = float(np.mean([out[f"eval/loss_{n}"] for n in sums]))
    return out


def diverged(loss_value: float, world: int) -> bool:
    """True on every rank when any rank's loss is not finite, so all ranks stop at the same step (no rank is
    left waiting in an all-reduce)."""
    bad = torch.tensor([0.0 if math.isfinite(loss_value) else 1.0])
    if world > 1:
        torch.distributed.all_reduce(bad)
    return bool(bad.item() > 0)


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: `config` holds `cfg` (ExperimentConfig) and `opts` (LoopOptions)."""
    cfg: ExperimentConfig = config["cfg"]
    opts: LoopOptions = config["opts"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.data.seed)

    schedule = TokenSchedule.from_config(cfg)
    per_worker = max(1, cfg.batch_size // world)
    spec = MaskingSpec.from_config(cfg)
    model_config = FourMConfig.from_experiment(cfg)
    model = FourM(model_config).to(device)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type) if cfg.dtype == "fp16" else None

    step, tokens_seen = 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = read_state(Path(folder))
            model.load_state_dict(load_model_state(Path(folder)))
            trainer_state = load_trainer_state(Path(folder))
        optimizer.load_state_dict(trainer_state["optimizer"])
        if scaler is not None and "scaler" in trainer_state:
            scaler.load_state_dict(trainer_state["scaler"])
        step, tokens_seen = state.step, state.tokens_seen
        if rank == 0:
            print(f"resuming from step {step} ({tokens_seen:,} tokens seen) of {schedule.total_steps}")
    raw_model = model
    model = LossModule(raw_model)
    if world > 1:
        # a batch may hold no targets of some modality, leaving its head without gradients this step
        model = ray.train.torch.prepare_model(model, move_to_device=False,
                                              parallel_strategy_kwargs={"find_unused_parameters": True})
    logger = RunLogger(opts.mlflow_uri, opts.run_id if rank == 0 else None)
    log_every = max(1, schedule.eval_every // LOG_LINES_PER_EVAL)

    train_shard = ray.train.get_dataset_shard("train")
    eval_rows = eval_batches(ray.train.get_dataset_shard("eval"), list(cfg.modalities), per_worker) if rank == 0 else []
    batches = iter(EpochCache(train_shard, per_worker, cfg.data.seed + rank, list(cfg.modalities)))
    window_loss: dict[str, list[float]] = {}
    t_window, steps_window = time.perf_counter(), 0
    t_start, start_step = time.perf_counter(), step
    last: dict[str, float] = {}
    if step == 0:
        # the untrained model's eval loss: the baseline every later evaluation is read against (and a sweep's
        # first point); every rank reports, as Train requires, with rank 0's numbers
        initial = evaluate(raw_model, eval_rows, cfg, spec, opts, device) if rank == 0 else {}
        logger.metrics(initial, 0)
        last.update(initial)
        ray.train.report({"step": 0, "tokens_seen": 0, **initial})
    model.train()
    while step < schedule.total_steps:
        if opts.fail_at_step is not None and step == opts.fail_at_step and rank == 0 and opts.fail_marker \
                and not Path(opts.fail_marker).exists():
            Path(opts.fail_marker).write_text(f"killed at step {step}\n")
            # the controller learns of a reported checkpoint at its next poll: let it, as a real crash rarely
            # lands within one poll of a checkpoint
            time.sleep(FAULT_DRILL_WAIT_S)
            print(f"fault drill: rank 0 exits at step {step}", flush=True)
            os._exit(17)
        lr = schedule.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([cfg.data.seed, rank, step])
        tensors = masked_batch(next(batches), cfg, spec, rng, opts.text_eos, device)
        with autocast(cfg, device):
            loss, losses, _ = model(tensors)
        if opts.poison_at_step is not None and step >= opts.poison_at_step:
            loss = loss * float("nan")
        loss_value = loss.item()
        if diverged(loss_value, world):  # before the update, so the last checkpoint's weights stay sane
            # a NaN comes back after every restart: end the run cleanly (no FailureConfig retries) and let
            # the driver mark it failed with the reason
            reason = f"train loss is {loss_value} at step {step}; lower lr or use fp32"
            print(f"diverged: {reason}", flush=True)
            return {"step": step, "start_step": start_step, "world_size": world, "diverged": reason}
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        step += 1
        tokens_seen += schedule.tokens_per_step
        steps_window += 1
        window_loss.setdefault("train/loss", []).append(loss_value)
        for name, value in losses.items():
            window_loss.setdefault(f"train/loss_{name}", []).append(float(value))

        metrics: dict[str, float] = {}
        if schedule.is_due(step - 1, log_every):
            elapsed = time.perf_counter() - t_window
            tok_s = steps_window * schedule.tokens_per_step / max(elapsed, 1e-9)
            metrics = {k: float(np.mean(v)) for k, v in window_loss.items()}
            metrics.update(lr=lr, tokens_seen=float(tokens_seen), tokens_per_s=tok_s)
            if rank == 0:
                rate = (step - start_step) / max(time.perf_counter() - t_start, 1e-9)
                eta = (schedule.total_steps - step) / max(rate, 1e-9)
                print(f"step {step}/{schedule.total_steps} | loss {metrics['train/loss']:.4f} | lr {lr:.2e} | "
                      f"{tok_s:,.0f} tok/s | {tokens_seen / 1e6:.2f}M tokens | eta {_eta(eta)}", flush=True)
            window_loss, t_window, steps_window = {}, time.perf_counter(), 0
        due_eval = schedule.is_due(step - 1, schedule.eval_every)
        due_ckpt = schedule.is_due(step - 1, schedule.ckpt_every)
        if due_eval and rank == 0:
            metrics.update(evaluate(raw_model, eval_rows, cfg, spec, opts, device))
            print("eval " + " | ".join(f"{k.removeprefix('eval/')} {v:.4f}" for k, v in metrics.items()
                                       if k.startswith("eval/")), flush=True)
        if metrics:
            logger.metrics(metrics, step)
            last.update(metrics)
        if due_eval or due_ckpt:
            report = {"step": step, "tokens_seen": tokens_seen, **last}
            if due_ckpt and rank == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    state = TrainState(step, tokens_seen, model_config.to_dict(), {"run_id": opts.run_id})
                    save_checkpoint(Path(tmp), raw_model, optimizer, scaler, state)
                    if opts.keep_dir and step == schedule.total_steps:
                        save_checkpoint(Path(opts.keep_dir), raw_model, optimizer, scaler, state)
                    ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            else:
                ray.train.report(report)
    return {"step": step, "start_step": start_step, "world_size": world, "tokens_seen": tokens_seen, **last}
