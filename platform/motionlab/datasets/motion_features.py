"""Skeletons and the HumanML3D motion features: joints -> features and features -> joints.

Text-to-motion models (and their evaluators) are trained on the published HumanML3D feature
layout, so generated data and model outputs must use exactly that layout for numbers to be
comparable. Per frame, for J joints (D = 12 * J - 1):

    root  4          rotation velocity about y (rad/frame, half-angle as published), linear
                     velocity x, z in the frame's own heading, root height
    ric   (J-1) * 3  joint positions relative to the root in xz, in the root's heading frame
    rot   (J-1) * 6  continuous 6D rotations (first two columns of each joint's local rotation)
    vel   J * 3      joint velocities in the heading frame
    feet  4          contact flags: left pair, then right pair

`recover_joints` inverts root + ric exactly (it is what the dataset used to write `new_joints`);
rot, vel and feet are redundant with positions and are not read back.

Quaternions are (w, x, y, z), Hamilton product, as in the published code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# The published inverse kinematics smooths the facing direction over time before taking the
# root rotation (sigma in frames); kept so our features match the public data's.
FORWARD_SMOOTH_SIGMA = 20.0


@dataclass(frozen=True)
class MotionDatasetSpec:
    """What differs between KIT-ML and HumanML3D: skeleton, frame rate, units, filters.

    `metres_per_unit` converts the dataset's position unit to metres (KIT-ML stores a body
    normalised to 1000 units tall, so one unit is about 1.7 mm of a 1.7 m person).
    `feet_threshold` is the published contact rule: squared per-frame foot displacement (units^2)
    below it counts as contact.
    """

    name: str
    num_joints: int
    fps: float
    metres_per_unit: float
    feet_threshold: float
    face_joints: tuple[int, int, int, int]  # right hip, left hip, right shoulder, left shoulder
    feet_left: tuple[int, int]
    feet_right: tuple[int, int]
    raw_offsets: tuple[tuple[int, int, int], ...]  # (J, 3) rest direction of each joint from its parent
    kinematic_chain: tuple[tuple[int, ...], ...]
    joint_names: tuple[str, ...]
    min_length: int = 24  # frames, inclusive
    max_length: int = 200  # frames, exclusive (the public loaders drop clips of 200 frames or more)

    @property
    def feature_dim(self) -> int:
        return feature_dim(self.num_joints)

    @property
    def parents(self) -> tuple[int, ...]:
        parents = [-1] * self.num_joints
        for chain in self.kinematic_chain:
            for a, b in zip(chain[:-1], chain[1:], strict=True):
                parents[b] = a
        return tuple(parents)

    def slices(self) -> dict[str, slice]:
        """Where each feature group sits in the D columns."""
        j = self.num_joints
        bounds = {"root": 4, "ric": (j - 1) * 3, "rot": (j - 1) * 6, "vel": j * 3, "feet": 4}
        out, start = {}, 0
        for key, size in bounds.items():
            out[key] = slice(start, start + size)
            start += size
        return out


def feature_dim(num_joints: int) -> int:
    """4 + (J-1)*3 + (J-1)*6 + J*3 + 4: 263 for 22 joints, 251 for 21."""
    return 12 * num_joints - 1


HUMANML3D = MotionDatasetSpec(
    name="humanml3d",
    num_joints=22,
    fps=20.0,
    metres_per_unit=1.0,
    feet_threshold=0.002,
    face_joints=(2, 1, 17, 16),
    feet_left=(7, 10),
    feet_right=(8, 11),
    raw_offsets=((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, -1, 0),
                 (0, -1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1),
                 (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0)),
    kinematic_chain=((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21),
                     (9, 13, 16, 18, 20)),
    joint_names=("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
                 "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
                 "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                 "left_wrist", "right_wrist"),
)

# KIT-ML: indices as the public text-to-motion code uses them (feet, facing joints). In KIT's
# processed data (facing +z, y up) joints 5-7 and 11-15 sit at -x, i.e. on the person's right.
KIT = MotionDatasetSpec(
    name="kit",
    num_joints=21,
    fps=12.5,
    metres_per_unit=0.0017,
    feet_threshold=0.05,
    face_joints=(11, 16, 5, 8),
    feet_left=(19, 20),
    feet_right=(14, 15),
    raw_offsets=((0, 0, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0),
                 (-1, 0, 0), (0, -1, 0), (0, -1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1),
                 (-1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1)),
    kinematic_chain=((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7),
                     (3, 8, 9, 10)),
    joint_names=("root", "lower_back", "upper_back", "neck", "head", "right_shoulder", "right_elbow",
                 "right_wrist", "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
                 "right_ankle", "right_ball", "right_toe", "left_hip", "left_knee", "left_ankle", "left_ball",
                 "left_toe"),
)

SPECS = {spec.name: spec for spec in (KIT, HUMANML3D)}


# ---------------------------------------------------------------------------------------------------
# Quaternions on numpy (float64), (..., 4) as (w, x, y, z).

def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], -1)


def qinv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (..., 3) vectors by (..., 4) unit quaternions."""
    qv = q[..., 1:]
    uv = np.cross(qv, v)
    return v + 2.0 * (q[..., :1] * uv + np.cross(qv, uv))


def qbetween(v0: np.ndarray, v1: np.ndarray) -> np.ndarray:
    """The shortest rotation taking direction v0 to v1, (..., 3) -> (..., 4).

    Opposite directions have no unique shortest rotation (the published formula returns zeros and
    then NaN); we turn half a circle about an axis perpendicular to v0 instead, the vertical axis
    for horizontal directions, so a person facing exactly -z still gets a heading.
    """
    v0 = np.asarray(v0, np.float64)
    v1 = np.asarray(v1, np.float64)
    v0, v1 = np.broadcast_arrays(v0, v1)
    axis = np.cross(v0, v1)
    w = np.sqrt((v0 ** 2).sum(-1) * (v1 ** 2).sum(-1)) + (v0 * v1).sum(-1)
    q = np.concatenate([w[..., None], axis], -1)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    degenerate = norm[..., 0] < 1e-9 * np.maximum((v0 ** 2).sum(-1), 1e-300)
    if degenerate.any():
        d0 = v0[degenerate]
        basis = np.eye(3)[np.argmin(np.abs(d0), -1)]
        perp = np.cross(d0, basis)
        perp /= np.linalg.norm(perp, axis=-1, keepdims=True)
        q = q.copy()
        q[degenerate] = np.concatenate([np.zeros((len(perp), 1)), perp], -1)
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
    return q / norm


def quat_to_cont6d(q: np.ndarray) -> np.ndarray:
    """(..., 4) -> (..., 6): the first two columns of the rotation matrix, concatenated."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    col0 = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], -1)
    col1 = np.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], -1)
    return np.concatenate([col0, col1], -1)


# ---------------------------------------------------------------------------------------------------
# Features -> joints.

def recover_joints(features: ArrayT, num_joints: int) -> ArrayT:
    """(..., T, D) features -> (..., T, J, 3) joint positions, the published `recover_from_ric`.

    Accepts numpy (computed in float64, returned in the input's float dtype) or torch (computed in
    the input's dtype and device, differentiable, so losses on positions can train a model that
    outputs features). Features must be de-normalised (not z-scored).
    """
    expected = feature_dim(num_joints)
    if features.shape[-1] != expected:
        raise ValueError(
            f"features: last dimension is {features.shape[-1]} but {num_joints} joints need {expected} "
            f"(4 + {num_joints - 1}*3 + {num_joints - 1}*6 + {num_joints}*3 + 4); pass the dataset's joint count "
            "(KIT-ML 21, HumanML3D 22) or features of that layout")
    if isinstance(features, torch.Tensor):
        return _recover_torch(features, num_joints)
    array = np.asarray(features)
    out = _recover_torch(torch.from_numpy(array.astype(np.float64)), num_joints).numpy()
    return out.astype(array.dtype if array.dtype.kind == "f" else np.float32)


def _rotate_y(x: torch.Tensor, z: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the inverse of the heading rotation (angle 2a about y) to the x, z components."""
    return x * cos - z * sin, x * sin + z * cos


def _recover_torch(f: torch.Tensor, num_joints: int) -> torch.Tensor:
    # f: (..., T, D)
    rot_vel = f[..., 0]  # (..., T)
    # the heading of frame t integrates the rotation velocities of frames before it
    half = torch.cumsum(torch.cat([torch.zeros_like(rot_vel[..., :1]), rot_vel[..., :-1]], -1), -1)
    cos, sin = torch.cos(2 * half), torch.sin(2 * half)  # the quaternion (cos a, 0, sin a, 0) turns by 2a

    # root: per-frame velocity (expressed in that frame's heading) turned back to the world and summed
    zero = torch.zeros_like(f[..., :1, 1])
    vx = torch.cat([zero, f[..., :-1, 1]], -1)
    vz = torch.cat([zero, f[..., :-1, 2]], -1)
    wx, wz = _rotate_y(vx, vz, cos, sin)
    root_x, root_z = torch.cumsum(wx, -1), torch.cumsum(wz, -1)  # (..., T)
    root_y = f[..., 3]

    ric = f[..., 4:4 + (num_joints - 1) * 3].reshape(*f.shape[:-1], num_joints - 1, 3)  # (..., T, J-1, 3)
    jx, jz = _rotate_y(ric[..., 0], ric[..., 2], cos[..., None], sin[..., None])
    joints = torch.stack([jx + root_x[..., None], ric[..., 1], jz + root_z[..., None]], -1)
    root = torch.stack([root_x, root_y, root_z], -1)[..., None, :]  # (..., T, 1, 3)
    return torch.cat([root, joints], -2)  # (..., T, J, 3)


# ---------------------------------------------------------------------------------------------------
# Joints -> features.

def _forward(joints: np.ndarray, face: tuple[int, int, int, int]) -> np.ndarray:
    """(..., J, 3) -> (..., 3) unit facing direction in the ground plane (right-handed, y up)."""
    r_hip, l_hip, r_sh, l_sh = face
    across = (joints[..., r_hip, :] - joints[..., l_hip, :]) + (joints[..., r_sh, :] - joints[..., l_sh, :])
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    return forward / np.linalg.norm(forward, axis=-1, keepdims=True)


def inverse_kinematics(joints: np.ndarray, spec: MotionDatasetSpec) -> np.ndarray:
    """(T, J, 3) positions -> (T, J, 4) local joint rotations (root: heading about y).

    Each bone's rotation is the shortest rotation from its rest direction (`raw_offsets`) to its
    posed direction, relative to its parent's accumulated rotation, as the published skeleton
    does; twist about a bone is therefore not recoverable from positions and is zero. The
    published code pairs the facing joints here as (left hip - right hip) + (right shoulder -
    left shoulder); we keep that pairing so rotations and root velocities match the public data.
    """
    r_hip, l_hip, r_sh, l_sh = spec.face_joints
    across = (joints[:, l_hip] - joints[:, r_hip]) + (joints[:, r_sh] - joints[:, l_sh])
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    forward = gaussian_filter1d(forward, FORWARD_SMOOTH_SIGMA, axis=0, mode="nearest")
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    root_quat = qbetween(forward, np.array([0.0, 0.0, 1.0]))
    root_quat[0] = (1.0, 0.0, 0.0, 0.0)  # as published: the first frame's heading is the identity

    quats = np.zeros(joints.shape[:-1] + (4,))
    quats[:, 0] = root_quat
    offsets = np.asarray(spec.raw_offsets, np.float64)
    for chain in spec.kinematic_chain:
        rot = root_quat
        for parent, child in zip(chain[:-1], chain[1:], strict=True):
            bone = joints[:, child] - joints[:, parent]
            bone = bone / np.linalg.norm(bone, axis=-1, keepdims=True)
            local = qmul(qinv(rot), qbetween(np.broadcast_to(offsets[child], bone.shape), bone))
            quats[:, child] = local
            rot = qmul(rot, local)
    return quats


def canonicalise(joints: np.ndarray, spec: MotionDatasetSpec) -> np.ndarray:
    """(T, J, 3) -> (T, J, 3): lowest joint on the floor (y = 0), first root over the origin,
    first frame facing +z. These are the positions `recover_joints(joints_to_features(x))` returns."""
    positions = np.array(joints, np.float64)
    positions[..., 1] -= positions[..., 1].min()
    positions -= positions[0, 0] * np.array([1.0, 0.0, 1.0])
    turn = qbetween(_forward(positions[0], spec.face_joints), np.array([0.0, 0.0, 1.0]))
    return qrot(np.broadcast_to(turn, positions.shape[:-1] + (4,)), positions)


def foot_contacts(positions: np.ndarray, spec: MotionDatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """(T, J, 3) -> (T-1, 2) left and (T-1, 2) right flags: 1 where the squared displacement to the
    next frame is below the dataset's threshold (the published rule: speed only, no height)."""
    step = ((positions[1:] - positions[:-1]) ** 2).sum(-1)  # (T-1, J)
    left = (step[:, list(spec.feet_left)] < spec.feet_threshold).astype(np.float64)
    right = (step[:, list(spec.feet_right)] < spec.feet_threshold).astype(np.float64)
    return left, right


def joints_to_features(joints: np.ndarray, spec: MotionDatasetSpec) -> np.ndarray:
    """(T, J, 3) joint positions in the dataset's units -> (T-1, D) float32 features.

    The published `process_file` without its skeleton retargeting step (bone lengths are kept as
    given): canonicalise (floor, origin, face +z), contacts, inverse kinematics for the 6D rotations
    and the heading, then root velocities, heading-relative positions and velocities. One frame is
    lost to the velocities; `recover_joints` of the result gives `canonicalise(joints)[:-1]`.
    """
    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (spec.num_joints, 3):
        raise ValueError(f"joints: shape {joints.shape}, expected (frames, {spec.num_joints}, 3) for {spec.name}")
    if len(joints) < 2:
        raise ValueError(f"joints: {len(joints)} frame(s); features need at least 2 (velocities)")
    if not np.isfinite(joints).all():
        raise ValueError("joints: contains NaN or infinite values; drop or repair those frames first")

    positions = canonicalise(joints, spec)  # (T, J, 3)
    feet_l, feet_r = foot_contacts(positions, spec)
    quats = inverse_kinematics(positions, spec)  # (T, J, 4)
    rot6d = quat_to_cont6d(quats)  # (T, J, 6)
    heading = quats[:, 0]  # (T, 4)

    root_vel = qrot(heading[1:], positions[1:, 0] - positions[:-1, 0])  # (T-1, 3)
    turn = qmul(heading[1:], qinv(heading[:-1]))  # (T-1, 4)
    rot_vel = np.arcsin(np.clip(turn[:, 2:3], -1.0, 1.0))

    local = positions.copy()
    local[..., [0, 2]] -= positions[:, :1, [0, 2]]
    local = qrot(np.repeat(heading[:, None], spec.num_joints, 1), local)  # (T, J, 3)
    joint_vel = qrot(np.repeat(heading[:-1, None], spec.num_joints, 1), positions[1:] - positions[:-1])

    n = len(positions) - 1
    features = np.concatenate([
        rot_vel, root_vel[:, [0, 2]], local[:-1, 0, 1:2],
        local[:-1, 1:].reshape(n, -1),
        rot6d[:-1, 1:].reshape(n, -1),
        joint_vel.reshape(n, -1),
        feet_l, feet_r,
    ], -1)
    return features.astype(np.float32)
