"""Shared kinematic helpers for the physics state and losses: units, finite differences, facing, contacts.

Everything here is differentiable torch so the same code serves training losses, model features
and evaluation. Conventions: y is up, the floor is the plane y = 0 (the datasets canonicalise every
clip so its lowest joint touches y = 0, and `recover_joints` keeps that height), positions in metres,
time in seconds.
"""

from __future__ import annotations

import numpy as np
import torch

from motionlab.datasets.motion_features import MotionDatasetSpec

# Soft contact: a foot is in contact when its lowest joint is within CONTACT_HEIGHT_M of the floor
# and it moves slower than a speed gate. The sigmoid widths keep the flag differentiable.
CONTACT_HEIGHT_M = 0.05
CONTACT_HEIGHT_WIDTH_M = 0.01
CONTACT_SPEED_WIDTH_MPS = 0.1


def to_metres(joints: torch.Tensor | np.ndarray, spec: MotionDatasetSpec) -> torch.Tensor:
    """Dataset units -> metres (KIT stores about 1.7 mm per unit; HumanML3D is already in metres)."""
    # (..., T, J, 3) -> (..., T, J, 3)
    if not isinstance(joints, torch.Tensor):
        joints = torch.as_tensor(np.asarray(joints, np.float32))
    return joints * spec.metres_per_unit


def central_diff(x: torch.Tensor, dt: float, dim: int = -3) -> torch.Tensor:
    """Time derivative with the same number of frames: central inside, one-sided at the ends.

    Keeping T frames lets per-frame states line up with the motion; a one-frame clip has zero rate.
    """
    x = x.movedim(dim, 0)
    n = x.shape[0]
    if n < 2:
        return torch.zeros_like(x).movedim(0, dim)
    first = (x[1:2] - x[0:1]) / dt
    last = (x[-1:] - x[-2:-1]) / dt
    inner = (x[2:] - x[:-2]) / (2 * dt)
    return torch.cat([first, inner, last], 0).movedim(0, dim)


def forward_diff(x: torch.Tensor, fps: float, order: int = 1, dim: int = -3) -> torch.Tensor:
    """order-th forward difference per second^order: T frames -> T - order frames."""
    for _ in range(order):
        x = x.diff(dim=dim) * fps
    return x


def facing_yaw(joints: torch.Tensor, spec: MotionDatasetSpec) -> torch.Tensor:
    """Heading angle about +y (rad, 0 = facing +z) from the hips and shoulders."""
    # (..., T, J, 3) -> (..., T)
    r_hip, l_hip, r_sh, l_sh = spec.face_joints
    across = (joints[..., r_hip, :] - joints[..., l_hip, :]) + (joints[..., r_sh, :] - joints[..., l_sh, :])
    # forward = up x across = (across_z, 0, -across_x)
    return torch.atan2(across[..., 2], -across[..., 0])


def yaw_rate(joints: torch.Tensor, spec: MotionDatasetSpec, fps: float) -> torch.Tensor:
    """Turning rate about +y (rad/s), wrapped so crossing +-pi does not spike."""
    # (..., T, J, 3) -> (..., T)
    yaw = facing_yaw(joints, spec)
    if yaw.shape[-1] < 2:
        return torch.zeros_like(yaw)
    step = yaw.diff(dim=-1)
    step = torch.atan2(torch.sin(step), torch.cos(step))  # (..., T-1)
    # per-frame rate: average of the steps either side (one-sided at the ends)
    padded = torch.cat([step[..., :1], step, step[..., -1:]], -1)
    return 0.5 * (padded[..., 1:] + padded[..., :-1]) * fps


def foot_heights(joints_m: torch.Tensor, spec: MotionDatasetSpec) -> torch.Tensor:
    """Height of each foot's lowest joint above the floor (m), left then right."""
    # (..., T, J, 3) -> (..., T, 2)
    left = joints_m[..., list(spec.feet_left), 1].amin(-1)
    right = joints_m[..., list(spec.feet_right), 1].amin(-1)
    return torch.stack([left, right], -1)


def foot_velocities(joints_m: torch.Tensor, spec: MotionDatasetSpec, fps: float) -> torch.Tensor:
    """Per-frame velocity of each foot (mean of its joints), left then right, same T (central differences)."""
    # (..., T, J, 3) -> (..., T, 2, 3)
    feet = torch.stack([joints_m[..., list(spec.feet_left), :].mean(-2),
                        joints_m[..., list(spec.feet_right), :].mean(-2)], -2)
    return central_diff(feet, 1.0 / fps, dim=-3)


def soft_contact(height_m: torch.Tensor, speed_mps: torch.Tensor, speed_gate_mps: float,
                 height_m_threshold: float = CONTACT_HEIGHT_M) -> torch.Tensor:
    """Differentiable contact weight in (0, 1): low AND slow. Same shape as the inputs."""
    low = torch.sigmoid((height_m_threshold - height_m) / CONTACT_HEIGHT_WIDTH_M)
    slow = torch.sigmoid((speed_gate_mps - speed_mps) / CONTACT_SPEED_WIDTH_MPS)
    return low * slow
