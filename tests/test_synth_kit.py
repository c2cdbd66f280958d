"""The KIT-ML look-alike: layout, determinism, captions, feet that do not slide, the mocap clips, the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from motionlab.cli import main
from motionlab.datasets.motion import KIT, joints_to_features, read_motion_dataset
from motionlab.datasets.synth_kit import (
    UNITS_PER_METRE,
    Recipe,
    captions_for,
    draw_recipe,
    perform,
    synth_kit_ml,
)

TOKEN = re.compile(r"^[a-z']+/[A-Z]+$")
FEET = (14, 15, 19, 20)
ON_FLOOR = 1.0  # units (1.7 mm): a foot joint this close to the floor touches it


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("synth_kit") / "kit"
    return root, synth_kit_ml(root, motions=30, seed=7, mocap=True)


def test_layout_and_splits(kit):
    root, ids = kit
    assert len(ids) == 30 + 15
    splits = {s: (root / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == sorted(ids)  # every id in exactly one split
    assert all(splits.values())
    for motion_id in ids:
        vec = np.load(root / "new_joint_vecs" / f"{motion_id}.npy")
        joints = np.load(root / "new_joints" / f"{motion_id}.npy")
        assert vec.dtype == np.float32 and vec.shape[1] == 251 and joints.shape == (len(vec), 21, 3)
        assert KIT.min_length <= len(vec) < KIT.max_length, motion_id
    mean, std = np.load(root / "Mean.npy"), np.load(root / "Std.npy")
    assert mean.shape == std.shape == (251,) and (std > 0).all()
    summaries = [read_motion_dataset(root, KIT, s).summary for s in splits]
    assert all(not s.skipped for s in summaries)


def test_captions_are_in_the_line_format(kit):
    root, ids = kit
    for motion_id in ids:
        lines = (root / "texts" / f"{motion_id}.txt").read_text().splitlines()
        assert lines
        for line in lines:
            text, tokens, start, end = line.split("#")
            assert text.endswith(".") and all(TOKEN.match(tok) for tok in tokens.split()), line
            assert float(start) <= float(end)
    assert (root / "texts" / "M0014.txt").read_text().startswith("a person walks forward.#")  # humanoid3d_walk


def test_turning_back_walks_carry_timed_sub_clip_captions():
    recipe, rng = next((r, g) for r, g in _recipes("walk", 40) if r.options["path"] == "turn back")
    lines = [line for line in captions_for(recipe, rng) if not line.endswith("#0.0#0.0")]
    assert len(lines) == 2
    for line in lines:
        start, end = (float(v) for v in line.split("#")[2:])
        assert KIT.min_length <= int(end * KIT.fps) - int(start * KIT.fps) < KIT.max_length
    assert "walks forward" in lines[0] and "turns around and walks back" in lines[1]


def test_same_seed_same_bytes_and_prefix_stable(kit, tmp_path: Path):
    root, _ = kit
    again = tmp_path / "again"
    synth_kit_ml(again, motions=5, seed=7)
    for motion_id in ("00000", "00004"):
        assert (again / "new_joint_vecs" / f"{motion_id}.npy").read_bytes() == \
            (root / "new_joint_vecs" / f"{motion_id}.npy").read_bytes()
        assert (again / "texts" / f"{motion_id}.txt").read_text() == (root / "texts" / f"{motion_id}.txt").read_text()
    other = tmp_path / "other"
    synth_kit_ml(other, motions=1, seed=8)
    first = (again / "new_joint_vecs" / "00000.npy").read_bytes()
    assert (other / "new_joint_vecs" / "00000.npy").read_bytes() != first


def _recipes(action: str, count: int) -> list[tuple[Recipe, np.random.Generator]]:
    found = []
    for i in range(200):
        rng = np.random.default_rng([21, i])
        recipe = draw_recipe(rng)
        if recipe.action == action:
            found.append((recipe, rng))
            if len(found) == count:
                break
    return found


@pytest.mark.parametrize("action", ["walk", "run", "turn", "kick", "jump", "squat", "sit down", "wave"])
def test_feet_stay_put_on_the_floor(action: str):
    """A foot joint touching the floor in two consecutive frames has not slid (< 0.5 units, about
    1 mm), and no joint goes below the floor; the pelvis stays at human heights."""
    for recipe, rng in _recipes(action, 3):
        joints = perform(recipe, rng) * UNITS_PER_METRE  # (T, 21, 3)
        floor = joints[..., 1].min()
        feet = joints[:, FEET] - np.array([0.0, floor, 0.0])
        both = (feet[1:, :, 1] < ON_FLOOR) & (feet[:-1, :, 1] < ON_FLOOR)
        slide = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1)[both]
        assert both.any(), recipe
        assert slide.max() < 0.5, (recipe, slide.max())
        pelvis = (joints[:, 0, 1] - floor) / UNITS_PER_METRE  # metres
        assert 0.3 < pelvis.min() and pelvis.max() < 1.4, recipe
        thigh = np.linalg.norm(joints[:, 11] - joints[:, 12], axis=-1) / UNITS_PER_METRE
        np.testing.assert_allclose(thigh, 0.44, atol=1e-6)  # rigid bones


def test_walking_moves_and_contacts_alternate():
    for recipe, rng in _recipes("walk", 3):
        joints = perform(recipe, rng) * UNITS_PER_METRE
        travelled = np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]]) / UNITS_PER_METRE
        if recipe.options["path"] not in ("circle", "turn back"):
            assert travelled > 1.0, recipe
        contacts = joints_to_features(joints, KIT)[:, -4:]
        left, right = contacts[:, 1], contacts[:, 3]  # toes
        assert 0.3 < left.mean() < 0.9 and 0.3 < right.mean() < 0.9
        assert ((left + right) > 0).mean() > 0.9  # a walk always has a foot down


def test_mocap_clips_are_upright_people(kit):
    root, ids = kit
    walk = np.load(root / "new_joints" / "M0014.npy") / UNITS_PER_METRE  # humanoid3d_walk, metres
    assert 0.75 < walk[:, 0, 1].mean() < 0.95  # pelvis height
    assert (walk[:, 4, 1] > walk[:, 0, 1]).all()  # head above pelvis
    speed = np.linalg.norm(np.diff(walk[:, 0, [0, 2]], axis=0), axis=-1).mean() * KIT.fps
    assert 0.6 < speed < 1.6  # m/s
    forward = walk[-1, 0, 2] - walk[0, 0, 2]  # canonicalised: the walk starts facing +z
    assert forward > 2.0


def test_cli_writes_the_layout(tmp_path: Path, capsys):
    assert main(["synth", "kit-ml", "--out", str(tmp_path / "k"), "--motions", "4", "--seed", "2"]) == 0
    assert "wrote 4 motions" in capsys.readouterr().out
    assert len(list((tmp_path / "k" / "new_joint_vecs").glob("*.npy"))) == 4
    assert main(["synth", "kit-ml", "--out", str(tmp_path / "k"), "--motions", "4"]) == 0
