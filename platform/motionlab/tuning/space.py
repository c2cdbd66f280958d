"""Search spaces: a 4M sweep's Dirichlet alphas and lr, a PhysicsSSM sweep's `lambda_physics` and lr.

Trial parameters are named after what they change (`input_alphas.tok_rgb`, `lambda_physics`, `lr`) and turn
back into the config's own `key=value` overrides, so a trial's config is validated exactly like a hand-written
one. Every space answers the same questions (`param_space`, `base_point`, `describe`, `trial_config`), so one
sweep driver serves both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ray import tune

from motionlab.config import ExperimentConfig, MotionConfig, load_config, load_motion_config

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

    def trial_config(self, cfg: ExperimentConfig, params: dict[str, float]) -> ExperimentConfig:
        return trial_config(cfg, params)


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


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(float(value), bounds[0]), bounds[1])


@dataclass(frozen=True)
class PhysicsSpace:
    """`lambda_physics` and lr, both log-uniform (a weight and a step size: their scale is what is unknown);
    `lr_range` None means a decade either side of the config's lr."""

    lambda_range: tuple[float, float] = (1e-3, 10.0)
    lr_range: tuple[float, float] | None = None

    def lr_bounds(self, cfg: MotionConfig) -> tuple[float, float]:
        return self.lr_range or (cfg.lr / 10, cfg.lr * 10)

    def param_space(self, cfg: MotionConfig) -> dict[str, Any]:
        return {"lambda_physics": tune.loguniform(*self.lambda_range), "lr": tune.loguniform(*self.lr_bounds(cfg))}

    def base_point(self, cfg: MotionConfig) -> dict[str, float]:
        """The config's own lambda and lr, clipped into the space: the sweep's baseline trial."""
        return {"lambda_physics": _clip(cfg.lambda_physics, self.lambda_range),
                "lr": _clip(cfg.lr, self.lr_bounds(cfg))}

    def describe(self, cfg: MotionConfig) -> dict[str, str]:
        lr_low, lr_high = self.lr_bounds(cfg)
        return {"space.lambda_physics": f"loguniform({self.lambda_range[0]:g}, {self.lambda_range[1]:g})",
                "space.lr": f"loguniform({lr_low:g}, {lr_high:g})"}

    @staticmethod
    def overrides(params: dict[str, float]) -> list[str]:
        return [f"{key}={float(params[key]):.6g}" for key in ("lambda_physics", "lr") if key in params]

    def trial_config(self, cfg: MotionConfig, params: dict[str, float]) -> MotionConfig:
        """The base config (same file, preset and overrides) with the trial's lambda and lr applied last."""
        return load_motion_config(cfg.source, preset=cfg.preset, overrides=[*cfg.overrides, *self.overrides(params)])
