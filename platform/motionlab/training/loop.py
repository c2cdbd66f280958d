"""The per-worker train loop of the 4M model that Ray Train runs on every worker.

It receives a Ray Data shard of the train split, masks each batch (4M Dirichlet budgets), and counts its
schedule in tokens. The loop itself (resume, checkpoints and reports, fault drills, divergence, the log
line) is the shared `training.skeleton`; this module supplies the 4M batches, loss and evaluation. Masking
is seeded by (seed, rank, step), so a resumed step sees the masks it would have seen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import ray.data
import ray.train
import torch

from motionlab.config import ExperimentConfig
from motionlab.masking import MaskingSpec, mask_batch
from motionlab.models.fourm import FourM, FourMConfig
from motionlab.training.data import PreparedData, TokenSplits, token_arrays, valid_lengths
from motionlab.training.phases import PhaseClock
from motionlab.training.schedule import TokenSchedule
from motionlab.training.session import Session, TrainSession
from motionlab.training.skeleton import LoopOptions, StepPlan, TrainTask, autocast_for, run_training

__all__ = ["LoopOptions", "train_loop"]  # LoopOptions moved to the skeleton; sweeps import it from here

EVAL_SEED_OFFSET = 10_007  # evaluation masks differ from training masks but are the same at every evaluation
SHUFFLE_BUFFER = 256
CACHE_BUDGET_BYTES = 512 * 2**20


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
    return autocast_for(cfg.dtype, device)


class EpochCache:
    """Batches of the train shard forever: streamed by Ray Data the first epoch, then from memory.

    A small tokenised split (a few hundred MB at most) is re-read cheaper from this process than by
    starting a new streaming execution every epoch, which costs seconds on a small node; a larger
    shard goes over the budget, drops the cache and streams every epoch.
    """

    def __init__(self, shard: Any, batch_size: int, seed: int, columns: list[str],
                 budget_bytes: int = CACHE_BUDGET_BYTES, rows: dict[str, np.ndarray] | None = None) -> None:
        """`rows` ({name: (N, L) int64}, a split already in memory): no shard, every epoch a seeded permutation."""
        self.shard, self.batch_size, self.seed, self.columns = shard, batch_size, seed, columns
        self.budget = budget_bytes
        self.rows = rows
        if rows is not None and len(next(iter(rows.values()))) == 0:
            raise RuntimeError("the train split has no rows; prepare more videos")

    def _stream(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        return self.shard.iter_batches(batch_size=self.batch_size, batch_format="numpy",
                                       local_shuffle_buffer_size=SHUFFLE_BUFFER, local_shuffle_seed=self.seed + epoch)

    def _first_epoch(self) -> Iterator[dict[str, np.ndarray]]:
        """Epoch 0 streamed from the shard, kept in memory when it fits the budget."""
        kept: list[dict[str, np.ndarray]] | None = []
        size = 0
        for batch in self._stream(0):
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

    def _permuted(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        n = len(next(iter(self.rows.values())))
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield {c: a[idx] for c, a in self.rows.items()}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        epoch = 0
        if self.rows is None:
            yield from self._first_epoch()
            epoch = 1
        while True:
            if self.rows is None:
                yield from (token_arrays(b, self.columns) for b in self._stream(epoch))
            else:
                yield from self._permuted(epoch)
            epoch += 1


def eval_batches(data: PreparedData, columns: list[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    """The eval split as batches of {name: (B, L) int64}, read once by rank 0 straight from its Parquet files (a
    few MB: a Ray Data execution for them cost seconds a run on a small node); every evaluation then sees the same
    rows in the same order."""
    return as_batches(data.read_tokens("eval", columns), batch_size)


def as_batches(rows: dict[str, np.ndarray], batch_size: int) -> list[dict[str, np.ndarray]]:
    """{name: (N, L)} -> consecutive batches of {name: (B, L)}, in row order."""
    n = len(next(iter(rows.values())))
    return [{c: a[start : start + batch_size] for c, a in rows.items()} for start in range(0, n, batch_size)]


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


class FourMTask(TrainTask):
    """The 4M model as the shared loop sees it: masked batches of the train split, per-modality losses.

    The train split arrives as this worker's Ray Data shard, or in memory (`splits`: an in-process sweep trial,
    whose driver read the splits once).
    """

    def __init__(self, cfg: ExperimentConfig, opts: LoopOptions, session: Session, data: PreparedData | None = None,
                 splits: TokenSplits | None = None) -> None:
        self.cfg, self.opts, self.rank, self.device = cfg, opts, session.rank, session.device
        torch.manual_seed(cfg.train_seed)
        schedule = TokenSchedule.from_config(cfg)
        self.schedule = schedule
        self.plan = StepPlan(schedule.total_steps, schedule.eval_every, schedule.ckpt_every, schedule.tokens_per_step,
                             unit="tokens", rate_label="tok/s")
        self.spec = MaskingSpec.from_config(cfg)
        self.fourm_config = FourMConfig.from_experiment(cfg)
        self.model = FourM(self.fourm_config).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.clip_grad, self.dtype = cfg.clip_grad, cfg.dtype
        # a batch may hold no targets of some modality, leaving its head without gradients this step
        self.find_unused_parameters = True
        per_worker = max(1, cfg.batch_size // session.world)
        columns = list(cfg.modalities)
        seed = cfg.train_seed + self.rank
        if splits is not None:
            self.eval_rows = as_batches(splits.eval, per_worker)
            self.batches = iter(EpochCache(None, per_worker, seed, columns, rows=splits.train))
        else:
            self.eval_rows = eval_batches(data, columns, per_worker) if self.rank == 0 else []
            self.batches = iter(EpochCache(ray.train.get_dataset_shard("train"), per_worker, seed, columns))

    def loss_module(self) -> torch.nn.Module:
        return LossModule(self.model)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        # seeded by (seed, rank, step): a resumed step sees the masks it would have seen
        rng = np.random.default_rng([self.cfg.train_seed, self.rank, step])
        return masked_batch(next(self.batches), self.cfg, self.spec, rng, self.opts.text_eos, self.device)

    def forward(self, module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        loss, losses, _ = module(batch)
        return loss, {f"loss_{name}": value for name, value in losses.items()}

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.model, self.eval_rows, self.cfg, self.spec, self.opts, self.device)

    def lr_at(self, step: int) -> float:
        return self.schedule.lr_at(step)

    def model_config(self) -> dict[str, Any]:
        return self.fourm_config.to_dict()

    def progress(self, step: int, seen: int) -> str:
        return f"{seen / 1e6:.2f}M tokens"


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: `config` holds `cfg` (ExperimentConfig), `opts` (LoopOptions) and `data` (PreparedData:
    rank 0 reads its eval split; the train split arrives as Ray Data shards)."""
    clock = PhaseClock()
    clock.mark("loop")
    session = TrainSession()
    with clock.phase("build"):
        task = FourMTask(config["cfg"], config["opts"], session, data=config["data"])
    return run_training(task, config["opts"], session, clock)


def train_in_process(cfg: ExperimentConfig, opts: LoopOptions, splits: TokenSplits, session: Session) -> dict[str, Any]:
    """One worker in the calling process (a sweep trial's), on splits already in memory."""
    clock = PhaseClock()
    clock.mark("loop")
    with clock.phase("build"):
        task = FourMTask(cfg, opts, session, splits=splits)
    return run_training(task, opts, session, clock)
