"""Joint positions -> poses of pybullet's DeepMimic humanoid (`humanoid/humanoid.urdf` at scale 0.25).

Approximate, analytic retargeting (no optimisation), so it is fast, deterministic and never diverges:

* positions are scaled by leg length (humanoid thigh + shin over the motion's median thigh + shin),
  about the origin, so the floor stays at y = 0 and strides keep their proportion to the legs;
* each link's world orientation is the frame that points its bone exactly along the observed bone
  and turns its second axis as close as possible to a reference direction: the pelvis from the hips'
  across axis and the spine, the chest from the shoulders and the neck, hips and shoulders from the
  thigh / upper arm and the plane the knee / elbow bends in (the revolute knee and elbow turn about
  that plane's normal), the ankles from the foot (ankle -> toe) and the knee axis;
* the root height is then shifted once per clip so that the humanoid's soles sit where the motion's
  lowest foot joints sit in frames where a foot is still (the humanoid's legs and ankles differ from
  the skeleton's, so without this a correct motion would float or sink).

Bone twist about the limb axes is not recoverable from positions and stays at the rest pose. The
output frames use the layout of pybullet's `humanoid3d_*.txt` clips (see `motionlab.datasets.mocap`),
so `mocap.forward_kinematics` maps a retargeted or simulated pose back to the 21 KIT joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from motionlab.datasets import mocap
from motionlab.datasets.motion_features import MotionDatasetSpec

FRAME_DIM = 44  # duration, root position (3), root quaternion (4), then the JOINTS of mocap
SUPPORT_SPEED_MPS = 0.2  # a foot slower than this bears weight (used for the sole height shift)
# mocap's BALL/TOE points sit 0.17 URDF units under the ankle, the foot's collision box bottom 0.20:
# the soles are placed by the box, so a retargeted foot neither sinks nor hovers
SOLE_BELOW_FOOT_POINTS_M = (0.20 - 0.17) * mocap.URDF_SCALE
_PLANE_BIAS = 0.05  # how much a straight limb's bend axis leans on the parent's across axis


@dataclass(frozen=True)
class Rig:
    """Where the retargeting's landmarks sit in a dataset's joint order."""

    pelvis: int
    spine_low: int  # a spine joint above the pelvis (pelvis up axis, chest origin)
    neck: int
    head: int
    hip: tuple[int, int]  # right, left
    knee: tuple[int, int]
    ankle: tuple[int, int]
    toe: tuple[int, int]
    shoulder: tuple[int, int]
    elbow: tuple[int, int]
    wrist: tuple[int, int]

    def landmarks(self) -> list[int]:
        """The joints compared with the humanoid's, in `KIT_LANDMARKS` order."""
        pairs = (self.hip, self.knee, self.ankle, self.toe, self.shoulder, self.elbow, self.wrist)
        return [self.pelvis, self.neck, self.head] + [side[k] for side in pairs for k in (0, 1)]


RIGS = {
    "kit": Rig(pelvis=0, spine_low=1, neck=3, head=4, hip=(11, 16), knee=(12, 17), ankle=(13, 18), toe=(15, 20),
               shoulder=(5, 8), elbow=(6, 9), wrist=(7, 10)),
    "humanml3d": Rig(pelvis=0, spine_low=3, neck=12, head=15, hip=(2, 1), knee=(5, 4), ankle=(8, 7), toe=(11, 10),
                     shoulder=(17, 16), elbow=(19, 18), wrist=(21, 20)),
}
KIT_LANDMARKS = RIGS["kit"].landmarks()  # the same landmarks in the humanoid's KIT-21 forward kinematics

_OFFSETS: dict[str, tuple[str, np.ndarray]] | None = None


def humanoid_offsets() -> dict[str, tuple[str, np.ndarray]]:
    """URDF joint offsets of the humanoid at the example scale (read once per process)."""
    global _OFFSETS
    if _OFFSETS is None:
        _OFFSETS = mocap.urdf_offsets(mocap.data_path() / "humanoid" / "humanoid.urdf")
    return _OFFSETS


def rig_for(spec: MotionDatasetSpec) -> Rig:
    if spec.name not in RIGS:
        raise ValueError(f"no humanoid retargeting rig for dataset {spec.name!r}; known: {sorted(RIGS)}")
    return RIGS[spec.name]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 3), (n, 3) -> (n, 3, 3) orthonormal columns [a, b orthogonalised to a, a x b]."""
    a = _unit(a)
    b = _unit(b - (b * a).sum(-1, keepdims=True) * a)
    return np.stack([a, b, np.cross(a, b)], -1)


def _align(a: np.ndarray, b: np.ndarray, a0: tuple[float, ...], b0: tuple[float, ...]) -> np.ndarray:
    """World rotations taking the local direction a0 exactly onto a, and b0 as close as possible to b."""
    rest = _frame(np.array([a0], float), np.array([b0], float))[0]
    return _frame(a, b) @ rest.T


def _angle(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip((_unit(d1) * _unit(d2)).sum(-1), -1.0, 1.0))


def _quat_wxyz(m: np.ndarray) -> np.ndarray:
    """(n, 3, 3) -> (n, 4) (w, x, y, z), sign-continuous over time (interpolation needs no flips)."""
    q = Rotation.from_matrix(m).as_quat()[:, [3, 0, 1, 2]]
    for k in range(1, len(q)):
        if (q[k] * q[k - 1]).sum() < 0:
            q[k] = -q[k]
    return q


def _z_rot(angle: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(angle), np.sin(angle), np.ones_like(angle), np.zeros_like(angle)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def leg_scale(joints_m: np.ndarray, rig: Rig) -> float:
    """Humanoid leg length over the motion's (median thigh + shin, both legs)."""
    off = humanoid_offsets()
    humanoid = np.linalg.norm(off["right_knee"][1]) + np.linalg.norm(off["right_ankle"][1])
    legs = [np.linalg.norm(joints_m[:, rig.knee[s]] - joints_m[:, rig.hip[s]], axis=-1)
            + np.linalg.norm(joints_m[:, rig.ankle[s]] - joints_m[:, rig.knee[s]], axis=-1) for s in (0, 1)]
    return float(humanoid / max(np.median(np.concatenate(legs)), 1e-6))


def retarget(joints_m: np.ndarray, spec: MotionDatasetSpec, fps: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(T, J, 3) metres, y up -> ((T, 44) humanoid frames, (T, J, 3) scaled and shifted motion, scale).

    The second output is the motion in the humanoid's proportions: what the retargeted pose is
    compared with (retargeting error) and what the evaluation treats as the reference.
    """
    rig = rig_for(spec)
    scale = leg_scale(joints_m, rig)
    x = joints_m * scale
    n = len(x)
    rs, ls = (rig.hip[0], rig.hip[1])
    root = _align(x[:, rs] - x[:, ls], x[:, rig.spine_low] - x[:, rig.pelvis], (0, 0, 1), (0, 1, 0))
    chest = _align(x[:, rig.neck] - x[:, rig.spine_low], x[:, rig.shoulder[0]] - x[:, rig.shoulder[1]],
                   (0, 1, 0), (0, 0, 1))
    neck = _align(x[:, rig.head] - x[:, rig.neck], chest[:, :, 2], (0, 1, 0), (0, 0, 1))
    toe_rest = tuple(np.array(mocap.TOE) * mocap.URDF_SCALE)

    frame = np.zeros((n, FRAME_DIM))
    frame[:, 0] = 1.0 / fps
    frame[:, 1:4] = x[:, rig.pelvis]
    frame[:, 4:8] = _quat_wxyz(root)
    parts: dict[str, np.ndarray] = {"chest": _quat_wxyz(np.einsum("nji,njk->nik", root, chest)),
                                    "neck": _quat_wxyz(np.einsum("nji,njk->nik", chest, neck))}
    for k, side in enumerate(("right", "left")):
        # legs: the knee bends backwards about the hip's z axis, so z = shin x thigh
        d1 = x[:, rig.knee[k]] - x[:, rig.hip[k]]
        d2 = x[:, rig.ankle[k]] - x[:, rig.knee[k]]
        bend = np.cross(_unit(d2), _unit(d1)) + _PLANE_BIAS * root[:, :, 2]
        hip = _align(-d1, bend, (0, 1, 0), (0, 0, 1))
        knee_angle = -_angle(d1, d2)
        knee = hip @ _z_rot(knee_angle)
        ankle = _align(x[:, rig.toe[k]] - x[:, rig.ankle[k]], knee[:, :, 2], toe_rest, (0, 0, 1))
        parts[f"{side}_hip"] = _quat_wxyz(np.einsum("nji,njk->nik", root, hip))
        parts[f"{side}_knee"] = knee_angle[:, None]
        parts[f"{side}_ankle"] = _quat_wxyz(np.einsum("nji,njk->nik", knee, ankle))
        # arms: the elbow bends forwards about the shoulder's z axis, so z = upper x fore
        u1 = x[:, rig.elbow[k]] - x[:, rig.shoulder[k]]
        u2 = x[:, rig.wrist[k]] - x[:, rig.elbow[k]]
        bend = np.cross(_unit(u1), _unit(u2)) + _PLANE_BIAS * chest[:, :, 2]
        shoulder = _align(-u1, bend, (0, 1, 0), (0, 0, 1))
        parts[f"{side}_shoulder"] = _quat_wxyz(np.einsum("nji,njk->nik", chest, shoulder))
        parts[f"{side}_elbow"] = _angle(u1, u2)[:, None]
    col = 8
    for name, size in mocap.JOINTS:
        frame[:, col:col + size] = parts[name]
        col += size

    # one vertical shift per clip: soles where the motion's still feet are
    fk = mocap.forward_kinematics(frame, humanoid_offsets())  # (T, 21, 3)
    ref_feet = x[:, list(spec.feet_left) + list(spec.feet_right)]
    hum_feet = fk[:, [14, 15, 19, 20]]
    speed = np.linalg.norm(np.gradient(ref_feet, axis=0), axis=-1).min(-1) * fps if n > 1 else np.zeros(n)
    support = speed < SUPPORT_SPEED_MPS
    if not support.any():
        support = np.ones(n, bool)
    shift = float(np.median((ref_feet[..., 1].min(-1) - hum_feet[..., 1].min(-1))[support]))
    frame[:, 2] += shift + SOLE_BELOW_FOOT_POINTS_M
    return frame, x, scale


def frame_joints(frames: np.ndarray) -> np.ndarray:
    """(T, 44) humanoid frames -> (T, 21, 3) KIT-layout joints (the project's humanoid mapping)."""
    return mocap.forward_kinematics(frames, humanoid_offsets())
