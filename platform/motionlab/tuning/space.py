"""The search space of an alpha sweep: each modality's input and target Dirichlet alpha, and the learning rate.

Trial parameters are named after what they change (`input_alphas.tok_rgb`, `lr`) and turn back into the
config's own `key=value` overrides, so a trial's config is validated exactly like a hand-written one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ray import tune

from motionlab.config import ExperimentConfig, load_config

ALPHA_FIELDS = ("input_alphas", "target_alphas")


@dataclass(frozen=True)
class SearchSpace:
    """Log-uniform ranges; `lr_range` None means a decade either side of the config's lr."""

    alpha_range: tuple[float, float] = (0.1, 10.0)
    lr_range: tuple[float, float] | None = None

    def lr_bounds(self, cfg: ExperimentConfig) -> tuple[float, float]:
        return self.lr_range or (cfg.lr / 10, cfg.lr * 10)

    def param_space(self, cfg: ExperimentConfig) -> dict[str, Any]:
        low, high = self.alpha_range
        space: dict[str, Any] = {f"{field}.{m}": tune.loguniform(low, high)
                                 for field in ALPHA_FIELDS for m in cfg.modalities}
        space["lr"] = tune.loguniform(*self.lr_bounds(cfg))
        return space

    def base_point(self, cfg: ExperimentConfig) -> dict[str, float]:
        """The config's own alphas and lr as a trial, clipped into the space, so a sweep measures its baseline."""
        low, high = self.alpha_range
        point = {f"{field}.{m}": min(max(float(getattr(cfg, field)[i]), low), high)
                 for field in ALPHA_FIELDS for i, m in enumerate(cfg.modalities)}
        lr_low, lr_high = self.lr_bounds(cfg)
        point["lr"] = min(max(float(cfg.lr), lr_low), lr_high)
        return point

    def describe(self, cfg: ExperimentConfig) -> dict[str, str]:
        """The space as MLflow params of the sweep's parent run."""
        lr_low, lr_high = self.lr_bounds(cfg)
        return {"space.alphas": f"loguniform({self.alpha_range[0]:g}, {self.alpha_range[1]:g})",
                "space.lr": f"loguniform({lr_low:g}, {lr_high:g})"}


def trial_overrides(cfg: ExperimentConfig, params: dict[str, float]) -> list[str]:
    """Trial parameters -> `key=value` overrides in the config's own keys (alphas as per-modality lists)."""
    out = []
    for field in ALPHA_FIELDS:
        values = [float(params.get(f"{field}.{m}", getattr(cfg, field)[i])) for i, m in enumerate(cfg.modalities)]
        out.append(f"{field}={json.dumps([round(v, 6) for v in values])}")
    if "lr" in params:
        out.append(f"lr={float(params['lr']):.6g}")
    return out


def trial_config(cfg: ExperimentConfig, params: dict[str, float]) -> ExperimentConfig:
    """The base config (same file, preset and overrides) with a trial's parameters applied last."""
    return load_config(cfg.source, preset=cfg.preset, overrides=[*cfg.overrides, *trial_overrides(cfg, params)])
