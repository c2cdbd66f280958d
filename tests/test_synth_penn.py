"""The Penn Action look-alike: layout, label habits, determinism, motion, and the real-labels mode."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from skimage.metrics import structural_similarity

from motionlab.datasets.penn_action import (
    ACTIONS,
    VIEWPOINTS,
    PennActionError,
    frame_paths,
    frame_problem,
    list_video_ids,
    read_frame,
    read_label,
)
from motionlab.datasets.synth_penn import synth_penn_action

REAL_LABELS = Path(__file__).parents[1].parent / "shared" / "datasets" / "penn_action" / "labels"
SSIM_THRESHOLD = 0.89  # the pipeline's default successor threshold
SSIM_SIZE = 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("synth_penn")
    return out, synth_penn_action(out, videos=15, seed=0)


def centre_gray(frame: np.ndarray, size: int = SSIM_SIZE) -> np.ndarray:
    """The pipeline's view of a frame: centred square, resized, grey in [0, 1]."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = Image.fromarray(frame[top:top + side, left:left + side]).convert("L")
    img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, np.float64) / 255.0


def successors(gray: list[np.ndarray]) -> int:
    """How many successors the SSIM chain finds (reference -> first frame below the threshold)."""
    count, ref = 0, 0
    while True:
        nxt = next((j for j in range(ref + 1, len(gray))
                    if structural_similarity(gray[ref], gray[j], data_range=1.0) < SSIM_THRESHOLD), None)
        if nxt is None:
            return count
        count, ref = count + 1, nxt


def test_layout_and_counts(synth):
    out, ids = synth
    assert ids == [f"{i:04d}" for i in range(1, 16)]
    assert list_video_ids(out) == ids
    for video_id in ids:
        label = read_label(out, video_id)
        paths = frame_paths(out, video_id)
        assert 24 <= label.num_frames <= 48
        assert [p.name for p in paths] == [f"{i:06d}.jpg" for i in range(1, label.num_frames + 1)]
        assert (label.height, label.width) == (240, 320)
        with Image.open(paths[0]) as img:
            assert img.size == (320, 240) and img.format == "JPEG"


def test_label_fields_follow_the_real_files_habits(synth):
    out, ids = synth
    coord_dtypes, nframes_dtypes = Counter(), Counter()
    for video_id in ids:
        raw = scipy.io.loadmat(out / "labels" / f"{video_id}.mat")
        n = raw["x"].shape[0]
        assert raw["action"].shape == (1,) and raw["action"].dtype.kind == "U"
        assert raw["pose"].shape == (1,) and str(raw["pose"][0]) in VIEWPOINTS
        assert raw["y"].shape == raw["visibility"].shape == (n, 13) and raw["bbox"].shape == (n, 4)
        assert raw["visibility"].dtype == np.uint8 and set(np.unique(raw["visibility"])) <= {0, 1}
        assert raw["train"].dtype == np.int32 and raw["train"].shape == (1, 1)
        assert raw["train"][0, 0] in (1, -1)
        assert raw["dimensions"].dtype == np.uint16 and raw["dimensions"].tolist() == [[240, 320, n]]
        assert int(raw["nframes"][0, 0]) == n % (256 if raw["nframes"].dtype == np.uint8 else 65536)
        coord_dtypes[str(raw["x"].dtype)] += 1
        coord_dtypes[str(raw["y"].dtype)] += 1
        nframes_dtypes[str(raw["nframes"].dtype)] += 1
        assert (raw["x"] >= 0).all() and (raw["y"] >= 0).all()  # never negative, like the real files
    assert coord_dtypes["float64"] > 0 and coord_dtypes["uint16"] > 0 and coord_dtypes["uint8"] > 0
    assert set(nframes_dtypes) == {"uint8", "uint16"}


def test_actions_viewpoints_and_split(synth):
    out, ids = synth
    labels = [read_label(out, i) for i in ids]
    assert sorted(label.action for label in labels) == sorted(ACTIONS)
    assert {label.viewpoint for label in labels} == set(VIEWPOINTS)
    train = sum(label.train for label in labels)
    assert 4 <= train <= 11  # about half


def test_reader_round_trip_and_visibility(synth):
    out, ids = synth
    visible_fraction = []
    for video_id in ids:
        raw = scipy.io.loadmat(out / "labels" / f"{video_id}.mat")
        label = read_label(out, video_id)
        np.testing.assert_array_equal(label.x, raw["x"].astype(np.float64))
        np.testing.assert_array_equal(label.y, raw["y"].astype(np.float64))
        np.testing.assert_array_equal(label.visibility, raw["visibility"] != 0)
        v = label.visibility
        assert (label.x[v] >= 0).all() and (label.x[v] <= label.width - 1).all()
        assert (label.y[v] >= 0).all() and (label.y[v] <= label.height - 1).all()
        assert all(frame_problem(label, i) is None for i in range(label.num_frames))
        visible_fraction.append(v.mean())
        if label.viewpoint in ("left", "right"):  # the far side is hidden now and then
            assert v.mean() < 1.0, video_id
    assert 0.6 < np.mean(visible_fraction) < 0.98


def test_person_is_drawn_at_the_joints(synth):
    # Pixels under the visible head differ from the background just outside the person's box.
    out, ids = synth
    contrasts = []
    for video_id in ids:
        label = read_label(out, video_id)
        frame = read_frame(frame_paths(out, video_id)[0]).astype(float)
        if not label.visibility[0, 0]:
            continue
        hx, hy = int(round(label.x[0, 0])), int(round(label.y[0, 0]))
        head = frame[max(hy - 1, 0):hy + 2, max(hx - 1, 0):hx + 2].reshape(-1, 3).mean(0)
        x0, y0, x1, y1 = label.bbox[0]
        corner = frame[max(int(y0) - 6, 0), max(int(x0) - 6, 0)]
        contrasts.append(np.abs(head - corner).sum())
    assert len(contrasts) >= 10 and np.median(contrasts) > 30


def test_frames_change_over_time(synth):
    out, ids = synth
    diffs, counts, still_clips = [], [], 0
    for video_id in ids:
        frames = [read_frame(p) for p in frame_paths(out, video_id)]
        diffs.append(np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean())
        gray = [centre_gray(f) for f in frames]
        counts.append(successors(gray))
        adjacent = [structural_similarity(a, b, data_range=1.0) for a, b in zip(gray, gray[1:], strict=False)]
        run = best = 0
        for s in adjacent:  # longest stretch of near-identical consecutive frames
            run = run + 1 if s > 0.97 else 0
            best = max(best, run)
        still_clips += best >= 4
    assert min(diffs) > 1.0 and np.median(diffs) > 5.0
    assert np.median(counts) >= 4 and sum(c >= 2 for c in counts) >= 12  # several successors per clip
    assert still_clips >= 5  # and near-still stretches in a good share of clips


def test_deterministic_for_a_seed_and_independent_of_count(synth, tmp_path):
    out, ids = synth
    a = synth_penn_action(tmp_path / "a", videos=2, seed=0)
    assert a == ids[:2]
    for video_id in a:
        assert (tmp_path / "a" / "labels" / f"{video_id}.mat").read_bytes() == \
            (out / "labels" / f"{video_id}.mat").read_bytes()
        for p, q in zip(frame_paths(tmp_path / "a", video_id), frame_paths(out, video_id), strict=True):
            assert p.read_bytes() == q.read_bytes()
    small = dict(videos=1, size=(96, 128), frames=(6, 8))
    synth_penn_action(tmp_path / "b", seed=1, **small)
    synth_penn_action(tmp_path / "c", seed=2, **small)
    b, c = ((tmp_path / d / "labels" / "0001.mat").read_bytes() for d in "bc")
    assert b != c
    label = read_label(tmp_path / "b", "0001")
    assert (label.height, label.width) == (96, 128) and 6 <= label.num_frames <= 8
    assert read_frame(frame_paths(tmp_path / "b", "0001")[0]).shape == (96, 128, 3)


def test_rewriting_replaces_stale_frames(tmp_path):
    kwargs = dict(videos=1, size=(64, 64), frames=(4, 4))
    synth_penn_action(tmp_path, seed=0, **kwargs)
    extra = tmp_path / "frames" / "0001" / "000099.jpg"
    extra.write_bytes((tmp_path / "frames" / "0001" / "000001.jpg").read_bytes())
    synth_penn_action(tmp_path, seed=0, **kwargs)
    assert len(frame_paths(tmp_path, "0001")) == 4 and not extra.exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="videos"):
        synth_penn_action(tmp_path, videos=0)
    with pytest.raises(ValueError, match="frames"):
        synth_penn_action(tmp_path, videos=1, frames=(1, 4))
    with pytest.raises(ValueError, match="size"):
        synth_penn_action(tmp_path, videos=1, size=(16, 16))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PennActionError, match="holds no .mat label files"):
        synth_penn_action(tmp_path / "out", videos=2, labels=tmp_path / "empty")


@pytest.mark.skipif(
    not REAL_LABELS.is_dir(),
    reason=f"real Penn Action labels not found at {REAL_LABELS} (tests read ../shared/datasets/ only)",
)
def test_frames_from_real_labels(tmp_path):
    ids = synth_penn_action(tmp_path, videos=2, labels=REAL_LABELS, seed=0)
    assert ids == sorted(p.stem for p in REAL_LABELS.glob("*.mat"))[:2]
    for video_id in ids:
        source = REAL_LABELS / f"{video_id}.mat"
        # The label is copied unchanged.
        assert (tmp_path / "labels" / f"{video_id}.mat").read_bytes() == source.read_bytes()
        label = read_label(tmp_path, video_id)
        paths = frame_paths(tmp_path, video_id)
        assert len(paths) == label.num_frames
        for p in (paths[0], paths[-1]):
            with Image.open(p) as img:
                assert img.size == (label.width, label.height)
        first, last = read_frame(paths[0]).astype(float), read_frame(paths[-1]).astype(float)
        assert np.abs(first - last).mean() > 1.0  # the real joints move the drawn person
