"""motionlab.physics: the differentiable state and losses on hand-made motions with known answers, the
evaluation metrics on generated walks, and the PyBullet evaluation in Ray tasks (stand, fall, failures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from motionlab.datasets.motion_features import KIT
from motionlab.datasets.synth_kit import UNITS_PER_METRE, Recipe, build_joints, perform, standing
from motionlab.physics import PHYSICS_STATE_DIM, STATE_SLOTS, physics_state, to_metres
from motionlab.physics.losses import (
    DEFAULT_WEIGHTS,
    floating_metric,
    foot_skating_ratio,
    foot_sliding,
    ground_penetration,
    jerk,
    jerk_metric,
    motion_metrics,
    penetration_metric,
    physics_loss,
)

FPS = KIT.fps
FEET_R = list(KIT.feet_right)
FEET_L = list(KIT.feet_left)


def _on_floor(joints_m: np.ndarray) -> np.ndarray:
    out = joints_m.copy()
    out[..., 1] -= out[..., 1].min()
    return out


def _stand_m(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """(T, 21, 3) metres: a generated person standing still, lowest joint on the floor."""
    t = np.arange(int(seconds * FPS)) / FPS
    pose, _, _ = standing(t, np.random.default_rng(seed))
    return _on_floor(build_joints(pose, t))


def _walk_m(seed: int, path: str = "forward", speed: str = "normally") -> np.ndarray:
    recipe = Recipe("walk", 5.0, dict(path=path, speed=speed, arms="swing", hand=""), ("walks",))
    return _on_floor(perform(recipe, np.random.default_rng(seed)))


# ---------------------------------------------------------------------------------------------------
# Physics state

def test_state_slots_hold_known_values_for_a_gliding_body():
    """A standing body gliding at 1 m/s along x: root and CoM velocity (1, 0, 0), no acceleration,
    no angular momentum, pelvis height as built, feet in contact by height but not by speed."""
    stand = _stand_m(2.0)
    t = np.arange(len(stand)) / FPS
    glide = stand + np.stack([t, 0 * t, 0 * t], -1)[:, None, :]
    units = torch.tensor(glide * UNITS_PER_METRE, dtype=torch.float64)[None]  # (1, T, 21, 3)
    state = physics_state(units, KIT)[0]
    assert state.shape == (len(stand), PHYSICS_STATE_DIM) and PHYSICS_STATE_DIM == 64
    s = {k: state[:, v] for k, v in STATE_SLOTS.items()}
    assert torch.allclose(s["gravity"], torch.tensor(-9.81, dtype=torch.float64))
    torch.testing.assert_close(s["pelvis_height"][:, 0], torch.tensor(stand[:, 0, 1]))
    torch.testing.assert_close(s["root_velocity"], torch.tensor([[1.0, 0.0, 0.0]]).double().expand(len(t), 3))
    torch.testing.assert_close(s["com_velocity"], torch.tensor([[1.0, 0.0, 0.0]]).double().expand(len(t), 3))
    assert s["com_acceleration"].abs().max() < 1e-9 and s["pelvis_vertical_acceleration"].abs().max() < 1e-9
    assert s["angular_momentum"].abs().max() < 1e-9
    assert s["root_yaw_rate"].abs().max() < 1e-9
    torch.testing.assert_close(s["root_position"][:, 0], torch.tensor(glide[:, 0, 0]))
    assert (s["padding"] == 0).all()
    assert (s["foot_contacts"] < 0.01).all()  # 1 m/s is above the 0.5 m/s contact speed

    still = physics_state(torch.tensor(stand * UNITS_PER_METRE)[None], KIT)[0]
    assert (still[:, STATE_SLOTS["foot_contacts"]] > 0.9).all()  # planted feet on the floor


def test_state_yaw_rate_and_angular_momentum_of_a_turning_body():
    """Spinning in place at 1 rad/s about +y: yaw rate 1 rad/s; angular momentum matches the analytic
    mean_j (r_j - c) x (v_j - v_c) with v = w x (r - axis) (central differences lose 0.1% at 12.5 fps)."""
    stand = _stand_m(2.0)
    t = np.arange(len(stand)) / FPS
    c, s_ = np.cos(t), np.sin(t)
    rot = np.zeros((len(t), 3, 3))
    rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = c, s_, 1.0, -s_, c
    centre = stand[0, 0] * np.array([1.0, 0.0, 1.0])
    spun = np.einsum("tij,tkj->tki", rot, stand - centre) + centre
    state = physics_state(torch.tensor(spun * UNITS_PER_METRE)[None], KIT)[0]
    yaw_rate = state[1:-1, STATE_SLOTS["root_yaw_rate"]]
    torch.testing.assert_close(yaw_rate, torch.ones_like(yaw_rate).double(), atol=1e-6, rtol=0)
    ang = state[1:-1, STATE_SLOTS["angular_momentum"]].numpy()
    vel = np.cross(np.array([0.0, 1.0, 0.0]), spun - centre)  # (T, J, 3)
    r = spun - spun.mean(1, keepdims=True)
    expected = np.cross(r, vel - vel.mean(1, keepdims=True)).mean(1)[1:-1]
    np.testing.assert_allclose(ang, expected, atol=2e-3 * np.abs(expected).max())
    assert (ang[:, 1] > 0.01).all()  # a positive spin about +y


def test_state_is_differentiable():
    joints = torch.tensor(_walk_m(1)[:20] * UNITS_PER_METRE, dtype=torch.float32)[None].requires_grad_(True)
    physics_state(joints, KIT).square().sum().backward()
    assert joints.grad is not None and torch.isfinite(joints.grad).all() and joints.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expected"):
        physics_state(torch.zeros(1, 5, 22, 3), KIT)


# ---------------------------------------------------------------------------------------------------
# Losses on hand-made motions with known answers

def test_dragged_foot_slides_at_its_speed_and_planted_foot_does_not():
    """The right foot on the floor dragged at 1 m/s: sliding 1 m/s; the left one planted: 0."""
    stand = _stand_m(2.0)
    t = np.arange(len(stand)) / FPS
    dragged = stand.copy()
    dragged[:, FEET_R] += np.stack([t, 0 * t, 0 * t], -1)[:, None, :]
    per_foot = foot_sliding(torch.tensor(dragged), FPS, KIT, per_foot=True)
    assert per_foot[1].item() == pytest.approx(1.0, abs=2e-3)
    assert per_foot[0].item() == pytest.approx(0.0, abs=1e-9)
    assert foot_sliding(torch.tensor(stand), FPS, KIT).item() == pytest.approx(0.0, abs=1e-9)
    # the metric: every contact pair of the right foot slides (1 m/s > 0.5), none of the left
    assert foot_skating_ratio(dragged, FPS, KIT) == pytest.approx(0.5)
    assert foot_skating_ratio(stand, FPS, KIT) == 0.0


def test_penetration_of_a_body_sunk_5cm():
    stand = _stand_m(1.0)
    sunk = stand - np.array([0.0, 0.05, 0.0])
    assert ground_penetration(torch.tensor(sunk)).item() == pytest.approx(0.05, abs=1e-9)
    assert penetration_metric(sunk) == pytest.approx(0.05, abs=1e-9)
    assert ground_penetration(torch.tensor(stand)).item() == 0.0
    # floating: the same body lifted 10 cm hovers 10 cm above the floor while standing still
    assert floating_metric(stand + np.array([0.0, 0.10, 0.0]), FPS, KIT) == pytest.approx(0.10, abs=1e-9)
    assert floating_metric(stand, FPS, KIT) == pytest.approx(0.0, abs=1e-9)


def test_jerk_of_a_cubic_trajectory():
    """x(t) = a t^3 has jerk 6a everywhere; the third difference is exact on cubics."""
    a = 0.7
    t = np.arange(30) / FPS
    stand = _stand_m(1.0)[:1]
    moving = stand + (a * t ** 3)[:, None, None] * np.array([1.0, 0.0, 0.0])
    assert jerk(torch.tensor(moving), FPS).item() == pytest.approx(6 * a, rel=1e-6)
    assert jerk_metric(moving, FPS) == pytest.approx(6 * a, rel=1e-6)


def test_physics_loss_terms_total_and_gradient():
    joints = torch.tensor(_walk_m(2)[:40], requires_grad=True)
    sunk = joints - torch.tensor([0.0, 0.02, 0.0], dtype=joints.dtype)
    out = physics_loss(sunk, FPS, KIT, {"jerk": 0.01})
    assert set(out) == {"sliding", "penetration", "jerk", "total"}
    expected = DEFAULT_WEIGHTS["sliding"] * out["sliding"] + DEFAULT_WEIGHTS["penetration"] * out["penetration"] \
        + 0.01 * out["jerk"]
    torch.testing.assert_close(out["total"], expected)
    assert out["penetration"].item() == pytest.approx(0.02, abs=1e-6)
    out["total"].backward()
    assert torch.isfinite(joints.grad).all() and joints.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown terms"):
        physics_loss(sunk, FPS, KIT, {"slide": 1.0})
    # to_metres converts KIT units
    assert to_metres(np.ones((2, 21, 3)), KIT)[0, 0, 0].item() == pytest.approx(0.0017)


def test_generated_walks_barely_skate_and_never_sink():
    for seed, (path, speed) in enumerate([("forward", "normally"), ("circle", "slowly"), ("forward", "quickly")]):
        m = motion_metrics(_walk_m(seed, path, speed), FPS, KIT)
        assert m["skating_ratio"] < 0.2, m
        assert m["penetration_m"] < 1e-6 and m["floating_m"] < 0.01, m
        assert 5.0 < m["jerk_mps3"] < 300.0, m


# ---------------------------------------------------------------------------------------------------
# PyBullet evaluation in Ray tasks

def test_evaluate_motions_needs_ray():
    # in a fresh interpreter: this test process may hold the session's Ray
    code = ("import numpy as np\n"
            "from motionlab.datasets.motion_features import KIT\n"
            "from motionlab.physics.pybullet_eval import evaluate_motions\n"
            "try:\n"
            "    evaluate_motions([np.zeros((40, 21, 3))], KIT)\n"
            "except RuntimeError as err:\n"
            "    print('refused:', err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: evaluate_motions: Ray is not initialised; call ray.init()" in out.stdout, out.stdout


def _topple() -> np.ndarray:
    """Stand 0.5 s, fall forward over 1 s, lie 0.5 s: the whole body turned 90 degrees about a floor axis."""
    stand = _stand_m(2.0)
    t = np.arange(len(stand)) / FPS
    angle = np.clip((t - 0.5) / 1.0, 0.0, 1.0) * np.pi / 2
    c, s = np.cos(angle), np.sin(angle)
    y, z = stand[..., 1], stand[..., 2]
    out = stand.copy()
    out[..., 1] = y * c[:, None] + z * s[:, None]
    out[..., 2] = -y * s[:, None] + z * c[:, None]
    out[..., 1] -= out[..., 1].min(-1, keepdims=True)  # the lowest joint rests on the floor
    return out


def test_pybullet_evaluation_stand_fall_walk_and_failures(ray_local, tmp_path: Path):
    from motionlab.physics.pybullet_eval import SimConfig, evaluate_motions, summarise, write_gifs

    stand = _stand_m(2.0)
    nan = stand.copy()
    nan[5, 3] = np.nan
    teleport = stand + np.arange(len(stand))[:, None, None] * np.array([1000.0, 0.0, 0.0])  # 12.5 km/s
    motions = [stand, _topple(), nan, teleport, _walk_m(0)]
    results = evaluate_motions([m * UNITS_PER_METRE for m in motions], KIT, SimConfig(keep_trajectories=True))
    assert [r["index"] for r in results] == list(range(5))
    st, fall, bad, blown, walk = results

    assert st["status"] == "ok" and not st["fell"], st
    assert st["tracking_error_m"] < 0.02 and st["replay_penetration_m"] < 0.005 and st["replay_floating_m"] < 0.01

    assert fall["status"] == "ok" and fall["fell"], fall
    assert 0.5 < fall["fall_time_s"] < 1.6

    assert bad["status"] == "failed" and "non-finite" in bad["reason"] and "frame 5" in bad["reason"]
    assert blown["status"] == "failed" and "blew up" in blown["reason"], blown

    assert walk["status"] == "ok" and not walk["fell"], walk
    assert walk["tracking_error_m"] < 0.05 and walk["replay_penetration_m"] < 0.005
    assert walk["retarget_error_m"] < 0.1

    summary = summarise(results)
    assert summary["failed"] == 2 and summary["fall_rate"] == pytest.approx(1 / 3)

    gifs = write_gifs(results, tmp_path, FPS, count=1)
    assert len(gifs) == 1 and gifs[0].stat().st_size > 1000
    import imageio.v2 as imageio

    assert len(imageio.mimread(gifs[0])) == len(stand)
