"""A 64-d physics state per frame, computed from joint positions: what a physics-aware model conditions on.

Slots (metres, seconds, radians; y up; floor at y = 0; see `STATE_SLOTS`):

    slot     size  content
    0        1     gravity prior (m/s^2, constant, -9.81 by default)
    1        1     pelvis (root joint 0) height
    2        1     pelvis vertical velocity
    3        1     pelvis vertical acceleration
    4:7      3     root linear velocity (world x, y, z)
    7        1     root yaw rate about +y (rad/s, from the hip/shoulder facing direction)
    8:10     2     left, right soft foot contact in (0, 1)
    10:13    3     centre-of-mass velocity
    13:16    3     centre-of-mass acceleration
    16:19    3     root position (world x, y, z)
    19:22    3     angular momentum proxy about the CoM, per unit mass (m^2/s)
    22:64    42    zero padding (room for later features without changing the width)

The centre of mass is the plain mean of the joints (every joint weighs the same): it needs no
body-mass table that differs between KIT and HumanML3D skeletons, and it is what most
text-to-motion physics work uses. The angular momentum proxy is mean_j (r_j - c) x (v_j - v_c)
under the same equal masses. Contacts: the foot's lowest joint within 5 cm of the floor and the
foot slower than 0.5 m/s (the 2.5 cm/frame at 20 fps skating convention), as smooth sigmoids.
Velocities are central differences (one-sided at the clip ends) so the state keeps T frames.
"""

from __future__ import annotations

import torch

from motionlab.datasets.motion_features import MotionDatasetSpec
from motionlab.physics.kinematics import central_diff, foot_heights, foot_velocities, soft_contact, to_metres, yaw_rate

PHYSICS_STATE_DIM = 64
GRAVITY = -9.81
STATE_CONTACT_SPEED_MPS = 0.5

STATE_SLOTS: dict[str, slice] = {
    "gravity": slice(0, 1),
    "pelvis_height": slice(1, 2),
    "pelvis_vertical_velocity": slice(2, 3),
    "pelvis_vertical_acceleration": slice(3, 4),
    "root_velocity": slice(4, 7),
    "root_yaw_rate": slice(7, 8),
    "foot_contacts": slice(8, 10),
    "com_velocity": slice(10, 13),
    "com_acceleration": slice(13, 16),
    "root_position": slice(16, 19),
    "angular_momentum": slice(19, 22),
    "padding": slice(22, 64),
}


def physics_state(joints: torch.Tensor, spec: MotionDatasetSpec, gravity: float = GRAVITY) -> torch.Tensor:
    """Joint positions in the dataset's units -> per-frame physics state (see the module docstring).

    Differentiable in `joints`, so a model can be trained through it (e.g. on `recover_joints` output).
    Accepts any leading batch shape; the dtype and device follow the input.
    """
    # joints: (B, T, J, 3) dataset units -> (B, T, 64)
    if joints.shape[-1] != 3 or joints.shape[-2] != spec.num_joints:
        raise ValueError(f"joints: shape {tuple(joints.shape)}, expected (..., T, {spec.num_joints}, 3) "
                         f"for {spec.name}")
    x = to_metres(joints, spec)  # (B, T, J, 3)
    dt = 1.0 / spec.fps
    vel = central_diff(x, dt)  # (B, T, J, 3)
    root = x[..., 0, :]  # (B, T, 3)
    root_vel = vel[..., 0, :]
    root_acc = central_diff(root_vel, dt, dim=-2)

    com = x.mean(-2)  # (B, T, 3)
    com_vel = vel.mean(-2)
    com_acc = central_diff(com_vel, dt, dim=-2)
    ang = torch.linalg.cross(x - com[..., None, :], vel - com_vel[..., None, :], dim=-1).mean(-2)  # (B, T, 3)

    heights = foot_heights(x, spec)  # (B, T, 2)
    speeds = foot_velocities(x, spec, spec.fps).norm(dim=-1)  # (B, T, 2)
    contacts = soft_contact(heights, speeds, STATE_CONTACT_SPEED_MPS)

    parts = [
        torch.full_like(root[..., :1], gravity),
        root[..., 1:2], root_vel[..., 1:2], root_acc[..., 1:2],
        root_vel, yaw_rate(x, spec, spec.fps)[..., None],
        contacts, com_vel, com_acc, root, ang,
    ]
    state = torch.cat(parts, -1)
    pad = PHYSICS_STATE_DIM - state.shape[-1]
    return torch.cat([state, state.new_zeros(*state.shape[:-1], pad)], -1)  # (B, T, 64)
