"""A KIT-ML look-alike in the HumanML3D layout, written without downloads.

Text-to-motion code needs `new_joint_vecs/`, `new_joints/`, `texts/`, `Mean.npy`, `Std.npy` and the
split files; the real KIT-ML cannot ship with the project, so this module writes that layout from
procedural motions of the 21-joint KIT skeleton (walk, run, jump, wave, kick, squat, turn, sit
down, with directions, speeds and arm modifiers) and captions in the dataset's line format.

Motions are built for physics checks downstream: feet are placed by a footstep planner and the
legs reach them by two-bone inverse kinematics, so a planted foot does not move at all (no
sliding) and the pelvis is lowered just enough that both legs reach their feet. Bodies are
defined in metres and written in KIT units (`KIT.metres_per_unit`). Features come from
`joints_to_features` and `new_joints` from `recover_joints` of them, as the dataset was made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motionlab.datasets.motion_features import KIT, MotionDatasetSpec, joints_to_features, recover_joints

FPS = KIT.fps
UNITS_PER_METRE = 1.0 / KIT.metres_per_unit  # the one place metres become KIT units

# Body in metres (a 1.7 m adult); x = the person's left, y = up, z = forward.
PELVIS_HEIGHT = 0.95
HIP_HALF = 0.08
FOOT_HALF = 0.09  # feet stand slightly wider than the hips
THIGH, SHIN = 0.44, 0.43
ANKLE_HEIGHT = 0.08
BALL = np.array([0.0, -0.06, 0.10])  # from the ankle, in the foot's heading frame
TOE = np.array([0.0, -0.06, 0.17])
SPINE = (0.11, 0.18, 0.08, 0.07)  # root -> lower back -> upper back -> neck -> head
SHOULDER_HALF = 0.17
UPPER_ARM, FOREARM = 0.27, 0.25
REACH = 0.985 * (THIGH + SHIN)  # never ask a leg for more: the knee stays slightly bent

SUBJECTS = (("a person", "their"), ("a man", "his"), ("a woman", "her"), ("someone", "their"))
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


# ---------------------------------------------------------------------------------------------------
# Small helpers: eased key tracks and rotations about the vertical.

def smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def track(t: np.ndarray, keys: list[tuple[float, float]]) -> np.ndarray:
    """(n,) times -> (n,) values eased between (time, value) keys, held before and after."""
    times = np.array([k[0] for k in keys], np.float64)
    values = np.array([k[1] for k in keys], np.float64)
    if len(keys) == 1:
        return np.full_like(t, values[0])
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    span = np.maximum(times[i + 1] - times[i], 1e-9)
    return values[i] + (values[i + 1] - values[i]) * smoothstep((t - times[i]) / span)


def yaw_matrix(yaw: np.ndarray) -> np.ndarray:
    """(n,) heading -> (n, 3, 3) turning local (x left, y up, z forward) into world axes."""
    c, s, o, z = np.cos(yaw), np.sin(yaw), np.ones_like(yaw), np.zeros_like(yaw)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def pitch_matrix(a: np.ndarray) -> np.ndarray:
    """(n,) forward lean -> (n, 3, 3): +a tips up (+y) toward forward (+z)."""
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def roll_matrix(a: np.ndarray) -> np.ndarray:
    """(n,) -> (n, 3, 3) about the forward axis: +a turns down (-y) toward the left (+x)."""
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _mv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nj->ni", m, np.broadcast_to(v, (m.shape[0], 3)))


# ---------------------------------------------------------------------------------------------------
# Feet: plants and swings.

@dataclass
class Swing:
    lift: float  # seconds
    land: float
    to_xz: np.ndarray  # (2,)
    to_yaw: float
    # (s, forward, up) offsets in the lift-off heading frame along the swing, s in [0, 1]
    path: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0), (0.5, 0.0, 0.08), (1.0, 0.0, 0.0))


@dataclass
class FootTrack:
    start_xz: np.ndarray
    start_yaw: float
    swings: list[Swing]

    def evaluate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> ankle (n, 3), foot yaw (n,), swing progress (n,) (-1 while planted)."""
        xz = np.tile(self.start_xz, (len(t), 1)).astype(np.float64)
        yaw = np.full(len(t), self.start_yaw, np.float64)
        up = np.zeros(len(t))
        progress = np.full(len(t), -1.0)
        cur_xz, cur_yaw = np.asarray(self.start_xz, np.float64), self.start_yaw
        for sw in sorted(self.swings, key=lambda s: s.lift):
            during = (t >= sw.lift) & (t < sw.land)
            after = t >= sw.land
            s = (t[during] - sw.lift) / (sw.land - sw.lift)
            e = smoothstep(s)[:, None]
            fwd = np.array([np.sin(cur_yaw), np.cos(cur_yaw)])
            keys = sw.path
            f_off = track(s, [(k[0], k[1]) for k in keys])
            u_off = track(s, [(k[0], k[2]) for k in keys])
            xz[during] = cur_xz + (sw.to_xz - cur_xz) * e + f_off[:, None] * fwd
            yaw[during] = cur_yaw + (sw.to_yaw - cur_yaw) * e[:, 0]
            up[during] = u_off
            progress[during] = s
            xz[after], yaw[after] = sw.to_xz, sw.to_yaw
            cur_xz, cur_yaw = np.asarray(sw.to_xz, np.float64), sw.to_yaw
        ankle = np.stack([xz[:, 0], ANKLE_HEIGHT + up, xz[:, 1]], -1)
        return ankle, yaw, progress


def side_offset(yaw: float | np.ndarray, side: float, half: float = FOOT_HALF) -> np.ndarray:
    """xz of a point `half` to the person's left (side +1) or right (-1) for a heading."""
    yaw = np.asarray(yaw, np.float64)
    return side * half * np.stack([np.cos(yaw), -np.sin(yaw)], -1)


# ---------------------------------------------------------------------------------------------------
# The body at each frame.

@dataclass
class Pose:
    """Per-frame drivers of the skeleton; every array has the clip's n frames."""

    root_xz: np.ndarray  # (n, 2)
    heading: np.ndarray  # (n,) radians, 0 faces +z
    height: np.ndarray  # (n,) wanted pelvis height; lowered where the legs cannot reach
    lean: np.ndarray  # (n,) torso pitch, radians forward
    feet: dict[int, FootTrack]  # side (+1 left, -1 right) -> track
    arms: dict[int, tuple[np.ndarray, np.ndarray]]  # side -> upper (n, 3), forearm (n, 3) unit, torso frame


def arm_dirs(flex: np.ndarray, abd: np.ndarray, elbow: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Degrees -> unit upper-arm and forearm directions in the torso frame."""
    down = np.array([0.0, -1.0, 0.0])
    out = roll_matrix(np.radians(side * abd))
    upper = _mv(out, _mv(_flex(flex), down))
    fore = _mv(out, _mv(_flex(flex + elbow), down))
    return upper, fore


def _flex(deg: np.ndarray) -> np.ndarray:
    """Swing a hanging limb forward by `deg` (90: pointing forward, 180: up)."""
    a = np.radians(deg)
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, s], -1), np.stack([z, -s, c], -1)], -2)


def two_bone(hip: np.ndarray, target: np.ndarray, pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) hip, ankle target and knee direction -> knee, ankle. The ankle reaches the target
    whenever it is within REACH (the caller keeps planted feet within it)."""
    d_vec = target - hip
    d = np.linalg.norm(d_vec, axis=-1, keepdims=True)
    dc = np.clip(d, abs(THIGH - SHIN) + 1e-6, REACH)
    u = d_vec / np.maximum(d, 1e-9)
    a = (THIGH ** 2 - SHIN ** 2 + dc ** 2) / (2 * dc)
    r = np.sqrt(np.maximum(THIGH ** 2 - a ** 2, 0.0))
    p = pole - (pole * u).sum(-1, keepdims=True) * u
    p /= np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-9)
    knee = hip + a * u + r * p
    return knee, hip + dc * u


def build_joints(pose: Pose, t: np.ndarray) -> np.ndarray:
    """Pose drivers -> (n, 21, 3) KIT joints in metres, y up."""
    n = len(t)
    body = yaw_matrix(pose.heading)
    torso = body @ pitch_matrix(pose.lean)
    feet = {side: track_.evaluate(t) for side, track_ in pose.feet.items()}

    hips_xz = {side: pose.root_xz + side_offset(pose.heading, side, HIP_HALF) for side in (1, -1)}
    height = pose.height.copy()
    for side, (ankle, _, progress) in feet.items():
        horiz = np.linalg.norm(ankle[:, [0, 2]] - hips_xz[side], axis=-1)
        reach = ankle[:, 1] + np.sqrt(np.maximum(REACH ** 2 - horiz ** 2, 0.0))
        # a swinging foot may fold its leg; its constraint fades in the middle of the swing
        relax = np.where(progress >= 0, np.sin(np.pi * np.clip(progress, 0, 1)), 0.0)
        height = np.minimum(height, reach + relax * 1.0)
    root = np.stack([pose.root_xz[:, 0], height, pose.root_xz[:, 1]], -1)

    j = np.zeros((n, 21, 3))
    j[:, 0] = root
    up = np.array([0.0, 1.0, 0.0])
    j[:, 1] = root + _mv(torso, up * SPINE[0])
    j[:, 2] = j[:, 1] + _mv(torso, up * SPINE[1])
    j[:, 3] = j[:, 2] + _mv(torso, up * SPINE[2])
    j[:, 4] = j[:, 3] + _mv(torso, up * SPINE[3])
    for side, (sh, el, wr) in ((-1, (5, 6, 7)), (1, (8, 9, 10))):
        upper, fore = pose.arms[side]
        j[:, sh] = j[:, 3] + _mv(torso, np.array([side * SHOULDER_HALF, 0.0, 0.0]))
        j[:, el] = j[:, sh] + _mv(torso, upper) * UPPER_ARM
        j[:, wr] = j[:, el] + _mv(torso, fore) * FOREARM
    forward = _mv(body, np.array([0.0, 0.0, 1.0]))
    for side, (hp, kn, an, ba, to) in ((-1, (11, 12, 13, 14, 15)), (1, (16, 17, 18, 19, 20))):
        ankle_target, foot_yaw, _ = feet[side]
        j[:, hp] = root + _mv(body, np.array([side * HIP_HALF, 0.0, 0.0]))
        j[:, kn], j[:, an] = two_bone(j[:, hp], ankle_target, forward)
        foot = yaw_matrix(foot_yaw)
        j[:, ba] = j[:, an] + _mv(foot, BALL)
        j[:, to] = j[:, an] + _mv(foot, TOE)
    return j


# ---------------------------------------------------------------------------------------------------
# Actions. Each returns the pose drivers and the captions' verb phrases.

@dataclass(frozen=True)
class Recipe:
    action: str
    seconds: float
    options: dict
    phrases: tuple[str, ...]  # whole-clip verb phrases ("walks forward slowly")
    parts: tuple[tuple[float, float, str], ...] = ()  # sub-clip (start s, end s, verb phrase)


def _rest_arms(n: int, rng: np.random.Generator) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    flex, abd, elbow = (np.full(n, v) for v in (rng.uniform(0, 8), rng.uniform(6, 12), rng.uniform(8, 20)))
    return {side: arm_dirs(flex, abd, elbow, side) for side in (1, -1)}


def _wave_arm(t: np.ndarray, start: float, end: float, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """A raised arm (right side frame, mirrored by the caller) waving its forearm side to side."""
    lift = track(t, [(start, 0.0), (start + 0.5, 1.0), (end - 0.5, 1.0), (end, 0.0)])
    flex, abd, elbow = 10 + 20 * lift, 10 + 70 * lift, 15 + 20 * lift
    upper, fore = arm_dirs(flex, abd, elbow, 1)
    swing = np.radians(25) * np.sin(2 * np.pi * rate * t)
    raised = np.stack([np.sin(swing) * 0.9 + 0.1, np.cos(swing), np.full_like(t, 0.35)], -1)
    raised /= np.linalg.norm(raised, axis=-1, keepdims=True)
    fore = fore * (1 - lift[:, None]) + raised * lift[:, None]
    return upper, fore / np.linalg.norm(fore, axis=-1, keepdims=True)


def _mirror(dirs: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return tuple(d * np.array([-1.0, 1.0, 1.0]) for d in dirs)  # type: ignore[return-value]


def _standing_feet(xz: np.ndarray, yaw: float) -> dict[int, FootTrack]:
    return {side: FootTrack(xz + side_offset(yaw, side), yaw, []) for side in (1, -1)}


def locomotion(t: np.ndarray, rng: np.random.Generator, *, speed: float, cadence: float, duty: float,
               lift: float, direction: str, turn_rate: float = 0.0, turn_back_at: float | None = None,
               arm_swing: float = 25.0, elbow: float = 20.0, lean: float = 4.0, bounce: float = 0.0,
               wave: int = 0) -> Pose:
    """Walking and running: a root path from speed and turning, feet planted by a footstep planner.

    `direction` is forward, backward, left or right (the travel direction in the body frame);
    `turn_rate` (rad/s) curves the path; `turn_back_at` (s) turns the person around there.
    """
    dt = 1.0 / 200.0
    end = t[-1]
    start_move, stop_move = 0.4, end - 0.6
    grid = np.arange(-1.0, end + 2.0, dt)
    ramp = track(grid, [(start_move, 0.0), (start_move + 0.8, 1.0), (stop_move - 0.8, 1.0), (stop_move, 0.0)])
    omega = turn_rate * ramp
    if turn_back_at is not None:  # slow down, turn half a circle over about a second, go back
        around = track(grid, [(turn_back_at - 0.6, 0.0), (turn_back_at, 1.0), (turn_back_at + 0.6, 0.0)])
        omega = omega + np.pi * around / (np.trapezoid(around) * dt)
        ramp = ramp * (1 - 0.8 * around)
    heading0 = float(rng.uniform(-np.pi, np.pi))
    heading = heading0 + np.cumsum(omega) * dt
    travel = {"forward": 0.0, "backward": np.pi, "left": np.pi / 2, "right": -np.pi / 2}[direction]
    vel = speed * ramp[:, None] * np.stack([np.sin(heading + travel), np.cos(heading + travel)], -1)
    path = np.cumsum(vel, 0) * dt
    path -= path[np.searchsorted(grid, 0.0)]

    def root_at(when: float) -> tuple[np.ndarray, float]:
        k = int(np.clip(np.searchsorted(grid, when), 0, len(grid) - 1))
        return path[k], float(heading[k])

    period = 2.0 / cadence
    swing_time = (1 - duty) * period
    feet = {}
    first = int(rng.choice([1, -1]))
    for side in (1, -1):
        xz0, yaw0 = root_at(0.0)
        track_ = FootTrack(xz0 + side_offset(yaw0, side), yaw0, [])
        begin = start_move + (0.0 if side == first else period / 2)
        lift_at = begin
        while lift_at < stop_move + period:
            land = lift_at + swing_time
            mid_stance = min(land + duty * period / 2, stop_move + 0.05)
            xz, yaw = root_at(mid_stance)
            track_.swings.append(Swing(lift_at, land, xz + side_offset(yaw, side), yaw,
                                       ((0.0, 0.0, 0.0), (0.45, 0.0, lift), (1.0, 0.0, 0.0))))
            lift_at += period
        feet[side] = track_

    root_xz = np.stack([np.interp(t, grid, path[:, 0]), np.interp(t, grid, path[:, 1])], -1)
    head = np.interp(t, grid, heading)
    moving = np.interp(t, grid, ramp)
    height = PELVIS_HEIGHT - 0.02 * moving + bounce * moving * np.cos(2 * np.pi * cadence * (t - start_move))
    phase = 2 * np.pi * (cadence / 2) * (t - start_move) * (1 if first == 1 else -1)
    arms = {}
    for side in (1, -1):
        swing = arm_swing * moving * np.sin(phase) * -side  # opposite to the same-side leg
        arms[side] = arm_dirs(swing + 2, np.full_like(t, 8.0), elbow + 0.3 * np.abs(swing), side)
    if wave:
        arms[wave] = _wave_arm(t, 0.2, end - 0.2, rate=1.5)
        if wave == -1:
            arms[wave] = _mirror(arms[wave])
    lean_r = np.radians(lean) * moving * (1 if direction != "backward" else -0.5)
    return Pose(root_xz, head, height, lean_r, feet, arms)


def standing(t: np.ndarray, rng: np.random.Generator) -> tuple[Pose, np.ndarray, float]:
    """A person standing still, facing a random heading: the base of the in-place actions."""
    yaw = float(rng.uniform(-np.pi, np.pi))
    xz = np.zeros(2)
    pose = Pose(np.tile(xz, (len(t), 1)), np.full(len(t), yaw), np.full(len(t), PELVIS_HEIGHT),
                np.full(len(t), np.radians(2.0)), _standing_feet(xz, yaw), _rest_arms(len(t), rng))
    return pose, xz, yaw


def wave(t: np.ndarray, rng: np.random.Generator, *, hand: str) -> Pose:
    pose, _, _ = standing(t, rng)
    sides = {"left": (1,), "right": (-1,), "both": (1, -1)}[hand]
    for side in sides:
        arm = _wave_arm(t, 0.4, t[-1] - 0.4, rate=float(rng.uniform(1.2, 2.0)))
        pose.arms[side] = arm if side == 1 else _mirror(arm)
    return pose


def squat(t: np.ndarray, rng: np.random.Generator, *, times: int) -> Pose:
    pose, xz, yaw = standing(t, rng)
    keys_h, keys_back, keys_lean, keys_arm = [(0.0, 0.0)], [(0.0, 0.0)], [(0.0, 0.0)], [(0.0, 0.0)]
    span = (t[-1] - 1.0) / times
    depth = rng.uniform(0.3, 0.42)
    for k in range(times):
        a = 0.5 + k * span
        for key, value in ((keys_h, depth), (keys_back, 0.12), (keys_lean, 35.0), (keys_arm, 80.0)):
            key += [(a, 0.0), (a + 0.45 * span, value), (a + 0.55 * span, value), (a + span, 0.0)]
    back = track(t, keys_back)
    pose.height = PELVIS_HEIGHT - track(t, keys_h)
    pose.root_xz = pose.root_xz - back[:, None] * np.array([np.sin(yaw), np.cos(yaw)])
    pose.lean = np.radians(2.0 + track(t, keys_lean))
    flex = track(t, keys_arm)
    pose.arms = {side: arm_dirs(flex, np.full_like(t, 8.0), np.full_like(t, 10.0), side) for side in (1, -1)}
    return pose


def sit_down(t: np.ndarray, rng: np.random.Generator, *, stand_up: bool) -> Pose:
    """Sitting on a seat of knee height behind the person (the seat itself is not a joint)."""
    pose, xz, yaw = standing(t, rng)
    a, b = 0.5, 0.5 + rng.uniform(1.4, 2.0)
    keys = [(a, 0.0), (b, 1.0)]
    if stand_up:
        c = t[-1] - 2.0
        keys += [(c, 1.0), (c + 1.5, 0.0)]
    down = track(t, keys)
    bend = track(t, [(a, 0.0), ((a + b) / 2, 1.0), (b, 0.3)] + ([(c, 0.3), (c + 0.6, 1.0), (c + 1.5, 0.0)]
                                                                 if stand_up else []))
    pose.height = PELVIS_HEIGHT - 0.47 * down
    pose.root_xz = pose.root_xz - (0.28 * down)[:, None] * np.array([np.sin(yaw), np.cos(yaw)])
    pose.lean = np.radians(2.0 + 35.0 * bend)
    flex = 25 * down
    pose.arms = {side: arm_dirs(flex, np.full_like(t, 10.0), 40 * down, side) for side in (1, -1)}
    return pose


def kick(t: np.ndarray, rng: np.random.Generator, *, leg: str, times: int) -> Pose:
    pose, xz, yaw = standing(t, rng)
    side = 1 if leg == "left" else -1
    span = (t[-1] - 1.0) / times
    height = rng.uniform(0.35, 0.55)
    for k in range(times):
        a = 0.5 + k * span + 0.2 * span
        b = a + 0.6 * span
        path = ((0.0, 0.0, 0.0), (0.3, -0.22, 0.18), (0.6, 0.5, height), (1.0, 0.0, 0.0))
        pose.feet[side].swings.append(Swing(a, b, xz + side_offset(yaw, side), yaw, path))
    kicking = track(t, [(0.3, 0.0), (0.7, 1.0), (t[-1] - 0.4, 1.0), (t[-1], 0.0)])
    pose.root_xz = pose.root_xz - (0.05 * kicking)[:, None] * np.stack(
        [np.full_like(t, np.sin(yaw)), np.full_like(t, np.cos(yaw))], -1)
    pose.lean = np.radians(2.0 - 6.0 * kicking)
    pose.arms = {s: arm_dirs(np.full_like(t, 10.0), 25 * kicking, np.full_like(t, 40.0), s) for s in (1, -1)}
    return pose


def jump(t: np.ndarray, rng: np.random.Generator, *, forward: float, times: int) -> Pose:
    pose, xz, yaw = standing(t, rng)
    fwd = np.array([np.sin(yaw), np.cos(yaw)])
    span = (t[-1] - 0.8) / times
    keys_h, keys_x, keys_lean, keys_arm = [(0.0, 0.0)], [(0.0, 0.0)], [(0.0, 0.0)], [(0.0, 0.0)]
    peak = rng.uniform(0.15, 0.3)
    flight = 2 * np.sqrt(2 * peak / 9.81)  # ballistic time for that apex
    for k in range(times):
        a = 0.4 + k * span
        take_off = a + 0.55
        land = take_off + flight
        x0, x1 = k * forward, (k + 1) * forward
        keys_h += [(a, 0.0), (a + 0.4, -0.2), (take_off, 0.0), (take_off + flight / 2, peak), (land, 0.0),
                   (land + 0.3, -0.18), (land + 0.8, 0.0)]
        keys_x += [(take_off - 0.1, x0), (land + 0.1, x1)]
        keys_lean += [(a, 0.0), (a + 0.4, 25.0), (take_off, 5.0), (land + 0.3, 20.0), (land + 0.8, 0.0)]
        keys_arm += [(a, 0.0), (a + 0.4, -40.0), (take_off + 0.1, 120.0), (land + 0.3, 40.0), (land + 0.8, 0.0)]
        for side in (1, -1):
            pose.feet[side].swings.append(Swing(take_off, land, xz + x1 * fwd + side_offset(yaw, side), yaw,
                                                ((0.0, 0.0, 0.0), (0.5, 0.0, 0.85 * peak), (1.0, 0.0, 0.0))))
    # the pelvis is lowered by the feet's reach; in flight it follows its own arc
    pose.height = PELVIS_HEIGHT + track(t, sorted(keys_h))
    pose.root_xz = xz + track(t, sorted(keys_x))[:, None] * fwd
    pose.lean = np.radians(2.0 + track(t, sorted(keys_lean)))
    flex = track(t, sorted(keys_arm))
    pose.arms = {side: arm_dirs(flex, np.full_like(t, 10.0), np.full_like(t, 20.0), side) for side in (1, -1)}
    return pose


def turn(t: np.ndarray, rng: np.random.Generator, *, angle: float) -> Pose:
    """Turning on the spot by `angle` radians (positive: to the left) in small steps."""
    pose, xz, yaw = standing(t, rng)
    a, b = 0.5, t[-1] - 0.6
    heading = yaw + track(t, [(a, 0.0), (b, angle)])
    pose.heading = heading
    steps = max(2, int(round(abs(angle) / np.radians(45))))
    span = (b - a) / steps
    first = 1 if angle > 0 else -1  # lead with the foot on the turning side
    for k in range(steps):
        for i, side in enumerate((first, -first)):
            lift = a + k * span + i * span / 2
            land = lift + span / 2 * 0.9
            target_yaw = yaw + angle * (k + 1) / steps
            pose.feet[side].swings.append(Swing(lift, land, xz + side_offset(target_yaw, side), target_yaw,
                                                ((0.0, 0.0, 0.0), (0.5, 0.0, 0.06), (1.0, 0.0, 0.0))))
    return pose


# ---------------------------------------------------------------------------------------------------
# Vocabulary: recipes with their captions.

def _count(times: int) -> str:
    return {1: "", 2: " twice", 3: " three times"}[times]


def draw_recipe(rng: np.random.Generator) -> Recipe:
    """One random action with modifiers, its length and the verb phrases that describe it."""
    action = str(rng.choice(["walk", "walk", "walk", "run", "jump", "wave", "kick", "squat", "turn", "sit down"]))
    if action == "walk":
        speed = str(rng.choice(["slowly", "normally", "quickly"]))
        path = str(rng.choice(["forward", "forward", "backward", "left", "right", "circle", "turn back"]))
        arms = str(rng.choice(["swing", "swing", "swing", "wave"]))
        adverb = "" if speed == "normally" else f" {speed}"
        phrase = {"forward": "walks forward", "backward": "walks backward", "left": "walks sideways to the left",
                  "right": "walks sideways to the right", "circle": "walks in a circle",
                  "turn back": "walks forward, turns around and walks back"}[path] + adverb
        alt = {"forward": "takes a few steps forward", "backward": "steps backwards",
               "left": "side steps to the left", "right": "side steps to the right",
               "circle": "walks around in a circle", "turn back": "walks, turns around and comes back"}[path]
        if arms == "wave":
            hand = str(rng.choice(["left", "right"]))
            phrase += f" while waving {{pron}} {hand} hand"
            alt += f" waving {{pron}} {hand} hand"
        seconds = float(rng.uniform(9.0, 12.0)) if path in ("circle", "turn back") else float(rng.uniform(4.0, 8.0))
        options = dict(path=path, speed=speed, arms=arms, hand=hand if arms == "wave" else "")
        parts: tuple[tuple[float, float, str], ...] = ()
        if path == "turn back":
            half = seconds / 2
            parts = ((0.0, round(half, 2), "walks forward"), (round(half - 0.6, 2), round(seconds, 2),
                                                                "turns around and walks back"))
        return Recipe("walk", seconds, options, (phrase, alt), parts)
    if action == "run":
        path = str(rng.choice(["forward", "forward", "circle"]))
        speed = str(rng.choice(["normally", "quickly"]))
        phrase = ("runs forward" if path == "forward" else "runs in a circle") + (" fast" if speed == "quickly" else "")
        return Recipe("run", float(rng.uniform(4.0, 7.0)), dict(path=path, speed=speed), (phrase, "jogs " + (
            "forward" if path == "forward" else "around in a circle")))
    if action == "jump":
        forward = bool(rng.random() < 0.5)
        times = int(rng.integers(1, 3))
        phrase = ("jumps forward" if forward else "jumps up in place") + _count(times)
        return Recipe("jump", 2.2 + 1.6 * times, dict(forward=forward, times=times),
                      (phrase, ("hops forward" if forward else "jumps on the spot") + _count(times)))
    if action == "wave":
        hand = str(rng.choice(["left", "right", "both"]))
        what = "both hands" if hand == "both" else f"{{pron}} {hand} hand"
        return Recipe("wave", float(rng.uniform(3.0, 6.0)), dict(hand=hand),
                      (f"waves {what}", f"raises {what} and waves"))
    if action == "kick":
        leg = str(rng.choice(["left", "right"]))
        times = int(rng.integers(1, 3))
        return Recipe("kick", 1.2 + 1.8 * times, dict(leg=leg, times=times),
                      (f"kicks with {{pron}} {leg} leg{_count(times)}", f"kicks forward with the {leg} foot"
                       + _count(times)))
    if action == "squat":
        times = int(rng.integers(1, 4))
        return Recipe("squat", 1.0 + 2.2 * times, dict(times=times),
                      (f"squats down{_count(times)}", f"bends {{pron}} knees and squats{_count(times)}"))
    if action == "turn":
        angle = float(rng.choice([90.0, -90.0, 180.0, -180.0]))
        side = "left" if angle > 0 else "right"
        phrase = "turns around" if abs(angle) == 180 else f"turns to the {side}"
        return Recipe("turn", float(rng.uniform(3.0, 4.5)), dict(angle=angle),
                      (phrase + f" to {{pron}} {side}" if abs(angle) == 180 else phrase, f"turns {side} in place"))
    stand_up = bool(rng.random() < 0.5)
    phrase = "sits down and stands up again" if stand_up else "sits down"
    return Recipe("sit down", 6.5 if stand_up else float(rng.uniform(3.5, 5.0)), dict(stand_up=stand_up),
                  (phrase, "sits down on a chair" + (" and gets up" if stand_up else "")))


WALK_SPEEDS = {"slowly": (0.6, 1.5), "normally": (1.1, 1.8), "quickly": (1.5, 2.1)}  # m/s, steps/s


def perform(recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """Recipe -> (n, 21, 3) joints in metres at the dataset's frame rate."""
    n = int(round(recipe.seconds * FPS))
    t = np.arange(n) / FPS
    o = recipe.options
    if recipe.action == "walk":
        speed, cadence = WALK_SPEEDS[o["speed"]]
        if o["path"] in ("left", "right", "backward"):
            speed *= 0.6
        turn_rate = float(rng.choice([1, -1])) * 2 * np.pi / (recipe.seconds - 2.5) if o["path"] == "circle" else 0.0
        direction = o["path"] if o["path"] in ("backward", "left", "right") else "forward"
        wave_side = {"left": 1, "right": -1}.get(o["hand"], 0)
        pose = locomotion(t, rng, speed=speed, cadence=cadence, duty=0.62, lift=0.07, direction=direction,
                          turn_rate=turn_rate, turn_back_at=recipe.seconds / 2 if o["path"] == "turn back" else None,
                          wave=wave_side)
    elif recipe.action == "run":
        speed = 2.6 if o["speed"] == "normally" else 3.4
        turn_rate = float(rng.choice([1, -1])) * 2 * np.pi / (recipe.seconds - 2.0) if o["path"] == "circle" else 0.0
        pose = locomotion(t, rng, speed=speed, cadence=2.6 if o["speed"] == "normally" else 2.9, duty=0.42,
                          lift=0.16, direction="forward", turn_rate=turn_rate, arm_swing=45.0, elbow=80.0,
                          lean=10.0, bounce=0.03)
    elif recipe.action == "jump":
        pose = jump(t, rng, forward=float(rng.uniform(0.4, 0.7)) if o["forward"] else 0.0, times=o["times"])
    elif recipe.action == "wave":
        pose = wave(t, rng, hand=o["hand"])
    elif recipe.action == "kick":
        pose = kick(t, rng, leg=o["leg"], times=o["times"])
    elif recipe.action == "squat":
        pose = squat(t, rng, times=o["times"])
    elif recipe.action == "turn":
        pose = turn(t, rng, angle=np.radians(o["angle"]))
    else:
        pose = sit_down(t, rng, stand_up=o["stand_up"])
    return build_joints(pose, t)


# ---------------------------------------------------------------------------------------------------
# Captions in the dataset's line format.

POS = {
    "a": "DET", "the": "DET", "his": "DET", "her": "DET", "their": "DET", "both": "DET",
    "someone": "PRON", "and": "CCONJ", "while": "SCONJ",
    "to": "ADP", "in": "ADP", "on": "ADP", "with": "ADP", "around": "ADP",
    "forward": "ADV", "backward": "ADV", "backwards": "ADV", "sideways": "ADV", "slowly": "ADV",
    "quickly": "ADV", "fast": "ADV", "back": "ADV", "again": "ADV", "twice": "ADV", "down": "ADV", "up": "ADV",
    "left": "ADJ", "right": "ADJ", "few": "ADJ", "three": "NUM", "times": "NOUN", "place": "NOUN",
}
VERBS = {
    "walks": "walk", "walk": "walk", "runs": "run", "jogs": "jog", "jumps": "jump", "hops": "hop", "waves": "wave",
    "waving": "wave", "kicks": "kick", "squats": "squat", "bends": "bend", "turns": "turn", "sits": "sit",
    "stands": "stand", "gets": "get", "takes": "take", "steps": "step", "raises": "raise", "comes": "come",
    "side": "side",
}


def tag_tokens(text: str) -> str:
    """A rule-based `word/POS` line (lemmas for verbs), the form the dataset's tokens take."""
    out = []
    for word in text.lower().replace(",", " ").replace(".", " ").split():
        if word in VERBS and word != "side":
            out.append(f"{VERBS[word]}/VERB")
        else:
            out.append(f"{word}/{POS.get(word, 'NOUN')}")
    return " ".join(out)


def caption_line(text: str, start: float = 0.0, end: float = 0.0) -> str:
    return f"{text}#{tag_tokens(text)}#{start}#{end}"


def captions_for(recipe: Recipe, rng: np.random.Generator) -> list[str]:
    lines = []
    for phrase in recipe.phrases:
        subject, pron = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
        lines.append(caption_line(f"{subject} {phrase.format(pron=pron)}."))
    for start, end, phrase in recipe.parts:
        subject, pron = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
        lines.append(caption_line(f"{subject} {phrase.format(pron=pron)}.", start, end))
    return lines


# ---------------------------------------------------------------------------------------------------
# Writing the layout.

def feature_stats(features: list[np.ndarray], spec: MotionDatasetSpec = KIT,
                  floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Std as the public text-to-motion code computes them: per column means, and one
    standard deviation per feature group (each root channel, ric, rot, vel, feet) so that
    columns that are constant within a group (the root's own ric x) do not divide by zero."""
    data = np.concatenate(features, 0).astype(np.float64)
    mean, std = data.mean(0), data.std(0)
    s = spec.slices()
    groups = [slice(0, 1), slice(1, 3), slice(3, 4), s["ric"], s["rot"], s["vel"], s["feet"]]
    for g in groups:
        std[g] = std[g].mean()
    return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)


def split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """Seeded 80/10/10 split, every split non-empty once there are three ids."""
    order = list(np.random.default_rng([seed, 101]).permutation(len(ids)))
    n = len(ids)
    n_val = max(1, int(round(n * SPLIT_FRACTIONS[1]))) if n >= 3 else 0
    n_test = max(1, int(round(n * SPLIT_FRACTIONS[2]))) if n >= 3 else 0
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    return {name: sorted(ids[i] for i in part) for name, part in (("train", train), ("val", val), ("test", test))}


def write_motion(out: Path, motion_id: str, joints_units: np.ndarray, lines: list[str]) -> np.ndarray:
    """Write one clip's features, recovered joints and captions; -> (T-1, D) features."""
    features = joints_to_features(joints_units, KIT)
    np.save(out / "new_joint_vecs" / f"{motion_id}.npy", features)
    np.save(out / "new_joints" / f"{motion_id}.npy", recover_joints(features, KIT.num_joints))
    (out / "texts" / f"{motion_id}.txt").write_text("\n".join(lines) + "\n")
    return features


def synth_kit_ml(out: Path, motions: int = 64, seed: int = 0, mocap: bool = False,
                 progress: Callable[[str], None] | None = None) -> list[str]:
    """Write a KIT-ML look-alike under `out`; return its motion ids.

    Motion i depends only on (seed, i), so asking for more motions keeps the first ones. With
    `mocap`, the motion-capture clips shipped with pybullet are added after the procedural ones.
    """
    out = Path(out)
    if motions < 0:
        raise ValueError(f"motions must be >= 0, got {motions}")
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids, feats = [], {}
    for i in range(motions):
        rng = np.random.default_rng([seed, i])
        recipe = draw_recipe(rng)
        joints = perform(recipe, rng) * UNITS_PER_METRE
        motion_id = f"{i:05d}"
        feats[motion_id] = write_motion(out, motion_id, joints, captions_for(recipe, rng))
        ids.append(motion_id)
    if mocap:
        from motionlab.datasets.mocap import mocap_clips

        for k, (name, joints, text) in enumerate(mocap_clips(FPS)):
            motion_id = f"M{k:04d}"
            feats[motion_id] = write_motion(out, motion_id, joints * UNITS_PER_METRE, [caption_line(text)])
            ids.append(motion_id)
            if progress:
                progress(f"{motion_id}: {name}")
    splits = split_ids(ids, seed)
    for name, members in splits.items():
        (out / f"{name}.txt").write_text("".join(f"{m}\n" for m in members))
    train = [feats[m] for m in splits["train"]] or list(feats.values())
    if train:
        mean, std = feature_stats(train)
        np.save(out / "Mean.npy", mean)
        np.save(out / "Std.npy", std)
    return ids
