"""HumanML3D features <-> joints on real samples and generated motions, and the KIT-ML/HumanML3D
reader with every kind of bad input it must name or skip."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_dataset
from motionlab.datasets.motion import (
    HUMANML3D,
    KIT,
    MotionDataError,
    canonicalise,
    joints_to_features,
    parse_caption_line,
    read_motion_dataset,
    read_stats,
    recover_joints,
)
from motionlab.datasets.motion_features import FORWARD_SMOOTH_SIGMA
from motionlab.datasets.synth_kit import UNITS_PER_METRE, draw_recipe, perform, synth_kit_ml

# The published IK smooths the facing direction with a Gaussian (4 sigma wide): the real features
# were computed on one frame more than new_joints keeps, so the last frames' headings differ.
EDGE = int(4 * FORWARD_SMOOTH_SIGMA) + 2


def real_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    root = shared_dataset("humanml3d_samples")
    files = sorted((root / "new_joint_vecs").glob("*.npy"))
    assert files, f"{root}/new_joint_vecs holds no samples"
    return [(p.stem, np.load(p), np.load(root / "new_joints" / p.name)) for p in files]


def test_recover_joints_reproduces_real_new_joints():
    for name, features, joints in real_pairs():
        assert features.shape[1] == HUMANML3D.feature_dim == 263
        out = recover_joints(features, 22)
        assert out.dtype == np.float32 and out.shape == joints.shape, name
        assert np.abs(out - joints).max() < 1e-4, name
        out_t = recover_joints(torch.from_numpy(features), 22)
        assert isinstance(out_t, torch.Tensor)
        assert (out_t.numpy() - joints).__abs__().max() < 1e-4, name


def test_joints_to_features_reproduces_real_features():
    """new_joints are already floored and facing +z, so processing them again must give the
    published features: contacts exactly, the rest away from the smoothing edge."""
    for name, features, joints in real_pairs():
        ours = joints_to_features(joints, HUMANML3D)
        assert ours.shape == (len(joints) - 1, 263)
        s = HUMANML3D.slices()
        np.testing.assert_array_equal(ours[:, s["feet"]], features[:-1, s["feet"]], err_msg=name)
        keep = len(ours) - EDGE
        assert keep > 40
        for group in ("root", "ric", "rot", "vel"):
            err = np.abs(ours[:keep, s[group]] - features[:keep, s[group]]).max()
            assert err < 2e-3, (name, group, err)


def test_kit_statistics_have_the_kit_layout(tmp_path: Path):
    stats_dir = shared_dataset("kit_ml_stats")
    mean = np.load(stats_dir / "kit_mean.npy")
    assert mean.shape == (KIT.feature_dim,) == (4 + 20 * 3 + 20 * 6 + 21 * 3 + 4,)
    shutil.copy(stats_dir / "kit_mean.npy", tmp_path / "Mean.npy")
    shutil.copy(stats_dir / "kit_std.npy", tmp_path / "Std.npy")
    stats = read_stats(tmp_path, KIT)
    assert stats.std.min() > 0
    # the KIT root sits about 560 units up: ~0.95 m at the spec's 1.7 mm per unit
    assert 0.85 < stats.mean[3] * KIT.metres_per_unit < 1.05
    with pytest.raises(MotionDataError, match=r"Mean.npy: shape .*\(263,\).*fix: use the statistics"):
        read_stats(tmp_path, HUMANML3D)


def test_recover_joints_torch_batched_and_differentiable():
    rng = np.random.default_rng(0)
    recipe = draw_recipe(rng)
    features = joints_to_features(perform(recipe, rng) * UNITS_PER_METRE, KIT)
    batch = torch.from_numpy(np.stack([features, features[::-1].copy()])).double().requires_grad_(True)
    joints = recover_joints(batch, 21)
    assert joints.shape == (2, len(features), 21, 3)
    np.testing.assert_allclose(joints[0].detach().numpy(), recover_joints(features, 21), atol=1e-3)
    # a loss on positions reaches every root and ric column
    (joints[..., 1] ** 2).mean().backward()
    grad = batch.grad.abs().sum((0, 1))
    assert torch.isfinite(batch.grad).all()
    assert (grad[3] > 0) and (grad[4:4 + 20 * 3].reshape(20, 3)[:, 1] > 0).all()
    rot_grad = torch.autograd.grad(recover_joints(batch, 21)[..., 0].sum(), batch)[0]
    assert rot_grad[..., 0].abs().sum() > 0  # the heading velocity moves x positions


def test_recover_joints_rejects_another_layout():
    with pytest.raises(ValueError, match="last dimension is 263 but 21 joints need 251"):
        recover_joints(np.zeros((5, 263), np.float32), 21)


@pytest.mark.parametrize("seed", range(8))
def test_round_trip_on_generated_motions(seed: int):
    rng = np.random.default_rng([seed, 11])
    joints = perform(draw_recipe(rng), rng) * UNITS_PER_METRE  # (T, 21, 3) KIT units
    features = joints_to_features(joints, KIT)
    expected = canonicalise(joints, KIT)[:-1]
    assert np.abs(recover_joints(features, 21) - expected).max() < 1e-3  # units: ~2 micrometres


def test_canonicalise_floors_centres_and_faces_forward():
    rng = np.random.default_rng(5)
    joints = perform(draw_recipe(rng), rng) * UNITS_PER_METRE + np.array([300.0, 50.0, -800.0])
    c = canonicalise(joints, KIT)
    assert abs(c[..., 1].min()) < 1e-9
    np.testing.assert_allclose(c[0, 0, [0, 2]], 0.0, atol=1e-9)
    across = c[0, 11] - c[0, 16] + c[0, 5] - c[0, 8]  # right minus left points to -x when facing +z
    assert across[0] < 0 and abs(across[2]) < 1e-6 * np.linalg.norm(across)


def test_parse_caption_line():
    cap = parse_caption_line("a man kicks.#a/DET man/NOUN kick/VERB#1.5#4.0\n")
    assert (cap.text, cap.tokens, cap.start, cap.end) == ("a man kicks.", ("a/DET", "man/NOUN", "kick/VERB"), 1.5, 4.0)
    assert parse_caption_line("x#x/NOUN#nan#nan").start == 0.0
    with pytest.raises(ValueError, match="expected 4"):
        parse_caption_line("a man kicks.#a/DET")


# ---------------------------------------------------------------------------------------------------
# The reader on generated data.

@pytest.fixture(scope="module")
def kit_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kit") / "kit"
    synth_kit_ml(root, motions=12, seed=4)
    return root


def test_reader_reads_every_split(kit_root: Path):
    total = 0
    for split in ("train", "val", "test"):
        data = read_motion_dataset(kit_root, KIT, split)
        assert data.summary.skipped == [] and len(data) >= data.summary.listed > 0
        for s in data.samples:
            assert s.features.dtype == np.float32 and s.features.shape == (s.length, 251)
            assert KIT.min_length <= s.length < KIT.max_length and s.captions
        total += data.summary.listed
    assert total == 12
    train = read_motion_dataset(kit_root, KIT, "train")
    frames = np.concatenate([s.features for s in train.samples if s.id == s.source_id])
    assert np.abs(frames.mean(0)).max() < 1e-3  # z-scored with the train split's own Mean
    raw = read_motion_dataset(kit_root, KIT, "train", normalize=False)
    np.testing.assert_allclose(train.stats.denormalize(train.samples[0].features), raw.samples[0].features,
                               atol=1e-3)


def _copy(kit_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "kit"
    shutil.copytree(kit_root, root)
    return root


def test_sub_clips_follow_caption_times(kit_root: Path, tmp_path: Path):
    root = _copy(kit_root, tmp_path)
    motion_id = (root / "train.txt").read_text().split()[0]
    n = len(np.load(root / "new_joint_vecs" / f"{motion_id}.npy"))
    (root / "texts" / f"{motion_id}.txt").write_text(
        "a person moves.#a/DET person/NOUN move/VERB#0.0#0.0\n"
        "the first part.#the/DET first/ADJ part/NOUN#0.0#2.0\n"
        "the same part.#the/DET same/ADJ part/NOUN#0.0#2.0\n"
        "too short.#too/ADV short/ADJ#0.0#1.0\n")
    data = read_motion_dataset(root, KIT, "train")
    mine = {s.id: s for s in data.samples if s.source_id == motion_id}
    assert mine[motion_id].length == n and len(mine[motion_id].captions) == 1
    part = mine[f"{motion_id}@0-25"]  # int(2.0 * 12.5) frames
    assert part.length == 25 and [c.text for c in part.captions] == ["the first part.", "the same part."]
    assert data.summary.counts() == {"sub_clip_length": 1}  # 12 frames < 24


def test_bad_clips_are_skipped_with_reasons(kit_root: Path, tmp_path: Path):
    root = _copy(kit_root, tmp_path)
    ids = (root / "train.txt").read_text().split()
    vecs = root / "new_joint_vecs"
    bad = np.load(vecs / f"{ids[0]}.npy")
    bad[3, 7] = np.nan
    np.save(vecs / f"{ids[0]}.npy", bad)
    np.save(vecs / f"{ids[1]}.npy", np.load(vecs / f"{ids[1]}.npy")[:10])
    (root / "texts" / f"{ids[2]}.txt").unlink()
    np.save(vecs / f"{ids[3]}.npy", np.zeros((40, 263), np.float32))
    (root / "texts" / f"{ids[4]}.txt").write_text("no fields here\n")
    with (root / "train.txt").open("a") as f:
        f.write("99999\n")
    data = read_motion_dataset(root, KIT, "train")
    counts = data.summary.counts()
    assert counts == {"non_finite": 1, "too_short": 1, "missing_text": 1, "wrong_dimension": 1,
                      "bad_caption_line": 1, "no_captions": 1, "missing_features": 1}
    assert {s.source_id for s in data.samples}.isdisjoint(ids[:5] + ["99999"])
    assert data.summary.listed == len(ids) + 1 and data.summary.kept == len(data)
    text = str(data.summary)
    for expected in (f"new_joint_vecs/{ids[0]}.npy: 1 of", "first at frame 3", "outside 24 <= T < 200",
                     f"texts/{ids[2]}.txt: absent", "expected (frames, 251)", "listed in train.txt but absent",
                     f"texts/{ids[4]}.txt line 1"):
        assert expected in text, expected


def test_dataset_level_defects_raise_with_the_fix(kit_root: Path, tmp_path: Path):
    root = _copy(kit_root, tmp_path)
    with pytest.raises(MotionDataError, match=r"Mean.npy: shape is \(251,\) but humanml3d features have \(263,\)"):
        read_motion_dataset(root, HUMANML3D, "train")
    np.save(root / "Std.npy", np.zeros(251, np.float32))
    with pytest.raises(MotionDataError, match=r"Std.npy: values are <= 0 .*fix: recompute"):
        read_motion_dataset(root, KIT, "train")
    assert len(read_motion_dataset(root, KIT, "train", normalize=False)) > 0
    (root / "val.txt").unlink()
    with pytest.raises(MotionDataError, match=r"val.txt: file does not exist; fix: .*present: train, test"):
        read_motion_dataset(root, KIT, "val", normalize=False)
    with pytest.raises(MotionDataError, match="has no new_joint_vecs/"):
        read_motion_dataset(tmp_path / "nowhere", KIT, "train")
