"""A Penn Action look-alike: the project's embedded default data and the tests' fixture.

The real dataset cannot ship with the project, yet every command must work from nothing, so this
module writes the official layout (``frames/NNNN/000001.jpg``, ``labels/NNNN.mat``) with the same
fields, shapes and dtype habits as the real label files, including their quirks (uint8/uint16
coordinates in some files, uint8 or uint16 ``nframes``), so the reader's normalisation is
exercised by the default data and not only by the real files.

Motions are procedural: each of the 15 actions is a short list of key poses (joint angles of a
3-D skeleton) interpolated over a phase, periodic (squat, pushup ...) or one-shot with a still
set-up and finish (golf swing, pitch ...). The skeleton is projected from one of four viewpoints;
joints hidden behind the body or outside the frame are marked invisible, as annotators did. The
camera may pan or zoom slowly, so the SSIM successor rule sees both moving and near-still stretches.

With ``labels=DIR`` the joints come from real label files instead, drawn at each label's own frame
size, so the pipeline can run over frames whose annotations are the real ones.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from motionlab.datasets import render_person as rp
from motionlab.datasets.penn_action import ACTIONS, VIEWPOINTS, PennActionError, PennLabel, read_label_file

# ---------------------------------------------------------------------------------------------------
# Skeleton: joint angles (degrees) and root offsets (body heights) per frame.

PARAMS = (
    "root_pitch", "root_roll", "root_yaw", "root_x", "root_y", "root_z",
    "torso_pitch", "torso_roll", "torso_yaw", "neck_pitch",
    "l_sh_flex", "l_sh_abd", "l_sh_rot", "l_elbow", "r_sh_flex", "r_sh_abd", "r_sh_rot", "r_elbow",
    "l_hip_flex", "l_hip_abd", "l_knee", "r_hip_flex", "r_hip_abd", "r_knee",
)
P = {name: i for i, name in enumerate(PARAMS)}
TRANSLATIONS = ("root_x", "root_y", "root_z")
NEUTRAL = {"l_sh_abd": 6, "r_sh_abd": 6, "l_elbow": 8, "r_elbow": 8}
BARBELL_ACTIONS = ("bench_press", "clean_and_jerk", "squat")
MIRROR = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11)  # joint index of the other side


@dataclass(frozen=True)
class Body:
    """Segment lengths in body heights (ankle to crown is about 1)."""

    torso: float = 0.30  # pelvis centre to the shoulder line
    shoulder: float = 0.11  # half the shoulder width
    hip: float = 0.065  # half the hip-joint spacing
    neck: float = 0.12  # shoulder line to head centre
    upper_arm: float = 0.17
    forearm: float = 0.16
    thigh: float = 0.245
    shin: float = 0.245


@dataclass(frozen=True)
class Motion:
    """Key poses of one action. Keys inherit the previous key's angles, so each lists only changes.

    A name without side (``elbow``) sets both sides. `cycle` is frames per repetition (periodic)
    or frames the one-shot action takes; `support` says what touches the ground or the bar.
    """

    keys: tuple[tuple[float, dict[str, float]], ...]
    periodic: bool
    cycle: tuple[int, int]
    support: str = "feet"  # feet | hands_floor | hang | pelvis
    base: dict[str, float] = field(default_factory=dict)
    rest_height: float = 0.0  # pelvis height for support == "pelvis" (floor or bench)
    prop_margin: float = 0.1  # extra framing room for a bat, club or bar, body heights


MOTIONS: dict[str, Motion] = {
    "baseball_pitch": Motion((
        (0.0, dict(torso_yaw=-70, sh_flex=35, sh_abd=-10, elbow=110)),
        (0.3, dict(l_hip_flex=85, l_knee=95, r_knee=10, torso_pitch=-5)),
        (0.55, dict(l_hip_flex=45, l_knee=25, r_hip_flex=-25, r_knee=25, l_sh_flex=60, l_sh_abd=50,
                    l_elbow=20, r_sh_flex=-50, r_sh_abd=80, r_elbow=80, r_sh_rot=90, torso_yaw=-80)),
        (0.75, dict(torso_yaw=10, torso_pitch=30, r_sh_flex=150, r_sh_abd=30, r_elbow=30, r_sh_rot=0,
                    l_sh_flex=10, l_sh_abd=30, l_elbow=60, l_hip_flex=50, l_knee=45, r_hip_flex=-35,
                    r_knee=45)),
        (1.0, dict(torso_yaw=40, torso_pitch=50, r_sh_flex=50, r_sh_abd=-30, r_elbow=40, l_sh_flex=-10,
                   r_hip_flex=-10, r_knee=80, l_knee=50)),
    ), periodic=False, cycle=(16, 30)),
    "baseball_swing": Motion((
        (0.0, dict(torso_pitch=20, hip_flex=25, knee=30, hip_abd=12, torso_yaw=-35, l_sh_flex=55,
                   l_sh_abd=-35, l_elbow=80, r_sh_flex=45, r_sh_abd=10, r_elbow=120)),
        (0.35, dict(torso_yaw=-55, l_hip_flex=35, l_knee=40)),
        (0.6, dict(torso_yaw=20, l_sh_flex=85, l_sh_abd=0, l_elbow=10, r_sh_flex=85, r_sh_abd=-25,
                   r_elbow=35, l_hip_flex=20, l_knee=15)),
        (1.0, dict(torso_yaw=75, torso_pitch=10, l_sh_flex=120, l_sh_abd=50, l_elbow=70, r_sh_flex=120,
                   r_sh_abd=-50, r_elbow=60, r_knee=40, r_hip_flex=5)),
    ), periodic=False, cycle=(12, 22), prop_margin=0.4),
    "bench_press": Motion((
        (0.0, dict(sh_flex=90, sh_abd=12, elbow=0)),
        (0.5, dict(sh_flex=15, sh_abd=75, elbow=100)),
    ), periodic=True, cycle=(20, 34), support="pelvis", rest_height=0.3,
        base=dict(root_pitch=-90, hip_flex=10, knee=95, hip_abd=15), prop_margin=0.3),
    "bowl": Motion((
        (0.0, dict(torso_pitch=10, sh_flex=40, elbow=90)),
        (0.3, dict(r_sh_flex=-60, r_elbow=10, l_sh_abd=50, l_sh_flex=20, l_elbow=20, torso_pitch=25,
                   l_hip_flex=30, l_knee=30, r_hip_flex=-15)),
        (0.65, dict(r_sh_flex=20, r_elbow=5, torso_pitch=45, l_hip_flex=75, l_knee=85, r_hip_flex=-45,
                    r_knee=20, l_sh_abd=70, root_z=0.25)),
        (1.0, dict(r_sh_flex=110, r_elbow=20, torso_pitch=35, root_z=0.3)),
    ), periodic=False, cycle=(18, 30)),
    "clean_and_jerk": Motion((
        (0.0, dict(torso_pitch=55, hip_flex=95, knee=105, sh_flex=15, sh_abd=12, elbow=0)),
        (0.2, dict(torso_pitch=10, hip_flex=15, knee=15, sh_flex=0)),
        (0.35, dict(torso_pitch=15, hip_flex=100, knee=120, sh_flex=80, sh_abd=25, elbow=150)),
        (0.55, dict(torso_pitch=0, hip_flex=0, knee=0)),
        (0.65, dict(hip_flex=20, knee=30)),
        (0.8, dict(l_hip_flex=40, l_knee=35, r_hip_flex=-30, r_knee=30, sh_flex=175, sh_abd=15, elbow=0)),
        (1.0, dict(hip_flex=0, knee=0)),
    ), periodic=False, cycle=(28, 44), prop_margin=0.3),
    "golf_swing": Motion((
        (0.0, dict(torso_pitch=40, hip_flex=25, knee=20, hip_abd=10, sh_flex=25, sh_abd=-18, elbow=0)),
        (0.45, dict(torso_yaw=-80, l_sh_flex=95, l_sh_abd=-45, r_sh_flex=110, r_sh_abd=15, r_elbow=95,
                    torso_pitch=35)),
        (0.62, dict(torso_yaw=5, l_sh_flex=25, l_sh_abd=-18, r_sh_flex=25, r_sh_abd=-18, r_elbow=5)),
        (1.0, dict(torso_yaw=85, torso_pitch=10, l_sh_flex=120, l_sh_abd=35, l_elbow=80, r_sh_flex=125,
                   r_sh_abd=-35, r_elbow=15, r_knee=45, r_hip_flex=5, l_knee=5, l_hip_flex=5)),
    ), periodic=False, cycle=(14, 26), prop_margin=0.45),
    "jump_rope": Motion((
        (0.0, dict(root_y=0.0, knee=20, hip_flex=10)),
        (0.25, dict(root_y=0.05, knee=8, hip_flex=4, sh_flex=25)),
        (0.5, dict(root_y=0.08, knee=10)),
        (0.75, dict(root_y=0.03, knee=15, sh_flex=10)),
    ), periodic=True, cycle=(8, 13), base=dict(sh_flex=15, sh_abd=28, elbow=70), prop_margin=0.25),
    "jumping_jacks": Motion((
        (0.0, dict(sh_abd=8, hip_abd=0, root_y=0.0, knee=5)),
        (0.25, dict(sh_abd=90, hip_abd=14, root_y=0.07)),
        (0.5, dict(sh_abd=165, hip_abd=24, root_y=0.0, knee=15, elbow=15)),
        (0.75, dict(sh_abd=90, hip_abd=14, root_y=0.07, knee=5, elbow=8)),
    ), periodic=True, cycle=(14, 24)),
    "pullup": Motion((
        (0.0, dict(sh_abd=160, elbow=0, torso_pitch=0)),
        (0.5, dict(sh_abd=55, elbow=125, torso_pitch=-5)),
    ), periodic=True, cycle=(24, 40), support="hang",
        base=dict(knee=50, hip_flex=20, sh_rot=90), prop_margin=0.5),
    "pushup": Motion((
        (0.0, dict(root_pitch=66, sh_flex=66, sh_abd=12, elbow=0)),
        (0.5, dict(root_pitch=77, sh_flex=5, sh_abd=40, elbow=80)),
    ), periodic=True, cycle=(18, 32), support="hands_floor", prop_margin=0.15),
    "situp": Motion((
        (0.0, dict(torso_pitch=0)),
        (0.5, dict(torso_pitch=75)),
    ), periodic=True, cycle=(24, 40), support="pelvis", rest_height=0.07,
        base=dict(root_pitch=-90, hip_flex=55, knee=110, sh_flex=140, sh_abd=60, elbow=140),
        prop_margin=0.15),
    "squat": Motion((
        (0.0, dict(hip_flex=0, knee=0, torso_pitch=5)),
        (0.5, dict(hip_flex=95, knee=120, torso_pitch=40)),
    ), periodic=True, cycle=(22, 38),
        base=dict(sh_abd=75, sh_flex=-5, elbow=110, sh_rot=90, hip_abd=12), prop_margin=0.3),
    "strum_guitar": Motion((
        (0.0, dict(r_elbow=65, r_sh_flex=30)),
        (0.5, dict(r_elbow=95, r_sh_flex=22, neck_pitch=20)),
    ), periodic=True, cycle=(8, 14),
        base=dict(l_sh_flex=45, l_sh_abd=35, l_elbow=95, r_sh_flex=25, r_sh_abd=5, r_elbow=75,
                  neck_pitch=15)),
    "tennis_forehand": Motion((
        (0.0, dict(torso_pitch=15, hip_flex=20, knee=25, hip_abd=12, sh_flex=40, l_elbow=70, r_elbow=60,
                   l_sh_abd=-10, r_sh_abd=-5)),
        (0.4, dict(torso_yaw=-75, r_sh_flex=0, r_sh_abd=75, r_elbow=35, l_sh_flex=70, l_sh_abd=-25,
                   l_elbow=20, r_hip_flex=30, r_knee=40)),
        (0.65, dict(torso_yaw=5, r_sh_flex=65, r_sh_abd=25, r_elbow=20, l_sh_flex=20, l_sh_abd=30,
                    l_hip_flex=35, l_knee=30)),
        (1.0, dict(torso_yaw=65, r_sh_flex=115, r_sh_abd=-45, r_elbow=95, l_sh_flex=10, l_elbow=90,
                   l_sh_abd=10)),
    ), periodic=False, cycle=(12, 22), prop_margin=0.35),
    "tennis_serve": Motion((
        (0.0, dict(torso_yaw=-60, l_sh_flex=40, l_elbow=30, r_sh_flex=30, r_elbow=40, l_sh_abd=-10)),
        (0.3, dict(l_sh_flex=170, l_elbow=5, r_sh_flex=-25, r_sh_abd=60, r_elbow=20)),
        (0.5, dict(knee=45, hip_flex=25, torso_pitch=-20, r_sh_flex=20, r_sh_abd=100, r_elbow=120,
                   r_sh_rot=90)),
        (0.68, dict(knee=0, hip_flex=0, root_y=0.08, torso_pitch=10, torso_yaw=-10, r_sh_flex=170,
                    r_sh_abd=10, r_elbow=5, r_sh_rot=0, l_sh_flex=40)),
        (1.0, dict(root_y=0.0, torso_pitch=40, torso_yaw=40, r_sh_flex=30, r_sh_abd=-40, r_elbow=20,
                   l_sh_flex=10, l_elbow=60, r_hip_flex=-20, r_knee=30)),
    ), periodic=False, cycle=(16, 28), prop_margin=0.45),
}
assert set(MOTIONS) == set(ACTIONS)


def _expand(overrides: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in overrides.items():
        if name in P:
            out[name] = value
        elif f"l_{name}" in P:
            out[f"l_{name}"] = out[f"r_{name}"] = value
        else:
            raise KeyError(f"unknown pose parameter '{name}'; known: {', '.join(PARAMS)}")
    return out


def key_poses(motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """(K,) key times and (K, len(PARAMS)) poses, each key inheriting from the one before."""
    pose = np.zeros(len(PARAMS))
    for name, value in _expand({**NEUTRAL, **motion.base}).items():
        pose[P[name]] = value
    times, poses = [], []
    for t, overrides in motion.keys:
        pose = pose.copy()
        for name, value in _expand(overrides).items():
            pose[P[name]] = value
        times.append(t)
        poses.append(pose)
    return np.array(times), np.stack(poses)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def sample_poses(times: np.ndarray, poses: np.ndarray, phase: np.ndarray, periodic: bool) -> np.ndarray:
    """(n,) phase -> (n, len(PARAMS)): eased between keys, so each key is a brief hold."""
    if periodic:
        times = np.append(times, 1.0)
        poses = np.vstack([poses, poses[:1]])
        phase = np.mod(phase, 1.0)
    else:
        phase = np.clip(phase, times[0], times[-1])
    i = np.clip(np.searchsorted(times, phase, side="right") - 1, 0, len(times) - 2)
    w = _smoothstep((phase - times[i]) / (times[i + 1] - times[i]))[:, None]
    return poses[i] + (poses[i + 1] - poses[i]) * w


def timeline(motion: Motion, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) phase per frame. Periodic actions may pause (near-still frames); one-shot actions hold
    their set-up before and their finish after, as real clips do."""
    if motion.periodic:
        cycle = rng.uniform(*motion.cycle)
        steps = np.ones(n)
        steps[0] = 0.0
        if rng.random() < 0.5 and n >= 12:
            rest = int(rng.integers(4, max(5, n // 3)))
            start = int(rng.integers(0, n - rest + 1))
            steps[start:start + rest] = 0.0
        return rng.random() + np.cumsum(steps) / cycle
    length = min(rng.uniform(*motion.cycle), max(n - 2.0, 2.0))
    lead = rng.uniform(0.1, 0.6) * max(n - length, 0.0)
    return np.clip((np.arange(n) - lead) / length, 0.0, 1.0)


# Batched rotations, (T,) angles in radians -> (T, 3, 3). Body frame: +X the person's left, +Y up,
# +Z the way the person faces.

def _rx(a: np.ndarray) -> np.ndarray:  # pitch: +Y toward +Z
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:  # yaw: +Z toward +X
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:  # roll: +Y toward +X
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, s, z], -1), np.stack([-s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _mv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("tij,tj->ti", m, v)


def _limb(flex: np.ndarray, abd: np.ndarray, bend: np.ndarray, rot: np.ndarray, side: float,
          knee: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (T, 3) of the upper and lower segment of an arm or leg.

    Flexion swings the limb forward, abduction outward (toward the limb's side); elbows bend
    forward (or sideways with `rot`), knees bend backward.
    """
    a = _rz(-side * abd) @ _rx(-flex)
    t = np.zeros((len(flex), 3))
    t[:, 1] = -1.0
    if knee:
        local = np.stack([np.zeros_like(bend), -np.cos(bend), -np.sin(bend)], -1)
    else:
        local = np.stack([side * np.sin(bend) * np.sin(rot), -np.cos(bend), np.sin(bend) * np.cos(rot)], -1)
    return _mv(a, t), _mv(a, local)


def forward_kinematics(params: np.ndarray, body: Body) -> np.ndarray:
    """(T, len(PARAMS)) -> (T, 13, 3) joints in the body frame, pelvis centre at the origin."""
    p = {name: params[:, i] for name, i in P.items()}
    rad = {name: np.radians(v) for name, v in p.items() if name not in TRANSLATIONS}
    t = len(params)
    r_root = _ry(rad["root_yaw"]) @ _rx(rad["root_pitch"]) @ _rz(rad["root_roll"])
    r_torso = _ry(rad["torso_yaw"]) @ _rx(rad["torso_pitch"]) @ _rz(rad["torso_roll"])

    def vec(x: float, y: float, z: float) -> np.ndarray:
        return np.tile(np.array([x, y, z]), (t, 1))

    j = np.zeros((t, 13, 3))
    neck = _mv(r_torso, vec(0, body.torso, 0))
    j[:, rp.HEAD] = neck + _mv(r_torso @ _rx(rad["neck_pitch"]), vec(0, body.neck, 0))
    for side, sh, el, wr, pre in ((1.0, rp.L_SH, rp.L_EL, rp.L_WR, "l_"),
                                  (-1.0, rp.R_SH, rp.R_EL, rp.R_WR, "r_")):
        j[:, sh] = _mv(r_torso, vec(side * body.shoulder, body.torso - 0.02, 0))
        upper, lower = _limb(rad[pre + "sh_flex"], rad[pre + "sh_abd"], rad[pre + "elbow"],
                             rad[pre + "sh_rot"], side, knee=False)
        j[:, el] = j[:, sh] + _mv(r_torso, upper) * body.upper_arm
        j[:, wr] = j[:, el] + _mv(r_torso, lower) * body.forearm
    for side, hip, kn, an, pre in ((1.0, rp.L_HIP, rp.L_KNEE, rp.L_ANK, "l_"),
                                   (-1.0, rp.R_HIP, rp.R_KNEE, rp.R_ANK, "r_")):
        j[:, hip] = vec(side * body.hip, 0, 0)
        upper, lower = _limb(rad[pre + "hip_flex"], rad[pre + "hip_abd"], rad[pre + "knee"],
                             np.zeros(t), side, knee=True)
        j[:, kn] = j[:, hip] + upper * body.thigh
        j[:, an] = j[:, kn] + lower * body.shin
    return np.einsum("tij,tkj->tki", r_root, j)


FOOT_HEIGHT = 0.03  # ankle joint above the floor
HAND_HEIGHT = 0.02  # wrist joint above the floor in a push-up


def place_on_ground(joints: np.ndarray, params: np.ndarray, motion: Motion) -> np.ndarray:
    """Shift each frame so the supporting joints rest on the floor (y = 0) or the bar.

    Anchoring the support horizontally keeps planted feet and hands from sliding while the rest
    of the body moves; the key poses' root offsets (a jump, a bowler's slide) are added after.
    """
    out = joints.copy()
    if motion.support == "feet":
        ank = joints[:, [rp.L_ANK, rp.R_ANK]]
        low = ank[..., 1].min(1, keepdims=True)
        w = np.exp(-(ank[..., 1] - low) / 0.02)  # the lower foot carries the weight
        anchor = (ank * w[..., None]).sum(1) / w.sum(1, keepdims=True)
        anchor[:, 1] = low[:, 0] - FOOT_HEIGHT
    elif motion.support == "hands_floor":
        anchor = joints[:, [rp.L_WR, rp.R_WR]].mean(1)
        anchor[:, 1] -= HAND_HEIGHT
    elif motion.support == "hang":
        anchor = joints[:, [rp.L_WR, rp.R_WR]].mean(1)
        reach = anchor[:, 1] - joints[:, [rp.L_ANK, rp.R_ANK], 1].min(1)
        anchor[:, 1] -= reach.max() + 0.06  # the bar is high enough for the lowest foot to clear
    else:  # pelvis on the floor or a bench
        anchor = np.zeros((len(joints), 3))
        anchor[:, 1] = -motion.rest_height
    offset = params[:, [P["root_x"], P["root_y"], P["root_z"]]]
    return out - anchor[:, None, :] + offset[:, None, :]


# ---------------------------------------------------------------------------------------------------
# Camera: one of four viewpoints, weak perspective, a placement in the frame and a slow pan or zoom.

VIEW_YAW = {"front": 0.0, "left": 90.0, "back": 180.0, "right": -90.0}
VIEW_FACING = {"front": (0.0, 1.0), "back": (0.0, -1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}
CAMERA_DISTANCE = 5.0  # body heights; sets the (mild) perspective
CAMERA_HEIGHT = 0.5


def project(joints: np.ndarray, yaw_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, 13, 3) world -> (T, 13, 2) camera-plane u, v (v down, body heights) and (T, 13) depth
    toward the camera. "left" looks at the person's left side."""
    phi = np.radians(yaw_deg)
    right = np.array([np.cos(phi), 0.0, -np.sin(phi)])
    toward = np.array([np.sin(phi), 0.0, np.cos(phi)])
    depth = joints @ toward
    k = CAMERA_DISTANCE / (CAMERA_DISTANCE - depth)
    uv = np.stack([(joints @ right) * k, (CAMERA_HEIGHT - joints[..., 1]) * k], -1)
    return uv, depth


@dataclass(frozen=True, eq=False)
class Camera:
    """Where the camera-plane origin lands in the first frame, and how the view moves after it.

    Per frame the view shifts by `shift` pixels (a slow pan plus, for a handheld camera, a small
    wobble) and zooms by `zoom` about the frame centre; background and person move together.
    """

    scale: float  # pixels per body height in the first frame
    centre: tuple[float, float]  # pixel position of camera-plane (0, 0) in the first frame
    shift: np.ndarray  # (T, 2) pixels, in first-frame coordinates
    zoom: np.ndarray  # (T,) relative to the first frame

    def to_frame(self, uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(T, J, 2) camera-plane -> (T, J, 2) pixels of each frame."""
        h, w = size
        mid = np.array([w / 2, h / 2])
        q = np.asarray(self.centre) + uv * self.scale
        return mid + self.zoom[:, None, None] * (q - mid - self.shift[:, None])

    def window(self, t: int, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """Frame t's view of the first frame's plane, as a (left, top, right, bottom) box."""
        h, w = size
        cx, cy = w / 2 + self.shift[t, 0], h / 2 + self.shift[t, 1]
        z = self.zoom[t]
        return cx - w / 2 / z, cy - h / 2 / z, cx + w / 2 / z, cy + h / 2 / z


MAX_PAN = 0.12  # of the frame width (height: half that)
MAX_SHAKE = 0.008  # handheld wobble amplitude, of the frame width
ZOOM_RANGE = (-0.12, 0.15)
CANVAS_MARGIN = 0.25  # background drawn beyond the frame on each side, of the longer side


def choose_camera(uv: np.ndarray, margin: float, size: tuple[int, int], rng: np.random.Generator) -> Camera:
    """Frame the whole motion at a random size and place, then add a move.

    The person is usually placed inside the centred square the pipeline crops; now and then the
    body runs off the right or bottom edge (so coordinates stay >= 0, as in the real labels).
    A move (pan, zoom) runs during part of the clip only, so clips keep still stretches.
    """
    h, w = size
    n = uv.shape[0]
    room = np.array([margin, 0.08 + margin / 2])  # props reach sideways more than up or down
    lo, hi = uv.reshape(-1, 2).min(0) - room, uv.reshape(-1, 2).max(0) + room
    ext = hi - lo
    scale = min(rng.uniform(0.7, 0.98) * h / ext[1], 0.98 * w / ext[0])
    area = np.array([w, h], float)
    left = 0.0
    if ext[0] * scale <= min(h, w) and rng.random() < 0.75:  # inside the centred square crop
        left, area[0] = (w - min(h, w)) / 2, min(h, w)
    spare = np.maximum(area - ext * scale, 0)
    centre = -lo * scale + np.array([left, 0.0]) + rng.uniform(0, 1, 2) * spare
    if rng.random() < 0.2:  # run off the right or the bottom edge by 3-15% of the body's extent
        axis = int(rng.integers(2))
        reach = (hi[axis] - room[axis]) * scale  # the farthest joint, not the props' room
        overshoot = rng.uniform(0.03, 0.15) * ext[axis] * scale
        centre[axis] = (left if axis == 0 else 0) + area[axis] - reach + overshoot

    t = np.arange(n) / max(n - 1, 1)
    a = float(rng.uniform(0.0, 0.4))
    ease = _smoothstep((t - a) / max(float(rng.uniform(a + 0.3, 1.0)) - a, 1e-6))
    mode = rng.choice(["static", "pan", "zoom", "both"], p=[0.2, 0.4, 0.2, 0.2])
    pan = np.zeros(2)
    if mode in ("pan", "both"):
        pan = np.array([rng.uniform(-MAX_PAN, MAX_PAN) * w, rng.uniform(-MAX_PAN, MAX_PAN) / 2 * h])
    zoom = float(rng.uniform(*ZOOM_RANGE)) if mode in ("zoom", "both") else 0.0
    shift = ease[:, None] * pan
    if rng.random() < 0.3:  # handheld: a slow wobble from a few random sinusoids
        amp = rng.uniform(0.3, 1.0) * MAX_SHAKE * w
        for k in (1, 2, 3):
            freq, ph = rng.uniform(0.5, 2.5) * k, rng.uniform(0, 2 * np.pi, 2)
            shift = shift + amp / k * np.stack([np.sin(2 * np.pi * freq * t + ph[0]),
                                                np.sin(2 * np.pi * freq * t + ph[1]) * 0.6], -1)
        shift = shift - shift[:1]
    return Camera(float(scale), (float(centre[0]), float(centre[1])), shift, 1 + zoom * ease)


# ---------------------------------------------------------------------------------------------------
# Visibility: a joint behind another body part, or outside the image, is not visible.

OCCLUSION_MARGIN = 0.04  # body heights a part must be nearer the camera than the joint to hide it


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """p (T, J, 2), a/b (T, K, 2) -> (T, J, K) distance from each point to each segment."""
    ab = (b - a)[:, None]
    ap = p[:, :, None] - a[:, None]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    return np.linalg.norm(ap - t[..., None] * ab, axis=-1)


def visibility(pix: np.ndarray, depth: np.ndarray, scale: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, 13, 2) pixels, (T, 13) depth, (T,) pixels per body height -> (T, 13) bool visible."""
    h, w = size
    sh_mid = (pix[:, rp.L_SH] + pix[:, rp.R_SH]) / 2
    hip_mid = (pix[:, rp.L_HIP] + pix[:, rp.R_HIP]) / 2
    a = [pix[:, limb[0]] for limb in rp.LIMBS] + [sh_mid, pix[:, rp.HEAD]]
    b = [pix[:, limb[1]] for limb in rp.LIMBS] + [hip_mid, pix[:, rp.HEAD]]
    shoulder_w = np.linalg.norm(pix[:, rp.L_SH] - pix[:, rp.R_SH], axis=-1) / scale
    widths = [np.full(len(pix), limb[2]) for limb in rp.LIMBS]
    widths += [np.maximum(rp.TORSO_DEPTH, shoulder_w + 0.06), np.full(len(pix), 2 * rp.HEAD_RADIUS)]
    radius = np.stack(widths, -1) * scale[:, None] / 2 * 0.9  # (T, K)
    part_depth = np.stack(
        [(depth[:, limb[0]] + depth[:, limb[1]]) / 2 for limb in rp.LIMBS]
        + [depth[:, [rp.L_SH, rp.R_SH, rp.L_HIP, rp.R_HIP]].mean(1), depth[:, rp.HEAD]], -1)
    incident = np.zeros((13, len(widths)), bool)
    for k, (ja, jb, _, _) in enumerate(rp.LIMBS):
        incident[[ja, jb], k] = True
    incident[[rp.L_SH, rp.R_SH, rp.L_HIP, rp.R_HIP], -2] = True
    incident[rp.HEAD, -1] = True
    covered = _segment_distance(pix, np.stack(a, 1), np.stack(b, 1)) < radius[:, None]
    nearer = part_depth[:, None] > depth[..., None] + OCCLUSION_MARGIN
    hidden = (covered & nearer & ~incident[None]).any(-1)
    inside = (pix[..., 0] >= 0) & (pix[..., 0] <= w - 1) & (pix[..., 1] >= 0) & (pix[..., 1] <= h - 1)
    return inside & ~hidden


# ---------------------------------------------------------------------------------------------------
# One clip.

@dataclass
class Clip:
    """A rendered-to-be video: what goes into the label file plus what the renderer needs."""

    video_id: str
    action: str
    viewpoint: str
    train: bool
    size: tuple[int, int]  # (H, W)
    pix: np.ndarray  # (N, 13, 2) pixels, may lie outside the image
    depth: np.ndarray | None  # (N, 13) toward the camera; None for real annotations
    visible: np.ndarray  # (N, 13) bool
    known: np.ndarray  # (N, 13) bool: joints with a real position (real labels park unknown ones at ~0)
    scale: np.ndarray  # (N,) pixels per body height
    phase: np.ndarray  # (N,)
    facing: np.ndarray  # (N, 2) body forward on (image right, toward camera)
    camera: Camera | None  # None: a still camera (real annotations carry their own camera motion)
    ground_y: float  # floor line in first-frame pixels
    bar: np.ndarray | None = None  # (N, 2, 2) barbell end pixels, when known in 3-D
    coord_dtype: str = "float64"  # float64 | uint16 | uint (per field the smallest of uint8/uint16 that fits)
    nframes_dtype: str = "uint8"


def _clip_from_motion(video_id: str, action: str, viewpoint: str, train: bool, n: int,
                      size: tuple[int, int], rng: np.random.Generator) -> Clip:
    motion = MOTIONS[action]
    times, poses = key_poses(motion)
    angle = np.array([name not in TRANSLATIONS for name in PARAMS])
    poses = poses + rng.normal(0, 4.0, poses.shape) * angle  # each performer differs a little
    body = Body(**{k: v * rng.normal(1.0, 0.04) for k, v in asdict(Body()).items()})
    phase = timeline(motion, n, rng)
    params = sample_poses(times, poses, phase, motion.periodic)
    joints = place_on_ground(forward_kinematics(params, body), params, motion)
    if not motion.periodic and rng.random() < 0.25:  # a left-handed performer
        joints = joints[:, MIRROR] * np.array([-1.0, 1.0, 1.0])
    yaw = VIEW_YAW[viewpoint] + rng.uniform(-20, 20)
    uv, depth = project(joints, yaw)
    camera = choose_camera(uv, 0.08 + motion.prop_margin, size, rng)
    pix = camera.to_frame(uv, size)
    scale = camera.scale * camera.zoom * CAMERA_DISTANCE / (CAMERA_DISTANCE - depth.mean(1))
    # Facing: the forward axis from the hips' left-right axis and the spine, on the image axes.
    lr = joints[:, rp.L_HIP] - joints[:, rp.R_HIP]
    up = (joints[:, rp.L_SH] + joints[:, rp.R_SH]) / 2 - (joints[:, rp.L_HIP] + joints[:, rp.R_HIP]) / 2
    fwd = np.cross(lr, up)
    fwd /= np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)
    phi = np.radians(yaw)
    facing = np.stack([fwd @ np.array([np.cos(phi), 0, -np.sin(phi)]),
                       fwd @ np.array([np.sin(phi), 0, np.cos(phi)])], -1)
    bar = None
    if action in BARBELL_ACTIONS:  # bar ends in 3-D, so a side view shows the plates face-on
        lw, rw = joints[:, rp.L_WR], joints[:, rp.R_WR]
        axis = (lw - rw) / np.maximum(np.linalg.norm(lw - rw, axis=-1, keepdims=True), 1e-9)
        half = np.linalg.norm(lw - rw, axis=-1, keepdims=True) / 2 + rp.BAR_OVERHANG
        ends = np.stack([(lw + rw) / 2 + axis * half, (lw + rw) / 2 - axis * half], 1)
        bar = camera.to_frame(project(ends, yaw)[0], size)
    ground_y = camera.centre[1] + camera.scale * CAMERA_HEIGHT
    return Clip(video_id, action, viewpoint, train, size, pix, depth, visibility(pix, depth, scale, size),
                np.ones((n, 13), bool), scale, phase, facing, camera, ground_y, bar)


def _clip_from_label(label: PennLabel) -> Clip:
    n = label.num_frames
    pix = np.stack([label.x, label.y], -1)
    known = label.visibility | (label.x > 1) | (label.y > 1)
    if label.bbox is not None:
        ext = np.maximum(label.bbox[:, 2] - label.bbox[:, 0], label.bbox[:, 3] - label.bbox[:, 1])
    else:
        ext = np.array([np.ptp(p[k], axis=0).max() * 1.15 if k.sum() > 1 else 0.0
                        for p, k in zip(pix, known, strict=True)])
    good = ext[ext > 1]
    body = float(np.median(good)) if good.size else 0.5 * min(label.height, label.width)
    facing = VIEW_FACING[label.viewpoint]
    ankles = label.y[:, [rp.L_ANK, rp.R_ANK]][known[:, [rp.L_ANK, rp.R_ANK]]]
    ground = float(np.percentile(ankles, 90)) + 0.03 * body if ankles.size else 0.9 * label.height
    return Clip(label.video_id, label.action, label.viewpoint, label.train, (label.height, label.width), pix,
                None, label.visibility, known, np.full(n, body), np.arange(n) / 10.0,
                np.tile(facing, (n, 1)), None, min(ground, label.height - 1.0))


# ---------------------------------------------------------------------------------------------------
# Rendering and writing.

@dataclass(frozen=True, eq=False)
class Look:
    """Per-clip appearance: who, where, under what light, through what camera."""

    outfit: rp.Outfit
    prop_colour: rp.RGB
    brightness: float
    contrast: float
    cast: np.ndarray
    flicker: float  # amplitude of a slow brightness drift
    flicker_period: float
    noise_sigma: float
    quality: int


def random_look(rng: np.random.Generator) -> Look:
    return Look(
        outfit=rp.random_outfit(rng),
        prop_colour=rp.hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9)),
        brightness=float(rng.uniform(0.75, 1.2)),
        contrast=float(rng.uniform(0.75, 1.2)),
        cast=1 + rng.normal(0, 0.06, 3),
        flicker=float(rng.uniform(0.01, 0.05)) if rng.random() < 0.3 else 0.0,
        flicker_period=float(rng.uniform(10, 40)),
        noise_sigma=float(rng.uniform(0.5, 1.8)),
        quality=int(rng.integers(80, 96)),
    )


def render_clip(clip: Clip, look: Look, rng: np.random.Generator, frames_out: Path) -> None:
    """Write frames_out/000001.jpg ... for the clip (1-based names, like the real dataset)."""
    h, w = clip.size
    n = len(clip.pix)
    cam = clip.camera
    margin = int(CANVAS_MARGIN * max(h, w)) if cam is not None else 0
    floor = clip.ground_y + margin - rng.uniform(0.1, 0.4) * clip.scale[0]  # the wall stands behind
    canvas = rp.make_background(rng, h + 2 * margin, w + 2 * margin, floor)
    bank = rp.noise_bank(rng, h, w, look.noise_sigma)
    flicker_phase = rng.uniform(0, 2 * np.pi)
    frames_out.mkdir(parents=True, exist_ok=True)
    for stale in frames_out.glob("*.jpg"):
        stale.unlink()

    bg, bg_key, lut, lut_key = canvas, None, None, None
    for t in range(n):
        ground = clip.ground_y
        if cam is not None:
            box = tuple(v + margin for v in cam.window(t, (h, w)))
            key = tuple(round(v, 2) for v in box)
            if key != bg_key:  # a still camera reuses the last background
                bg, bg_key = canvas.resize((w, h), Image.BILINEAR, box=box), key
            ground = h / 2 + cam.zoom[t] * (clip.ground_y - h / 2 - cam.shift[t, 1])
        img = bg.copy()
        props = rp.action_props(clip.action, clip.pix[t], float(clip.scale[t]), ground,
                                float(clip.phase[t] % 1.0), look.prop_colour,
                                None if clip.bar is None else (clip.bar[t, 0], clip.bar[t, 1]))
        rp.draw_person(img, clip.pix[t], float(clip.scale[t]), look.outfit,
                       depth=None if clip.depth is None else clip.depth[t], known=clip.known[t],
                       behind=~clip.visible[t] if clip.depth is None else None,
                       facing=(float(clip.facing[t, 0]), float(clip.facing[t, 1])), props=props)
        b = look.brightness * (1 + look.flicker * np.sin(2 * np.pi * t / look.flicker_period + flicker_phase))
        if lut_key != round(b, 3):
            lut, lut_key = rp.lighting_lut(round(b, 3), look.contrast, look.cast), round(b, 3)
        img = rp.add_noise(img.point(lut), bank, rng)
        img.save(frames_out / f"{t + 1:06d}.jpg", quality=look.quality)


MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: motionlab synth_penn, Created on: fixed for reproducible bytes"


def write_mat(path: Path, fields: dict[str, np.ndarray]) -> None:
    """savemat, with the creation time in the header replaced so equal content gives equal bytes."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, fields, do_compression=True, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = MAT_HEADER.ljust(116)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def label_fields(clip: Clip) -> dict[str, np.ndarray]:
    """The real files' fields, shapes and dtype habits for a generated clip."""
    h, w = clip.size
    n = len(clip.pix)
    xy = np.maximum(clip.pix, 0.0)  # annotations are never negative
    s = clip.scale[:, None]
    lo = np.maximum(xy.min(1) - 0.08 * s, 0)
    hi = np.minimum(xy.max(1) + 0.08 * s, [w - 1, h - 1])
    bbox = np.concatenate([lo, np.maximum(hi, lo)], 1)
    x, y = np.round(xy[..., 0], 2), np.round(xy[..., 1], 2)
    if clip.coord_dtype == "uint16":
        x, y, bbox = (np.round(v).astype(np.uint16) for v in (x, y, bbox))
    elif clip.coord_dtype == "uint":
        x, y, bbox = (np.round(v).astype(_smallest_uint(v)) for v in (x, y, bbox))
    if clip.nframes_dtype == "uint16":
        nframes = np.array([[n]], np.uint16)
    else:
        nframes = np.array([[n % 256]], np.uint8)  # the real files' uint8 would wrap past 255 frames
    return {
        "action": np.array([clip.action]),
        "pose": np.array([clip.viewpoint]),
        "x": x,
        "y": y,
        "visibility": clip.visible.astype(np.uint8),
        "train": np.array([[1 if clip.train else -1]], np.int32),
        "bbox": bbox,
        "dimensions": np.array([[h, w, n]], np.uint16),
        "nframes": nframes,
    }


def _smallest_uint(v: np.ndarray) -> type:
    return np.uint8 if np.round(v).max() < 256 else np.uint16


def _plan(index: int, seed: int) -> tuple[str, str, bool]:
    """Action, viewpoint and split of video `index`: actions cycle (all 15 appear once there are
    15 videos), each action's videos alternate between train and test from a seeded start."""
    rng = np.random.default_rng([seed, 7919])
    order = rng.permutation(len(ACTIONS))
    first_train = rng.integers(0, 2, len(ACTIONS))
    view_offset = int(rng.integers(len(VIEWPOINTS)))
    a = int(order[index % len(ACTIONS)])
    train = (index // len(ACTIONS) + first_train[a]) % 2 == 0
    return ACTIONS[a], VIEWPOINTS[(index + view_offset) % len(VIEWPOINTS)], bool(train)


def synth_penn_action(
    out: Path,
    videos: int = 24,
    labels: Path | None = None,
    seed: int = 0,
    size: tuple[int, int] = (240, 320),
    frames: tuple[int, int] = (24, 48),
) -> list[str]:
    """Write a Penn Action look-alike under `out` and return its video ids.

    `size` is (H, W) and `frames` the inclusive range of clip lengths. With `labels`, the first
    `videos` label files of that folder (sorted) are copied unchanged and frames are drawn from
    their joints at each label's own dimensions; `size` and `frames` are then unused. The same
    seed gives byte-identical files; video i does not depend on how many videos are asked for.
    """
    out = Path(out)
    if videos < 1:
        raise ValueError(f"videos must be at least 1, got {videos}")
    if labels is not None:
        return _synth_from_labels(out, Path(labels), videos, seed)
    if frames[0] < 2 or frames[1] < frames[0]:
        raise ValueError(f"frames must be (min, max) with 2 <= min <= max, got {frames}")
    h, w = size
    if h < 32 or w < 32:
        raise ValueError(f"size must be at least 32x32 pixels, got {size}")
    ids = []
    for i in range(videos):
        video_id = f"{i + 1:04d}"
        rng = np.random.default_rng([seed, i])
        action, viewpoint, train = _plan(i, seed)
        n = int(rng.integers(frames[0], frames[1] + 1))
        clip = _clip_from_motion(video_id, action, viewpoint, train, n, (h, w), rng)
        # The real files' dtype habits, on a fixed rota so any 8 consecutive videos show them all:
        # integer coordinates (uint16, or uint8 where they fit) and a uint16 nframes (a uint8 one
        # wraps past 255 frames, which is why readers take the frame count from the rows of x).
        coord_dtype = {3: "uint16", 7: "uint"}.get(i % 8, "float64")
        nframes_dtype = "uint16" if i % 3 == 1 else "uint8"
        clip = replace(clip, coord_dtype=coord_dtype, nframes_dtype=nframes_dtype)
        render_clip(clip, random_look(rng), rng, out / "frames" / video_id)
        write_mat(out / "labels" / f"{video_id}.mat", label_fields(clip))
        ids.append(video_id)
    return ids


def _synth_from_labels(out: Path, labels: Path, videos: int, seed: int) -> list[str]:
    files = sorted(p for p in labels.glob("*.mat") if not p.name.startswith("."))[:videos]
    if not files:
        raise PennActionError(labels, "folder", "holds no .mat label files",
                              "pass the Penn Action labels/ folder (labels/NNNN.mat)")
    ids = []
    for i, path in enumerate(files):
        label = read_label_file(path)
        rng = np.random.default_rng([seed, i, 1])
        render_clip(_clip_from_label(label), random_look(rng), rng, out / "frames" / label.video_id)
        target = out / "labels" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target.exists() and target.samefile(path)):
            shutil.copyfile(path, target)
        ids.append(label.video_id)
    return ids
