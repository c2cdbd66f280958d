"""The Penn Action reader: every real label file, every quirk, and one test per error message."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from motionlab.datasets.penn_action import (
    ACTIONS,
    PennActionError,
    frame_paths,
    frame_problem,
    list_video_ids,
    read_frame,
    read_label,
)
from motionlab.modalities import POSE_JOINTS

REAL = Path(__file__).parents[1].parent / "shared" / "datasets" / "penn_action"
needs_real = pytest.mark.skipif(
    not (REAL / "labels").is_dir(),
    reason=f"real Penn Action labels not found at {REAL / 'labels'} (tests read ../shared/datasets/ only)",
)

FIX = "; fix: "
TOTAL_REAL_FRAMES = 123002  # rows of x over the 1,745 real label files


def label_fields(n: int = 40, **overrides) -> dict:
    """A valid label in the real files' layout; overrides replace fields, None removes one."""
    rng = np.random.default_rng(0)
    fields = {
        "action": np.array(["squat"]),
        "pose": np.array(["front"]),
        "x": rng.uniform(10, 300, (n, POSE_JOINTS)),
        "y": rng.uniform(10, 230, (n, POSE_JOINTS)),
        "visibility": np.ones((n, POSE_JOINTS), np.uint8),
        "train": np.array([[1]], np.int32),
        "bbox": np.tile([5.0, 5.0, 310.0, 235.0], (n, 1)),
        "dimensions": np.array([[240, 320, n]], np.uint16),
        "nframes": np.array([[n % 256]], np.uint8),
    }
    for key, value in overrides.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    return fields


def write_label(root: Path, video_id: str = "0042", **overrides) -> Path:
    path = root / "labels" / f"{video_id}.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, label_fields(**overrides), do_compression=True)
    return path


def write_jpeg(path: Path, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A smooth test picture (JPEG keeps it nearly exact); returns the pixels written."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)
    return arr


def expect_error(fn, *, shown: str, field: str, problem: str, fix: str) -> PennActionError:
    """The error names the file (shown relative), the field and the fix, in one line."""
    with pytest.raises(PennActionError) as info:
        fn()
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"{shown}: ")
    assert err.field == field
    assert field in message
    assert problem in message
    assert FIX + err.fix in message and fix in err.fix
    return err


# ----------------------------------------------------------------------------------------------
# Real labels


@needs_real
def test_every_real_label_reads_with_normalised_dtypes():
    ids = list_video_ids(REAL)
    assert len(ids) == 1745
    actions, views, split, frames = Counter(), Counter(), Counter(), 0
    for video_id in ids:
        label = read_label(REAL, video_id)
        n = label.num_frames
        assert n == label.x.shape[0] == label.y.shape[0] == label.visibility.shape[0] > 0
        assert label.x.dtype == label.y.dtype == np.float64
        assert label.visibility.dtype == np.bool_
        assert label.bbox is not None and label.bbox.shape == (n, 4) and label.bbox.dtype == np.float64
        assert label.height > 0 and label.width > 0
        # Real coordinates are never negative or NaN, so no frame of a real video is rejected.
        assert np.isfinite(label.x).all() and (label.x >= 0).all() and (label.y >= 0).all()
        actions[label.action] += 1
        views[label.viewpoint] += 1
        split[label.train] += 1
        frames += n
    assert set(actions) == set(ACTIONS)
    assert actions["squat"] == 173 and actions["jump_rope"] == 61 and actions["golf_swing"] == 125
    assert views == {"front": 462, "back": 445, "right": 445, "left": 393}
    assert split == {True: 939, False: 806}
    assert frames == TOTAL_REAL_FRAMES


@needs_real
def test_real_quirks_are_normalised():
    raw = scipy.io.loadmat(REAL / "labels" / "0115.mat")
    assert raw["x"].dtype == np.uint8 and raw["y"].dtype == np.uint16
    label = read_label(REAL, "0115")
    assert label.x.dtype == np.float64
    np.testing.assert_array_equal(label.x, raw["x"].astype(np.float64))

    raw = scipy.io.loadmat(REAL / "labels" / "0013.mat")
    assert raw["x"].dtype == np.uint16 and raw["bbox"].dtype == np.uint16
    assert read_label(REAL, "0013").x[0, :3].tolist() == [291.0, 315.0, 251.0]

    # 564 frames: more than a uint8 nframes can hold, so the count comes from the rows of x.
    label = read_label(REAL, "0623")
    assert label.num_frames == 564 and label.height == 270 and label.width == 480

    # One bbox row fewer than frames: the last box is repeated, nothing is rejected.
    raw = scipy.io.loadmat(REAL / "labels" / "1154.mat")
    assert raw["bbox"].shape == (71, 4) and raw["x"].shape == (72, 13)
    label = read_label(REAL, "1154")
    assert label.bbox.shape == (72, 4)
    np.testing.assert_array_equal(label.bbox[-1], label.bbox[-2])

    label = read_label(REAL, "0001")
    assert (label.action, label.viewpoint, label.train) == ("baseball_pitch", "back", False)
    assert (label.height, label.width, label.num_frames) == (360, 480, 151)
    assert label.x[0, 0] == 136.5 and label.visibility[0].tolist()[:3] == [True, True, False]


# ----------------------------------------------------------------------------------------------
# Synthetic labels: quirks and every error


def test_uint_coordinates_and_wrapped_nframes(tmp_path):
    n = 300
    x = np.full((n, POSE_JOINTS), 250, np.uint8)
    y = np.full((n, POSE_JOINTS), 400, np.uint16)
    write_label(tmp_path, n=n, x=x, y=y, nframes=np.array([[n % 256]], np.uint8),
                dimensions=np.array([[480, 640, n]], np.uint16))
    label = read_label(tmp_path, "0042")
    assert label.num_frames == 300  # not the stored nframes (44)
    assert label.x.dtype == np.float64 and label.x[0, 0] == 250.0 and label.y[-1, -1] == 400.0
    assert (label.height, label.width) == (480, 640)
    assert label.video_id == "0042" and label.action == "squat" and label.train is True


def test_missing_label_file(tmp_path):
    (tmp_path / "frames" / "0042").mkdir(parents=True)
    err = expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field="file",
                       problem="does not exist", fix="add labels/0042.mat")
    assert err.path == tmp_path / "labels" / "0042.mat"


def test_corrupt_label_bytes(tmp_path):
    path = tmp_path / "labels" / "0042.mat"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00\x13garbage, not a MATLAB file" * 10)
    expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field="file",
                 problem="cannot be read as a MATLAB file", fix="intact copy")


def test_truncated_label(tmp_path):
    path = write_label(tmp_path)
    path.write_bytes(path.read_bytes()[:300])
    expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field="file",
                 problem="cannot be read as a MATLAB file", fix="intact copy")


@pytest.mark.parametrize("field", ["x", "y", "visibility", "action", "pose", "dimensions", "train"])
def test_missing_field(tmp_path, field):
    write_label(tmp_path, **{field: None})
    expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field=field,
                 problem="is missing", fix="re-export the label")


def test_missing_bbox_is_not_an_error(tmp_path):
    write_label(tmp_path, bbox=None)
    assert read_label(tmp_path, "0042").bbox is None


def test_row_mismatch_message_is_exact(tmp_path):
    write_label(tmp_path, visibility=np.ones((39, POSE_JOINTS), np.uint8))
    with pytest.raises(PennActionError) as info:
        read_label(tmp_path, "0042")
    assert str(info.value) == (
        "labels/0042.mat: 'x' has 40 rows but 'visibility' has 39; "
        "fix: re-export the label so every per-frame field has one row per frame"
    )
    write_label(tmp_path, y=np.ones((41, POSE_JOINTS)))
    expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field="x",
                 problem="has 40 rows but 'y' has 41", fix="one row per frame")


def test_empty_video(tmp_path):
    empty = np.zeros((0, POSE_JOINTS))
    write_label(tmp_path, n=0, x=empty, y=empty, visibility=empty.astype(np.uint8), bbox=None)
    expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field="x",
                 problem="has 0 rows (an empty video)", fix="remove the video")


def test_wrong_joint_count(tmp_path):
    write_label(tmp_path, x=np.ones((40, 12)))
    expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field="x",
                 problem="has shape (40, 12), expected (frames, 13)", fix="one column per joint")


@pytest.mark.parametrize(("field", "value", "problem", "fix"), [
    ("action", np.array(["juggling"]), "is 'juggling', not a Penn Action class", "use one of baseball_pitch"),
    ("pose", np.array(["top"]), "is 'top', not a viewpoint", "use one of front, back, left, right"),
    ("train", np.array([[0]], np.int32), "is [0], expected 1 or -1", "store 1 for the official training"),
    ("dimensions", np.array([[240]], np.uint16), "is [240], expected [height, width, frames]",
     "[H, W, nframes]"),
    ("x", np.array(["a"] * 13), "has dtype <U1, expected numbers", "re-export the label"),
])
def test_bad_values(tmp_path, field, value, problem, fix):
    write_label(tmp_path, **{field: value})
    expect_error(lambda: read_label(tmp_path, "0042"), shown="labels/0042.mat", field=field,
                 problem=problem, fix=fix)


def test_error_survives_pickling():
    err = PennActionError(Path("/data/penn/labels/0042.mat"), "x", "has 0 rows", "remove the video")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "labels/0042.mat: 'x' has 0 rows; fix: remove the video"
    assert (back.path, back.field, back.problem) == (err.path, "x", "has 0 rows")
    assert back.fix == "remove the video"


# ----------------------------------------------------------------------------------------------
# Per-frame problems


def test_frame_problem_nan_and_negative(tmp_path):
    x = np.full((40, POSE_JOINTS), 100.0)
    y = np.full((40, POSE_JOINTS), 120.0)
    x[3, 5] = np.nan
    y[2, 11] = -4.5
    x[7, 0] = np.inf
    x[9, [1, 2, 3]] = -1.0
    write_label(tmp_path, x=x, y=y)
    label = read_label(tmp_path, "0042")
    assert frame_problem(label, 0) is None and frame_problem(label, 39) is None
    assert frame_problem(label, 3) == (
        "labels/0042.mat: 'x' of left_wrist is nan (not finite) in row 3 (frames/0042/000004.jpg); "
        "fix: re-annotate the joint or drop the frame")
    assert frame_problem(label, 2) == (
        "labels/0042.mat: 'y' of left_ankle is -4.5 (negative) in row 2 (frames/0042/000003.jpg); "
        "fix: clamp the coordinate into the image or mark the frame unusable")
    assert "'x' of head is inf (not finite)" in frame_problem(label, 7)
    assert "'x' of left_shoulder is -1 (negative)" in frame_problem(label, 9)
    assert "(and 2 more joints)" in frame_problem(label, 9)
    problems = [i for i in range(label.num_frames) if frame_problem(label, i)]
    assert problems == [2, 3, 7, 9]
    with pytest.raises(IndexError):
        frame_problem(label, 40)


def test_invisible_placeholder_joints_are_not_problems(tmp_path):
    # The real files park unannotated joints near (0.75, 0.75) with visibility 0: usable, not negative.
    x = np.full((40, POSE_JOINTS), 100.0)
    x[:, 4] = 0.75
    vis = np.ones((40, POSE_JOINTS), np.uint8)
    vis[:, 4] = 0
    write_label(tmp_path, x=x, visibility=vis)
    label = read_label(tmp_path, "0042")
    assert all(frame_problem(label, i) is None for i in range(40))
    assert not label.visibility[:, 4].any() and label.visibility[:, 3].all()


# ----------------------------------------------------------------------------------------------
# Layout and frames


def test_list_video_ids_is_the_union(tmp_path):
    write_label(tmp_path, "0002")
    write_label(tmp_path, "0010")
    (tmp_path / "frames" / "0007").mkdir(parents=True)  # frames but no label: still listed
    (tmp_path / "frames" / "0010").mkdir(parents=True)
    (tmp_path / "frames" / ".cache").mkdir()
    (tmp_path / "labels" / "notes.txt").write_text("not a label")
    assert list_video_ids(tmp_path) == ["0002", "0007", "0010"]
    expect_error(lambda: list_video_ids(tmp_path / "nowhere"), shown=str(tmp_path / "nowhere"),
                 field="folder", problem="has neither labels/ nor frames/", fix="Penn_Action folder")


def test_frame_paths_sorted(tmp_path):
    for i in (10, 2, 1):
        write_jpeg(tmp_path / "frames" / "0042" / f"{i:06d}.jpg", (32, 24))
    (tmp_path / "frames" / "0042" / "thumbs.db").write_bytes(b"x")
    assert [p.name for p in frame_paths(tmp_path, "0042")] == ["000001.jpg", "000002.jpg", "000010.jpg"]
    assert frame_paths(tmp_path, "0099") == []


def test_read_frame_full_and_draft(tmp_path):
    path = tmp_path / "frames" / "0042" / "000001.jpg"
    arr = write_jpeg(path, (640, 480))
    full = read_frame(path)
    assert full.shape == (480, 640, 3) and full.dtype == np.uint8
    assert np.abs(full.astype(int) - arr).mean() < 2.0
    # Reduced DCT scales: the shorter side stays >= min_side; 480 // 64 = 7 -> 1/4 scale.
    for min_side, shape in ((64, (120, 160)), (60, (60, 80)), (240, (240, 320)), (256, (480, 640))):
        small = read_frame(path, min_side=min_side)
        assert small.shape == (*shape, 3), min_side
        assert min(small.shape[:2]) >= min_side
    small = read_frame(path, min_side=60).astype(float)
    reference = np.asarray(Image.fromarray(arr).resize((80, 60), Image.BOX), float)
    assert np.abs(small - reference).mean() < 4.0  # same picture, not a crop
    with pytest.raises(ValueError):
        read_frame(path, min_side=0)


def test_read_frame_grayscale_becomes_rgb(tmp_path):
    path = tmp_path / "frames" / "0042" / "000001.jpg"
    path.parent.mkdir(parents=True)
    Image.fromarray(np.full((48, 64), 77, np.uint8)).save(path)
    out = read_frame(path, min_side=16)
    assert out.shape == (24, 32, 3) and abs(int(out[5, 5, 0]) - 77) <= 2


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "frames" / "0042" / "000003.jpg"
    write_jpeg(path, (320, 240))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for min_side in (None, 64):
        err = expect_error(lambda m=min_side: read_frame(path, min_side=m), shown="frames/0042/000003.jpg",
                           field="jpeg", problem="cannot be decoded", fix="re-extract the frame")
        assert "truncated" in err.problem


def test_unreadable_and_missing_frames(tmp_path):
    path = tmp_path / "frames" / "0042" / "000004.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xd8 this is not image data" * 4)
    expect_error(lambda: read_frame(path), shown="frames/0042/000004.jpg", field="jpeg",
                 problem="cannot be decoded", fix="re-extract the frame")
    expect_error(lambda: read_frame(path.with_name("000005.jpg")), shown="frames/0042/000005.jpg",
                 field="file", problem="does not exist", fix="re-extract the video's frames")

