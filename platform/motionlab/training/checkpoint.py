"""Checkpoint folders: plain state dicts and JSON, so loading never unpickles code (`weights_only=True`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MODEL_FILE = "model.pt"
TRAINER_FILE = "trainer.pt"
META_FILE = "meta.json"
SEEN_SUFFIX = "_seen"


@dataclass
class TrainState:
    """Where a run stands: `step` optimizer updates done, `seen` in the schedule's unit (4M: tokens, motion:
    samples), written as `<unit>_seen` so a checkpoint's meta.json reads plainly."""

    step: int
    seen: int
    model_config: dict[str, Any]
    extra: dict[str, Any]
    unit: str = "tokens"

    @property
    def tokens_seen(self) -> int:
        return self.seen


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler | None,
    state: TrainState,
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / MODEL_FILE)
    trainer: dict[str, Any] = {}
    if optimizer is not None:
        trainer["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        trainer["scaler"] = scaler.state_dict()
    torch.save(trainer, folder / TRAINER_FILE)
    meta = {"step": state.step, f"{state.unit}_seen": state.seen, "model_config": state.model_config,
            **state.extra}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def read_state(folder: Path) -> TrainState:
    meta = json.loads((Path(folder) / META_FILE).read_text())
    step, config = meta.pop("step"), meta.pop("model_config")
    counter = next((k for k in meta if k.endswith(SEEN_SUFFIX)), f"tokens{SEEN_SUFFIX}")
    seen = meta.pop(counter, 0)
    return TrainState(step=step, seen=seen, model_config=config, extra=meta, unit=counter.removesuffix(SEEN_SUFFIX))


def load_model_state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(folder) / MODEL_FILE, map_location="cpu", weights_only=True)


def load_trainer_state(folder: Path) -> dict[str, Any]:
    path = Path(folder) / TRAINER_FILE
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else {}
