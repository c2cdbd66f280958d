"""Real motion capture without downloads: the clips shipped in the pybullet wheel, as KIT joints.

`pybullet_data/data/motions/humanoid3d_*.txt` hold 15 retargeted motion-capture clips (walk,
run, jump, kicks, dances, get-ups ...) as joint rotations of `humanoid/humanoid.urdf`. Forward
kinematics on that humanoid (offsets read from the URDF, scaled as the pybullet examples load it)
gives positions, which are mapped to the 21 KIT joints, resampled to the wanted frame rate and
returned in metres, y up (the humanoid's own up axis), so real movement sits beside the
procedural data and exercises the same feature code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

URDF_SCALE = 0.25  # the pybullet DeepMimic examples load humanoid.urdf with globalScaling=0.25
MIN_SECONDS = 4.0  # looping clips are repeated to at least this long
HOLD_SECONDS = 0.5  # one-shot clips hold their first and last pose this long (the length filter)

# Frame layout of humanoid3d_*.txt: duration, root position (3), root rotation (w, x, y, z), then
# per joint a quaternion (spherical) or one angle about z (revolute), in this order.
JOINTS = (("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4),
          ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1), ("left_ankle", 4),
          ("left_shoulder", 4), ("left_elbow", 1))

CAPTIONS = {
    "backflip": "a person does a backflip.",
    "cartwheel": "a person does a cartwheel.",
    "crawl": "a person crawls forward on hands and knees.",
    "dance_a": "a person dances.",
    "dance_b": "a person dances energetically.",
    "getup_facedown": "a person lying face down gets up.",
    "getup_faceup": "a person lying on their back gets up.",
    "jump": "a person jumps forward.",
    "kick": "a person kicks with their right leg.",
    "punch": "a person punches.",
    "roll": "a person rolls forward on the ground.",
    "run": "a person runs forward.",
    "spin": "a person spins around.",
    "spinkick": "a person does a spinning kick.",
    "walk": "a person walks forward.",
}

# Points of the foot and head in their link frames (URDF units): the foot box's sole under the
# ball and the toe tip, and a point inside the head sphere.
BALL = (0.36, -0.17, 0.0)
TOE = (0.53, -0.17, 0.0)
HEAD = (0.0, 0.5, 0.0)
UPPER_BACK = (0.0, 0.45, 0.0)


def data_path() -> Path:
    try:
        import pybullet_data
    except ImportError as exc:  # pragma: no cover - pybullet is a dependency
        raise RuntimeError("the motion-capture clips ship with pybullet: pip install pybullet") from exc
    return Path(pybullet_data.getDataPath())


def urdf_offsets(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """joint name -> (parent link, origin xyz in metres). The shipped file is not well-formed XML
    near its end, so joints are read with a pattern rather than an XML parser."""
    text = path.read_text(errors="replace")
    out = {}
    for m in re.finditer(r'<joint name="(\w+)" type="\w+"\s*>(.*?)</joint>', text, re.S):
        parent = re.search(r'<parent link\s*=\s*"(\w+)"', m.group(2))
        origin = re.search(r'<origin[^>]*xyz\s*=\s*"([^"]+)"', m.group(2))
        if parent and origin:
            out[m.group(1)] = (parent.group(1), np.array([float(v) for v in origin.group(1).split()]) * URDF_SCALE)
    return out


def quat_matrix(q: np.ndarray) -> np.ndarray:
    """(n, 4) (w, x, y, z) -> (n, 3, 3)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _z_matrix(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def forward_kinematics(frames: np.ndarray, offsets: dict[str, tuple[str, np.ndarray]]) -> np.ndarray:
    """(n, 44) humanoid frames -> (n, 21, 3) KIT joints in metres, y up."""
    n = len(frames)
    rot = {"root": quat_matrix(frames[:, 4:8])}
    pos = {"root": frames[:, 1:4]}
    col = 8
    for name, size in JOINTS:
        parent, origin = offsets[name]
        local = quat_matrix(frames[:, col:col + 4]) if size == 4 else _z_matrix(frames[:, col])
        col += size
        pos[name] = pos[parent] + np.einsum("nij,j->ni", rot[parent], origin)
        rot[name] = rot[parent] @ local
    for side in ("right", "left"):
        parent, origin = offsets[f"{side}_wrist"]
        pos[f"{side}_wrist"] = pos[parent] + np.einsum("nij,j->ni", rot[parent], origin)

    def point(link: str, local: tuple[float, float, float]) -> np.ndarray:
        return pos[link] + np.einsum("nij,j->ni", rot[link], np.array(local) * URDF_SCALE)

    j = np.zeros((n, 21, 3))
    j[:, 0] = pos["root"]
    j[:, 1] = 0.5 * (pos["root"] + pos["chest"])
    j[:, 2] = point("chest", UPPER_BACK)
    j[:, 3] = pos["neck"]
    j[:, 4] = point("neck", HEAD)
    for side, first_arm, first_leg in (("right", 5, 11), ("left", 8, 16)):
        j[:, first_arm] = pos[f"{side}_shoulder"]
        j[:, first_arm + 1] = pos[f"{side}_elbow"]
        j[:, first_arm + 2] = pos[f"{side}_wrist"]
        j[:, first_leg] = pos[f"{side}_hip"]
        j[:, first_leg + 1] = pos[f"{side}_knee"]
        j[:, first_leg + 2] = pos[f"{side}_ankle"]
        j[:, first_leg + 3] = point(f"{side}_ankle", BALL)
        j[:, first_leg + 4] = point(f"{side}_ankle", TOE)
    return j


def _heading(joints: np.ndarray) -> np.ndarray:
    """(n, 21, 3) -> (n,) yaw of the hips' forward direction."""
    across = joints[:, 11] - joints[:, 16]  # right hip - left hip
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    return np.arctan2(forward[:, 0], forward[:, 2])


def _loop(joints: np.ndarray, times: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Repeat a wrapping cycle, carrying each repeat's end position and heading into the next."""
    cycle = joints[:-1]  # the last frame repeats the first, moved
    period = times[-1] - times[0]
    yaw = _heading(joints[-1:])[0] - _heading(joints[:1])[0]
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    start = joints[0, 0] * np.array([1.0, 0.0, 1.0])
    shift = (joints[-1, 0] - joints[0, 0]) * np.array([1.0, 0.0, 1.0])
    parts, part_times, rot, offset = [], [], np.eye(3), np.zeros(3)
    k = 0
    while k == 0 or k * period < seconds:
        parts.append((cycle - start) @ rot.T + start + offset)
        part_times.append(times[:-1] + k * period)
        offset = offset + rot @ shift
        rot = turn @ rot
        k += 1
    return np.concatenate(parts), np.concatenate(part_times)


def resample(joints: np.ndarray, times: np.ndarray, fps: float) -> np.ndarray:
    """(n, J, 3) at `times` -> (m, J, 3) at 1/fps steps, linearly interpolated."""
    target = np.arange(0.0, times[-1] + 1e-9, 1.0 / fps)
    flat = joints.reshape(len(joints), -1)
    out = np.stack([np.interp(target, times, flat[:, c]) for c in range(flat.shape[1])], -1)
    return out.reshape(len(target), *joints.shape[1:])


def mocap_clips(fps: float) -> list[tuple[str, np.ndarray, str]]:
    """[(name, (T, 21, 3) joints in metres at `fps`, caption)] for every shipped humanoid clip."""
    root = data_path()
    offsets = urdf_offsets(root / "humanoid" / "humanoid.urdf")
    clips = []
    for path in sorted((root / "data" / "motions").glob("humanoid3d_*.txt")):
        name = path.stem.removeprefix("humanoid3d_")
        data = json.loads(path.read_text())
        frames = np.asarray(data["Frames"], np.float64)
        times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
        joints = forward_kinematics(frames, offsets)
        if data.get("Loop") == "wrap":
            joints, times = _loop(joints, times, MIN_SECONDS)
        else:
            joints = np.concatenate([joints[:1], joints, joints[-1:]])
            times = np.concatenate([[0.0], times + HOLD_SECONDS, [times[-1] + 2 * HOLD_SECONDS]])
        clips.append((name, resample(joints, times, fps), CAPTIONS.get(name, f"a person does {name}.")))
    return clips
