"""Physical plausibility of motions on pybullet's DeepMimic humanoid, one Ray task per motion.

Two evaluations per motion (joint positions in the dataset's units, retargeted by `retarget`):

(a) kinematic replay: the humanoid is put in each frame's pose and `getClosestPoints` against the
    ground plane gives, per frame, how deep its lowest collision shape sinks (penetration) and how
    high it hovers over the floor in frames where a foot is still (floating);
(b) PD tracking with a root assist: joint motors (POSITION_CONTROL, pybullet's implicit, stable PD
    on spherical and revolute joints, DeepMimic's force limits) pull towards the retargeted pose,
    while a force-limited fixed constraint (solved implicitly, like the motors; read back with
    `getConstraintState`) pulls the base towards the reference root: how well it tracks
    (mean joint position error, metres, humanoid scale), whether it falls (pelvis under a height or
    head under the pelvis) and how much help it needed (mean assist force, N). A physically
    plausible motion needs little assist; a sliding, floating or toppling one needs a lot or falls.

A motion whose simulation blows up (non-finite state, exploding velocity, a pybullet error) or that
cannot be evaluated (NaN input, wrong shape) comes back as {"status": "failed", "reason": ...}:
one bad motion never costs the others in the same call.
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from motionlab.datasets import mocap
from motionlab.datasets.motion_features import MotionDatasetSpec
from motionlab.physics.retarget import KIT_LANDMARKS, SUPPORT_SPEED_MPS, frame_joints, retarget, rig_for

# Motor strength per joint, DeepMimic's humanoid_stable_pd values (max force N m).
MAX_FORCE = {"chest": 200.0, "neck": 50.0, "hip": 200.0, "knee": 150.0, "ankle": 90.0, "shoulder": 100.0,
             "elbow": 60.0}
JOINT_INDEX = {"chest": 1, "neck": 2, "right_hip": 3, "right_knee": 4, "right_ankle": 5, "right_shoulder": 6,
               "right_elbow": 7, "left_hip": 9, "left_knee": 10, "left_ankle": 11, "left_shoulder": 12,
               "left_elbow": 13}


@dataclass(frozen=True)
class SimConfig:
    """Simulation and controller settings; defaults stand a generated person still and track a walk."""

    min_sim_hz: float = 240.0  # the step is 1 / (fps * k), the smallest k reaching this rate
    position_gain: float = 1.0  # POSITION_CONTROL: fraction of the pose error corrected per step
    velocity_gain: float = 1.0
    force_scale: float = 1.0  # multiplies MAX_FORCE
    assist_max_force: float = 300.0  # N (and N m) per axis: the most the root assist may push or twist
    fall_pelvis_height_m: float = 0.4
    max_speed_mps: float = 50.0  # any link faster than this: the simulation blew up
    friction: float = 0.9
    num_cpus: float = 0.5  # per Ray task
    keep_trajectories: bool = False  # return (T, 21, 3) reference and simulated joints (for GIFs)


@dataclass
class _Record:
    index: int
    status: str = "ok"
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0
    scale: float = float("nan")
    retarget_error_m: float = float("nan")
    replay_penetration_m: float = float("nan")
    replay_max_penetration_m: float = float("nan")
    replay_floating_m: float = float("nan")
    tracking_error_m: float = float("nan")
    fell: bool = False
    fall_time_s: float | None = None
    mean_assist_force_n: float = float("nan")
    mean_assist_torque_nm: float = float("nan")
    max_base_speed_mps: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


class SimulationBlewUp(RuntimeError):
    """The state went non-finite or a velocity exploded."""


def _connect() -> tuple[Any, int, int]:
    """A private DIRECT client with a y-up ground plane and the humanoid (as pybullet's examples load it)."""
    import pybullet
    import pybullet_data
    from pybullet_utils import bullet_client

    client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
    client.setAdditionalSearchPath(pybullet_data.getDataPath())
    client.setGravity(0, -9.81, 0)
    z2y = client.getQuaternionFromEuler([-np.pi / 2, 0, 0])
    plane = client.loadURDF("plane_implicit.urdf", [0, 0, 0], z2y, useMaximalCoordinates=True)
    humanoid = client.loadURDF("humanoid/humanoid.urdf", [0, 1, 0], globalScaling=mocap.URDF_SCALE,
                               useFixedBase=False, flags=client.URDF_MAINTAIN_LINK_ORDER)
    client.changeDynamics(humanoid, -1, linearDamping=0, angularDamping=0)
    for j in range(-1, client.getNumJoints(humanoid)):
        client.changeDynamics(humanoid, j, lateralFriction=0.9)
    client.changeDynamics(plane, -1, lateralFriction=0.9)
    return client, plane, humanoid


def _xyzw(q: np.ndarray) -> list[float]:
    return [float(q[1]), float(q[2]), float(q[3]), float(q[0])]


def _split(frame: np.ndarray) -> dict[str, np.ndarray]:
    out, col = {}, 8
    for name, size in mocap.JOINTS:
        out[name] = frame[col:col + size]
        col += size
    return out


def _set_pose(client: Any, humanoid: int, frame: np.ndarray) -> None:
    client.resetBasePositionAndOrientation(humanoid, frame[1:4].tolist(), _xyzw(frame[4:8]))
    parts = _split(frame)
    for name, index in JOINT_INDEX.items():
        value = parts[name]
        target = _xyzw(value) if len(value) == 4 else [float(value[0])]
        client.resetJointStateMultiDof(humanoid, index, target, [0.0] * (3 if len(value) == 4 else 1))


def _read_pose(client: Any, humanoid: int, dt: float) -> np.ndarray:
    """The simulated state as a (44,) humanoid frame."""
    pos, orn = client.getBasePositionAndOrientation(humanoid)
    frame = np.zeros(44)
    frame[0] = dt
    frame[1:4] = pos
    frame[4:8] = (orn[3], orn[0], orn[1], orn[2])
    states = client.getJointStatesMultiDof(humanoid, list(JOINT_INDEX.values()))
    col = 8
    for (_, size), state in zip(mocap.JOINTS, states, strict=True):
        q = state[0]
        frame[col:col + size] = (q[3], q[0], q[1], q[2]) if size == 4 else q[0]
        col += size
    return frame


def _nlerp(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    q = (1 - u) * a + u * b
    return q / np.linalg.norm(q)


def _interp_frame(frames: np.ndarray, t: float) -> np.ndarray:
    """Reference pose between frames (t in frames): lerp positions and angles, nlerp quaternions."""
    i = int(np.clip(np.floor(t), 0, len(frames) - 1))
    j = min(i + 1, len(frames) - 1)
    u = float(np.clip(t - i, 0.0, 1.0))
    out = (1 - u) * frames[i] + u * frames[j]
    out[4:8] = _nlerp(frames[i, 4:8], frames[j, 4:8], u)
    col = 8
    for _, size in mocap.JOINTS:
        if size == 4:
            out[col:col + 4] = _nlerp(frames[i, col:col + 4], frames[j, col:col + 4], u)
        col += size
    return out


def _kinematic_replay(client: Any, plane: int, humanoid: int, frames: np.ndarray, support: np.ndarray
                      ) -> tuple[float, float, float]:
    """Per frame, signed distance of the humanoid's lowest shape to the ground -> (mean pen, max pen, floating)."""
    lowest = np.zeros(len(frames))
    for k, frame in enumerate(frames):
        _set_pose(client, humanoid, frame)
        points = client.getClosestPoints(humanoid, plane, distance=5.0)
        lowest[k] = min((p[8] for p in points), default=5.0)
    penetration = np.maximum(-lowest, 0.0)
    floating = np.maximum(lowest[support], 0.0)
    return float(penetration.mean()), float(penetration.max()), float(floating.mean()) if support.any() else 0.0


def _track(client: Any, humanoid: int, frames: np.ndarray, fps: float, config: SimConfig,
           rec: _Record) -> tuple[np.ndarray, list[float], list[float]]:
    """PD tracking with the root assist; -> (T, 44) simulated frames, assist forces, assist torques."""
    substeps = int(np.ceil(config.min_sim_hz / fps))
    dt = 1.0 / (fps * substeps)
    client.setTimeStep(dt)
    client.setPhysicsEngineParameter(numSubSteps=1)
    _set_pose(client, humanoid, frames[0])
    root_vel = np.gradient(frames[:, 1:4], axis=0) * fps if len(frames) > 1 else np.zeros((1, 3))
    client.resetBaseVelocity(humanoid, root_vel[0].tolist(), [0.0, 0.0, 0.0])
    # The root assist is a force-limited fixed constraint from the base to the reference root, solved
    # implicitly with the joint motors: an explicit PD torque on the light pelvis diverged at any useful gain.
    assist = client.createConstraint(humanoid, -1, -1, -1, client.JOINT_FIXED, [0, 0, 0], [0, 0, 0],
                                     frames[0, 1:4].tolist(), childFrameOrientation=_xyzw(frames[0, 4:8]))
    indices = list(JOINT_INDEX.values())
    forces = []
    for name in JOINT_INDEX:
        f = MAX_FORCE[name.split("_")[-1]] * config.force_scale
        forces.append([f, f, f] if name.endswith(("hip", "ankle", "shoulder", "chest", "neck")) else [f])
    sizes = dict(mocap.JOINTS)
    simulated = [frames[0].copy()]
    assist_f: list[float] = []
    assist_t: list[float] = []
    max_speed = 0.0
    for step in range(1, (len(frames) - 1) * substeps + 1):
        target = _interp_frame(frames, step / substeps)
        parts = _split(target)
        targets = [_xyzw(parts[n]) if sizes[n] == 4 else [float(parts[n][0])] for n in JOINT_INDEX]
        client.setJointMotorControlMultiDofArray(
            humanoid, indices, client.POSITION_CONTROL, targetPositions=targets,
            positionGains=[config.position_gain] * len(indices), velocityGains=[config.velocity_gain] * len(indices),
            forces=forces)
        client.changeConstraint(assist, jointChildPivot=target[1:4].tolist(),
                                jointChildFrameOrientation=_xyzw(target[4:8]), maxForce=config.assist_max_force)
        client.stepSimulation()
        applied = np.asarray(client.getConstraintState(assist), np.float64)
        if not np.isfinite(applied).all():
            raise SimulationBlewUp(f"non-finite root assist at t={step * dt:.3f}s")
        assist_f.append(float(np.linalg.norm(applied[:3])))
        assist_t.append(float(np.linalg.norm(applied[3:6])))
        if step % substeps == 0:
            frame = _read_pose(client, humanoid, 1.0 / fps)
            speed = float(np.linalg.norm(client.getBaseVelocity(humanoid)[0]))
            if not np.isfinite(frame).all() or not np.isfinite(speed):
                raise SimulationBlewUp(f"non-finite simulated state at t={step * dt:.3f}s")
            if speed > config.max_speed_mps:
                raise SimulationBlewUp(f"base speed {speed:.1f} m/s > {config.max_speed_mps} m/s "
                                       f"at t={step * dt:.3f}s")
            max_speed = max(max_speed, speed)
            simulated.append(frame)
    rec.max_base_speed_mps = max_speed
    return np.stack(simulated), assist_f, assist_t


def evaluate_motion(motion: np.ndarray, spec: MotionDatasetSpec, config: SimConfig = SimConfig(),
                    index: int = 0) -> dict[str, Any]:
    """Both evaluations of one motion (T, J, 3) in the dataset's units; never raises (failures are records)."""
    rec = _Record(index=index)
    try:
        motion = np.asarray(motion, np.float64)
        if motion.ndim != 3 or motion.shape[1:] != (spec.num_joints, 3):
            raise ValueError(f"shape {motion.shape}, expected (frames, {spec.num_joints}, 3) for {spec.name}")
        if len(motion) < 2:
            raise ValueError(f"{len(motion)} frame(s); at least 2 are needed")
        bad = np.where(~np.isfinite(motion).all(axis=(1, 2)))[0]
        if len(bad):
            raise ValueError(f"non-finite joint positions in {len(bad)} frame(s), first at frame {bad[0]}")
        rec.frames, rec.seconds = len(motion), len(motion) / spec.fps
        frames, reference, rec.scale = retarget(motion * spec.metres_per_unit, spec, spec.fps)
        rig = rig_for(spec)
        ref_fk = frame_joints(frames)  # (T, 21, 3) the pose the controller tracks
        rec.retarget_error_m = float(np.linalg.norm(ref_fk[:, KIT_LANDMARKS] - reference[:, rig.landmarks()],
                                                    axis=-1).mean())
        feet = reference[:, list(spec.feet_left) + list(spec.feet_right)]
        support = np.linalg.norm(np.gradient(feet, axis=0), axis=-1).min(-1) * spec.fps < SUPPORT_SPEED_MPS
    except Exception as exc:  # noqa: BLE001 - a bad motion is a record, not a crash
        rec.status, rec.reason = "failed", f"invalid motion: {exc}"
        return rec.as_dict()

    client = None
    try:
        client, plane, humanoid = _connect()
        (rec.replay_penetration_m, rec.replay_max_penetration_m,
         rec.replay_floating_m) = _kinematic_replay(client, plane, humanoid, frames, support)
        simulated, assist_f, assist_t = _track(client, humanoid, frames, spec.fps, config, rec)
        sim_fk = frame_joints(simulated)  # (T, 21, 3)
        rec.tracking_error_m = float(np.linalg.norm(sim_fk - ref_fk, axis=-1).mean())
        fallen = (sim_fk[:, 0, 1] < config.fall_pelvis_height_m) | (sim_fk[:, 4, 1] < sim_fk[:, 0, 1])
        rec.fell = bool(fallen.any())
        rec.fall_time_s = float(np.argmax(fallen) / spec.fps) if rec.fell else None
        rec.mean_assist_force_n = float(np.mean(assist_f)) if assist_f else 0.0
        rec.mean_assist_torque_nm = float(np.mean(assist_t)) if assist_t else 0.0
        if config.keep_trajectories:
            rec.extra = {"reference_joints": ref_fk.astype(np.float32), "simulated_joints": sim_fk.astype(np.float32)}
    except SimulationBlewUp as exc:
        rec.status, rec.reason = "failed", f"simulation blew up: {exc}"
    except Exception as exc:  # noqa: BLE001 - pybullet raises plain errors
        rec.status = "failed"
        rec.reason = f"pybullet error: {type(exc).__name__}: {exc} ({traceback.format_exc(limit=1).strip()[-200:]})"
    finally:
        if client is not None:
            client.disconnect()
    return rec.as_dict()


def evaluate_motions(motions: list[np.ndarray], spec: MotionDatasetSpec, config: SimConfig = SimConfig()
                     ) -> list[dict[str, Any]]:
    """One Ray task per motion (one pybullet DIRECT client each); results in input order.

    Ray must be initialised by the caller (a local `ray.init` or a cluster address). A task whose worker
    dies (e.g. a crash inside pybullet) is recorded as failed like any other bad motion.
    """
    import ray

    if not ray.is_initialized():
        raise RuntimeError("evaluate_motions: Ray is not initialised; call ray.init() (or motionlab.raycluster."
                           "init_ray) first")
    task = ray.remote(evaluate_motion).options(num_cpus=config.num_cpus, max_retries=0)
    refs = [task.remote(np.asarray(m), spec, config, k) for k, m in enumerate(motions)]
    out = []
    for k, ref in enumerate(refs):
        try:
            out.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - a dead worker is one failed motion
            out.append(_Record(index=k, status="failed", reason=f"ray task failed: {type(exc).__name__}: "
                               f"{str(exc)[:300]}").as_dict())
    return out


def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
    """Aggregate over motions: fall rate and means over the successful ones, plus how many failed."""
    ok = [r for r in results if r["status"] == "ok"]

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in ok])) if ok else float("nan")

    return {"motions": float(len(results)), "failed": float(len(results) - len(ok)),
            "fall_rate": float(np.mean([r["fell"] for r in ok])) if ok else float("nan"),
            "tracking_error_m": mean("tracking_error_m"), "retarget_error_m": mean("retarget_error_m"),
            "mean_assist_force_n": mean("mean_assist_force_n"), "replay_penetration_m": mean("replay_penetration_m"),
            "replay_floating_m": mean("replay_floating_m")}


# ---------------------------------------------------------------------------------------------------
# Looping GIFs: reference (grey) and simulated (red) stick figures, side view.

KIT_CHAIN = ((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10))


def render_gif(path: Path, reference: np.ndarray, simulated: np.ndarray | None = None, fps: float = 12.5,
               size_px: int = 240) -> Path:
    """(T, 21, 3) metres (KIT layout, y up) -> a looping GIF seen from the person's side (first frame)."""
    import imageio.v2 as imageio
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    poses = [reference] + ([simulated] if simulated is not None else [])
    across = reference[0, 11] - reference[0, 16]
    forward = np.array([across[2], 0.0, -across[0]])
    forward /= max(np.linalg.norm(forward), 1e-9)
    flat = [np.stack([p @ forward, p[..., 1]], -1) for p in poses]  # (T, 21, 2)
    allp = np.concatenate([f.reshape(-1, 2) for f in flat])
    lo, hi = allp.min(0) - 0.2, allp.max(0) + 0.2
    span = max(hi - lo)
    centre = (lo + hi) / 2
    fig = Figure(figsize=(size_px / 80, size_px / 80), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    images = []
    for t in range(len(reference)):
        ax.clear()
        ax.set_xlim(centre[0] - span / 2, centre[0] + span / 2)
        ax.set_ylim(centre[1] - span / 2, centre[1] + span / 2)
        ax.axhline(0.0, color="k", lw=1)
        ax.axis("off")
        for f, colour in zip(flat, ("0.55", "tab:red"), strict=False):
            for chain in KIT_CHAIN:
                ax.plot(f[min(t, len(f) - 1), list(chain), 0], f[min(t, len(f) - 1), list(chain), 1], color=colour,
                        lw=2)
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, images, duration=1.0 / fps, loop=0)
    return path


def write_gifs(results: list[dict[str, Any]], out_dir: Path, fps: float, count: int = 3) -> list[Path]:
    """GIFs of the first `count` successful results that kept trajectories (SimConfig.keep_trajectories)."""
    paths = []
    for r in results:
        if len(paths) >= count:
            break
        if r["status"] == "ok" and "reference_joints" in r:
            paths.append(render_gif(Path(out_dir) / f"motion_{r['index']:03d}.gif", r["reference_joints"],
                                    r["simulated_joints"], fps))
    return paths
