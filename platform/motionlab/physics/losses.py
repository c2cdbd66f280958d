"""Differentiable physics losses on joint positions, and the evaluation metrics the field reports.

Inputs are joint positions in metres, y up, (..., T, J, 3); convert dataset units with
`to_metres(recover_joints(features, J), spec)`. The floor is the plane y = 0: the datasets
canonicalise each clip so its lowest joint touches y = 0 and `recover_joints` keeps absolute
heights, so a model that sinks or floats is measured against the same floor the data stands on.

Losses (torch, differentiable, scalars averaged over the batch):
    foot sliding   contact-weighted mean horizontal foot speed (m/s); contact = the foot's lowest
                   joint within 5 cm of the floor and slower than a loose 2 m/s gate (a sliding foot
                   must still count as in contact, or the loss would excuse the slide it penalises)
    penetration    per frame the depth of the deepest joint below the floor (m), averaged
    jerk           |third finite difference| per second^3 (m/s^3), averaged over frames and joints

Metrics (numpy, for evaluation tables; same floor):
    foot-skating ratio  fraction of foot-contact frame pairs (foot below 5 cm in both frames) where the
                        foot's horizontal displacement exceeds 2.5 cm per frame at 20 fps, i.e. 0.5 m/s
                        at any frame rate (the HumanML3D-era convention, scaled by fps)
    penetration         mean per-frame depth of the deepest joint below the floor (m)
    floating            mean height of the lowest foot above the floor over support frames, i.e. frames
                        where that foot is nearly still (< 0.1 m/s, so it should be carrying weight) (m)
    jerk                mean jerk magnitude (m/s^3)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from motionlab.datasets.motion_features import MotionDatasetSpec
from motionlab.physics.kinematics import CONTACT_HEIGHT_M, forward_diff, soft_contact, to_metres

SLIDING_SPEED_GATE_MPS = 2.0
SKATING_SPEED_MPS = 0.025 * 20.0  # 2.5 cm/frame at 20 fps
SUPPORT_SPEED_MPS = 0.1
DEFAULT_WEIGHTS: dict[str, float] = {"sliding": 1.0, "penetration": 10.0, "jerk": 1e-3}
_EPS = 1e-6

__all__ = ["DEFAULT_WEIGHTS", "foot_sliding", "ground_penetration", "jerk", "physics_loss", "to_metres",
           "foot_skating_ratio", "penetration_metric", "floating_metric", "jerk_metric", "motion_metrics"]


def _feet(joints_m: torch.Tensor, spec: MotionDatasetSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Foot centres (mean of the foot's joints) and foot heights (its lowest joint), left then right."""
    # (..., T, J, 3) -> (..., T, 2, 3), (..., T, 2)
    sides = (list(spec.feet_left), list(spec.feet_right))
    centres = torch.stack([joints_m[..., s, :].mean(-2) for s in sides], -2)
    heights = torch.stack([joints_m[..., s, 1].amin(-1) for s in sides], -1)
    return centres, heights


def foot_sliding(joints_m: torch.Tensor, fps: float, spec: MotionDatasetSpec, per_foot: bool = False) -> torch.Tensor:
    """Mean horizontal speed of feet while in contact (m/s): zero for perfectly planted feet.

    Contacts are recomputed from the motion itself (height and speed, soft), so the loss needs no
    labels and follows the model's own feet. `per_foot` returns (2,) left/right instead of a scalar.
    """
    # (..., T, J, 3) -> () or (2,)
    centres, heights = _feet(joints_m, spec)
    vel = forward_diff(centres, fps, dim=-3)  # (..., T-1, 2, 3)
    horizontal = vel[..., [0, 2]].norm(dim=-1)  # (..., T-1, 2)
    pair_height = torch.maximum(heights[..., 1:, :], heights[..., :-1, :])  # low in both frames
    w = soft_contact(pair_height, vel.norm(dim=-1), SLIDING_SPEED_GATE_MPS)
    dims = tuple(range(w.dim() - 1))
    if per_foot:
        return (w * horizontal).sum(dims) / (w.sum(dims) + _EPS)
    return (w * horizontal).sum() / (w.sum() + _EPS)


def ground_penetration(joints_m: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Mean over frames of the deepest joint's depth below the floor (m)."""
    # (..., T, J, 3) -> ()
    depth = torch.relu(floor - joints_m[..., 1])  # (..., T, J)
    return depth.amax(-1).mean()


def jerk(joints_m: torch.Tensor, fps: float) -> torch.Tensor:
    """Mean magnitude of the third time derivative (m/s^3); zero for clips under 4 frames."""
    # (..., T, J, 3) -> ()
    if joints_m.shape[-3] < 4:
        return joints_m.sum() * 0.0
    return forward_diff(joints_m, fps, order=3, dim=-3).norm(dim=-1).mean()


def physics_loss(joints_m: torch.Tensor, fps: float, spec: MotionDatasetSpec,
                 weights: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """{"sliding", "penetration", "jerk", "total"}: each term unweighted, total = sum of weight * term."""
    # (..., T, J, 3) metres -> dict of scalars
    w = dict(DEFAULT_WEIGHTS)
    if weights:
        unknown = set(weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"physics_loss weights: unknown terms {sorted(unknown)}; use {sorted(DEFAULT_WEIGHTS)}")
        w.update(weights)
    terms = {"sliding": foot_sliding(joints_m, fps, spec), "penetration": ground_penetration(joints_m),
             "jerk": jerk(joints_m, fps)}
    terms["total"] = sum(w[k] * v for k, v in terms.items())
    return terms


# ---------------------------------------------------------------------------------------------------
# Evaluation metrics (numpy): hard thresholds, as reported in tables.

def _np(joints_m: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(joints_m, torch.Tensor):
        joints_m = joints_m.detach().cpu().numpy()
    return np.asarray(joints_m, np.float64)


def _feet_np(joints: np.ndarray, spec: MotionDatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    sides = (list(spec.feet_left), list(spec.feet_right))
    centres = np.stack([joints[..., s, :].mean(-2) for s in sides], -2)  # (T, 2, 3)
    heights = np.stack([joints[..., s, 1].min(-1) for s in sides], -1)  # (T, 2)
    return centres, heights


def foot_skating_ratio(joints_m: np.ndarray | torch.Tensor, fps: float, spec: MotionDatasetSpec,
                       height_m: float = CONTACT_HEIGHT_M, speed_mps: float = SKATING_SPEED_MPS,
                       floor: float = 0.0) -> float:
    """Fraction of contact frame pairs (per foot) in which the foot slides faster than `speed_mps`."""
    # (T, J, 3) metres -> float; 0.0 when the feet never touch the floor
    centres, heights = _feet_np(_np(joints_m), spec)
    heights = heights - floor
    contact = (heights[1:] < height_m) & (heights[:-1] < height_m)  # (T-1, 2)
    slide = np.linalg.norm(np.diff(centres[..., [0, 2]], axis=-3), axis=-1) * fps  # (T-1, 2)
    if not contact.any():
        return 0.0
    return float((slide[contact] > speed_mps).mean())


def penetration_metric(joints_m: np.ndarray | torch.Tensor, floor: float = 0.0) -> float:
    """Mean per-frame depth of the deepest joint below the floor (m)."""
    depth = np.maximum(floor - _np(joints_m)[..., 1], 0.0)
    return float(depth.max(-1).mean())


def floating_metric(joints_m: np.ndarray | torch.Tensor, fps: float, spec: MotionDatasetSpec,
                    support_speed_mps: float = SUPPORT_SPEED_MPS, floor: float = 0.0) -> float:
    """Mean height above the floor of the lowest foot in frames where it is still (it should bear weight) (m)."""
    centres, heights = _feet_np(_np(joints_m), spec)
    if len(heights) < 2:
        return float(max(heights.min() - floor, 0.0)) if len(heights) else 0.0
    speed = np.linalg.norm(np.gradient(centres, axis=0), axis=-1) * fps  # (T, 2)
    lowest = heights.argmin(-1)  # (T,)
    rows = np.arange(len(heights))
    support = speed[rows, lowest] < support_speed_mps
    if not support.any():
        return 0.0
    return float(np.maximum(heights[rows, lowest][support] - floor, 0.0).mean())


def jerk_metric(joints_m: np.ndarray | torch.Tensor, fps: float) -> float:
    """Mean jerk magnitude (m/s^3)."""
    x = _np(joints_m)
    if x.shape[-3] < 4:
        return 0.0
    return float(np.linalg.norm(np.diff(x, n=3, axis=-3) * fps ** 3, axis=-1).mean())


def motion_metrics(joints_m: np.ndarray | torch.Tensor, fps: float, spec: MotionDatasetSpec) -> dict[str, float]:
    """All four evaluation metrics of one clip (T, J, 3) in metres."""
    return {"skating_ratio": foot_skating_ratio(joints_m, fps, spec), "penetration_m": penetration_metric(joints_m),
            "floating_m": floating_metric(joints_m, fps, spec), "jerk_mps3": jerk_metric(joints_m, fps)}
