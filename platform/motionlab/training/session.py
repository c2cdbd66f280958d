"""Where a train loop runs: its rank, device, last checkpoint and report channel.

The shared loop (`training.skeleton`) talks to a `Session` only, so the same loop runs on a Ray Train worker
group (`TrainSession`: DDP, Train's `FailureConfig`) and inside a Tune trial's own process (`TuneSession`: one
worker, Tune's `FailureConfig` restarts it from its last reported checkpoint), with the same checkpoint and
report contract in both.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


class Session(ABC):
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    # how long the fault drill waits after a checkpoint report before it kills the process, so the process that
    # restarts the run knows that checkpoint (Train's controller polls its workers every 2 s; Tune's report is
    # synchronous)
    drill_wait_s: float = 0.0

    @abstractmethod
    def checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        """The run's last reported checkpoint as a local folder, None when the run starts afresh."""

    @abstractmethod
    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        """One report (every rank reports, as Train requires); `checkpoint` is a folder the session persists."""

    def prepare(self, module: torch.nn.Module, find_unused_parameters: bool) -> torch.nn.Module:
        """The module the loss runs through: DDP-wrapped across several workers, itself otherwise."""
        return module


class TrainSession(Session):
    """A Ray Train worker: rank and device from Train, checkpoints through Train's storage."""

    drill_wait_s = 5.0  # over two of the controller's 2 s polls

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    @contextlib.contextmanager
    def checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        found = ray.train.get_checkpoint()
        if found is None:
            yield None
            return
        with found.as_directory() as folder:
            yield Path(folder)

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=None if checkpoint is None else
                         ray.train.Checkpoint.from_directory(str(checkpoint)))

    def prepare(self, module: torch.nn.Module, find_unused_parameters: bool) -> torch.nn.Module:
        if self.world == 1:
            return module
        import ray.train.torch

        return ray.train.torch.prepare_model(
            module, move_to_device=False,
            parallel_strategy_kwargs={"find_unused_parameters": find_unused_parameters})


class TuneSession(Session):
    """A Tune trial's own process as the one worker: the trial's GPU when it holds one, checkpoints through Tune."""

    def __init__(self, use_gpu: bool = False,
                 extra: Callable[[dict[str, Any]], dict[str, float]] | None = None) -> None:
        """`extra`: metrics computed from each report and added to it (a sweep's objective)."""
        # Tune sets CUDA_VISIBLE_DEVICES to the trial's GPUs, so the first visible one is the trial's
        self.device = torch.device("cuda", 0) if use_gpu and torch.cuda.is_available() else torch.device("cpu")
        self.extra = extra

    @contextlib.contextmanager
    def checkpoint(self) -> Iterator[Path | None]:
        from ray import tune

        found = tune.get_checkpoint()
        if found is None:
            yield None
            return
        with found.as_directory() as folder:
            yield Path(folder)

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        from ray import tune

        if self.extra is not None:
            metrics = {**metrics, **self.extra(metrics)}
        tune.report(metrics, checkpoint=None if checkpoint is None else tune.Checkpoint.from_directory(str(checkpoint)))
