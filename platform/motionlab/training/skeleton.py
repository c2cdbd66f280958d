"""The model-independent part of a per-worker train loop: every Ray Train run of the platform goes through it.

A model family (4M, the text-to-motion SSMs) supplies a `TrainTask`: its model and optimizer, the batch of a
step, the loss and its named parts, an evaluation and the learning rate of a step. The skeleton owns what
must behave the same for all of them: resuming from the session's last checkpoint, DDP wrapping, the fault
drills, the all-reduced divergence flag, gradient clipping and mixed precision, the log line with its ETA,
the evaluation and checkpoint cadence, and every report. So a fix to resumption or failure handling reaches
every model at once. The loop runs on a Ray Train worker group or inside a Tune trial's process
(`training.session`), and times its phases (`training.phases`) into every report.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motionlab.training.checkpoint import (
    TrainState,
    load_model_state,
    load_trainer_state,
    read_state,
    save_checkpoint,
)
from motionlab.training.phases import PhaseClock
from motionlab.training.session import Session, TrainSession

LOG_LINES_PER_EVAL = 5  # log lines (and MLflow train points) between two evaluations
FAULT_DRILL_EXIT_CODE = 17
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoopOptions:
    """What the driver tells the workers besides the config."""

    mlflow_uri: str | None = None
    run_id: str | None = None
    text_eos: int | None = None  # 4M: the text tokenizer's EOS (where caption rows end)
    fail_at_step: int | None = None  # fault drill: rank 0 dies once at this step (marker file below)
    fail_marker: str | None = None
    keep_dir: str | None = None  # local mode persists no checkpoint: the final one is copied here
    poison_at_step: int | None = None  # fault drill: the loss turns NaN from this step on (a diverging run)
    started_at: float | None = None  # Unix time the sweep trial began: the phase table's origin


@dataclass(frozen=True)
class StepPlan:
    """The schedule in optimizer steps, whatever unit a family states it in (4M: tokens, motion: epochs).

    `per_step` counts the unit per optimizer step over all workers; metrics are `<unit>_seen` and
    `<unit>_per_s`, and the log line shows `rate_label`.
    """

    total_steps: int
    eval_every: int
    ckpt_every: int
    per_step: int
    unit: str = "tokens"
    rate_label: str = "tok/s"

    def is_due(self, step: int, every: int) -> bool:
        """True after update `step` (0-based) when a periodic action falls due, and always at the end."""
        done = step + 1
        return done % every == 0 or done == self.total_steps

    @property
    def log_every(self) -> int:
        return max(1, self.eval_every // LOG_LINES_PER_EVAL)


class TrainTask(ABC):
    """What a model family supplies to `run_training`; built inside the worker, before any checkpoint is read."""

    plan: StepPlan
    model: torch.nn.Module  # the raw model: checkpointed and evaluated
    optimizer: torch.optim.Optimizer
    clip_grad: float = 0.0  # 0: no clipping
    dtype: str = "fp32"  # fp32, bf16 (autocast) or fp16 (autocast and a grad scaler)
    find_unused_parameters: bool = False  # DDP: True when some heads may get no gradient in a step

    @abstractmethod
    def loss_module(self) -> torch.nn.Module:
        """A module whose forward takes a batch, so DDP's all-reduce covers every parameter the loss reaches."""

    @abstractmethod
    def batch(self, step: int) -> Any:
        """This rank's batch for optimizer step `step` (0-based); called once per step, in order."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Evaluation metrics (`eval/...`) of the current weights; rank 0 only."""

    @abstractmethod
    def lr_at(self, step: int) -> float:
        """Learning rate of update `step`: a function of the step alone, so a resumed run needs no scheduler state."""

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """What rebuilds the model from a checkpoint (written to meta.json)."""

    def forward(self, module: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """(loss, {metric suffix: value}); the suffixes become `train/<suffix>`."""
        return module(batch)

    def progress(self, step: int, seen: int) -> str:
        """How far the run is, in the family's own terms, for the log line."""
        return f"{seen:,} {self.plan.unit}"

    def save_extra(self, folder: Path) -> None:
        """Files a checkpoint needs beside the weights (e.g. a vocabulary); none by default."""
        return None


def autocast_for(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST[dtype])


def diverged(loss_value: float, world: int) -> bool:
    """True on every rank when any rank's loss is not finite, so all ranks stop at the same step (no rank is
    left waiting in an all-reduce)."""
    bad = torch.tensor([0.0 if math.isfinite(loss_value) else 1.0])
    if world > 1:
        torch.distributed.all_reduce(bad)
    return bool(bad.item() > 0)


def format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _fault_drill(opts: LoopOptions, step: int, session: Session) -> None:
    if opts.fail_at_step is None or step != opts.fail_at_step or session.rank != 0 or not opts.fail_marker:
        return
    if Path(opts.fail_marker).exists():
        return
    Path(opts.fail_marker).write_text(f"killed at step {step}\n")
    # let whatever restarts the run learn of the last reported checkpoint, as a real crash rarely lands within
    # one poll of a checkpoint
    time.sleep(session.drill_wait_s)
    print(f"fault drill: rank 0 exits at step {step}", flush=True)
    os._exit(FAULT_DRILL_EXIT_CODE)


def _resume(task: TrainTask, scaler: torch.amp.GradScaler | None, session: Session) -> tuple[int, int]:
    """(step, seen) of the run's last checkpoint, with weights, optimizer and scaler restored; (0, 0) if none."""
    with session.checkpoint() as folder:
        if folder is None:
            return 0, 0
        state = read_state(folder)
        task.model.load_state_dict(load_model_state(folder))
        trainer_state = load_trainer_state(folder)
    task.optimizer.load_state_dict(trainer_state["optimizer"])
    if scaler is not None and "scaler" in trainer_state:
        scaler.load_state_dict(trainer_state["scaler"])
    if session.rank == 0:
        print(f"resuming from step {state.step} ({state.seen:,} {task.plan.unit} seen) of {task.plan.total_steps}")
    return state.step, state.seen


def _update(task: TrainTask, model: torch.nn.Module, scaler: torch.amp.GradScaler | None,
            loss: torch.Tensor) -> None:
    """Backward pass, clipping and one optimizer step (through the grad scaler under fp16)."""
    optimizer = task.optimizer
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if task.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), task.clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def run_training(task: TrainTask, opts: LoopOptions, session: Session | None = None,
                 clock: PhaseClock | None = None) -> dict[str, Any]:
    """Train `task` to the end of its plan (or resume it there); returns rank's final metrics and counters.

    `session` None: a Ray Train worker's. `clock` carries the phases timed before the loop (building the task).
    """
    session = session or TrainSession()
    clock = clock or PhaseClock()
    if opts.started_at is not None:
        clock.marks.setdefault("trial", opts.started_at)
    rank, world, device = session.rank, session.world, session.device
    plan, optimizer, unit = task.plan, task.optimizer, task.plan.unit
    scaler = torch.amp.GradScaler(device.type) if task.dtype == "fp16" else None

    with clock.phase("resume"):
        step, seen = _resume(task, scaler, session)
    raw_model = task.model
    model = session.prepare(task.loss_module(), task.find_unused_parameters)
    # imported here: MLflow takes a second to import, and Train's controller, which unpickles this loop, never logs
    from motionlab.tracking.runs import RunLogger

    logger = RunLogger(opts.mlflow_uri, opts.run_id if rank == 0 else None)

    def report(metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        session.report({**metrics, **clock.metrics()}, checkpoint)

    window: dict[str, list[float]] = {}
    t_window, steps_window = time.perf_counter(), 0
    t_start, start_step = time.perf_counter(), step
    last: dict[str, float] = {}
    if step == 0:
        # the untrained model's evaluation: the baseline every later one is read against (and a sweep's first
        # point); every rank reports, as Train requires, with rank 0's numbers
        with clock.phase("eval"):
            initial = task.evaluate() if rank == 0 else {}
        if initial:
            print("eval (untrained) " + " | ".join(f"{k.removeprefix('eval/')} {v:.4f}" for k, v in initial.items()),
                  flush=True)
        logger.metrics(initial, 0)
        last.update(initial)
        report({"step": 0, f"{unit}_seen": 0, **initial})
    elif step >= plan.total_steps:
        # resumed at the end: the driver died after the last checkpoint, perhaps before its watcher (a restored
        # Tune trial) saw the last report; report the final weights' evaluation once more, not logged again
        with clock.phase("eval"):
            final = task.evaluate() if rank == 0 else {}
        last.update(final)
        report({"step": step, f"{unit}_seen": seen, **final})
    model.train()
    first = True  # this process's first batch reads the dataset and its first step warms up autograd
    while step < plan.total_steps:
        _fault_drill(opts, step, session)
        lr = task.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with clock.phase("first_batch" if first else "batches"):
            batch = task.batch(step)
        t_step = time.perf_counter()
        with autocast_for(task.dtype, device):
            loss, parts = task.forward(model, batch)
        if opts.poison_at_step is not None and step >= opts.poison_at_step:
            loss = loss * float("nan")
        loss_value = loss.item()
        if diverged(loss_value, world):  # before the update, so the last checkpoint's weights stay sane
            # a NaN comes back after every restart: end the run cleanly (no FailureConfig retries) and let the
            # driver mark it failed with the reason
            reason = f"train loss is {loss_value} at step {step}; lower lr or use fp32"
            print(f"diverged: {reason}", flush=True)
            return {"step": step, "start_step": start_step, "world_size": world, "diverged": reason}
        _update(task, model, scaler, loss)
        clock.add("first_step" if first else "steps", time.perf_counter() - t_step)
        first = False
        step += 1
        seen += plan.per_step
        steps_window += 1
        window.setdefault("train/loss", []).append(loss_value)
        for name, value in parts.items():
            window.setdefault(f"train/{name}", []).append(float(value))

        metrics: dict[str, float] = {}
        if plan.is_due(step - 1, plan.log_every):
            elapsed = time.perf_counter() - t_window
            rate = steps_window * plan.per_step / max(elapsed, 1e-9)
            metrics = {k: float(np.mean(v)) for k, v in window.items()}
            metrics.update({"lr": lr, f"{unit}_seen": float(seen), f"{unit}_per_s": rate})
            if rank == 0:
                steps_per_s = (step - start_step) / max(time.perf_counter() - t_start, 1e-9)
                eta = (plan.total_steps - step) / max(steps_per_s, 1e-9)
                print(f"step {step}/{plan.total_steps} | loss {metrics['train/loss']:.4f} | lr {lr:.2e} | "
                      f"{rate:,.0f} {plan.rate_label} | {task.progress(step, seen)} | eta {format_eta(eta)}",
                      flush=True)
            window, t_window, steps_window = {}, time.perf_counter(), 0
        due_eval = plan.is_due(step - 1, plan.eval_every)
        due_ckpt = plan.is_due(step - 1, plan.ckpt_every)
        if due_eval and rank == 0:
            with clock.phase("eval"):
                metrics.update(task.evaluate())
            print("eval " + " | ".join(f"{k.removeprefix('eval/')} {v:.4f}" for k, v in metrics.items()
                                       if k.startswith("eval/")), flush=True)
        if metrics:
            with clock.phase("mlflow"):
                logger.metrics(metrics, step)
            last.update(metrics)
        if due_eval or due_ckpt:
            values = {"step": step, f"{unit}_seen": seen, **last}
            if due_ckpt and rank == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    with clock.phase("checkpoint"):  # the files; persisting them is the report's
                        state = TrainState(step, seen, task.model_config(), {"run_id": opts.run_id}, unit=unit)
                        save_checkpoint(Path(tmp), raw_model, optimizer, scaler, state)
                        task.save_extra(Path(tmp))
                        if opts.keep_dir and step == plan.total_steps:
                            save_checkpoint(Path(opts.keep_dir), raw_model, optimizer, scaler, state)
                            task.save_extra(Path(opts.keep_dir))
                    report(values, Path(tmp))
            else:
                report(values)
    return {"step": step, "start_step": start_step, "world_size": world, f"{unit}_seen": seen, **last}
