"""Units of the Penn Action graph: splits, successor frames, crop geometry, the image stage (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionlab.modalities import get
from motionlab.pipelines.geometry import SquareCrop, crop_frame
from motionlab.pipelines.splits import split_by_ratio, split_official
from motionlab.pipelines.stages import ImageTokenStage
from motionlab.pipelines.successor import next_positions, ssim, successor_chain, to_gray
from motionlab.pipelines.video_samples import SampleSpec, rows_to_columns
from motionlab.tokenizers.fsq import FSQAutoencoder, FSQTokenizer


def test_split_by_ratio_is_leak_free_exact_and_seeded() -> None:
    ids = [f"{i:04d}" for i in range(1, 101)]
    a = split_by_ratio(ids, (0.7, 0.15, 0.15), seed=42)
    assert set(a) == set(ids)  # every video in exactly one split: a dict cannot hold two
    counts = {s: sum(1 for v in a.values() if v == s) for s in ("train", "eval", "test")}
    assert counts == {"train": 70, "eval": 15, "test": 15}
    assert split_by_ratio(list(reversed(ids)), (0.7, 0.15, 0.15), seed=42) == a  # order does not matter
    assert split_by_ratio(ids, (0.7, 0.15, 0.15), seed=7) != a


def test_split_keeps_every_split_non_empty_for_small_sets() -> None:
    a = split_by_ratio([str(i) for i in range(5)], (0.8, 0.1, 0.1), seed=42)
    assert sorted(set(a.values())) == ["eval", "test", "train"]


def test_split_official_uses_the_flag_and_carves_eval_from_train() -> None:
    flags = {f"{i:04d}": i % 3 != 0 for i in range(60)}
    a = split_official(flags, (0.8, 0.1, 0.1), seed=42)
    assert all(a[v] == "test" for v, t in flags.items() if not t)
    train_side = [a[v] for v, t in flags.items() if t]
    assert "test" not in train_side
    assert train_side.count("eval") == round(40 * 0.1 / 0.9)


def _moving_square(n: int, size: int = 64, step: int = 3, still: tuple[int, int] | None = None) -> np.ndarray:
    frames = np.full((n, size, size, 3), 40, np.uint8)
    pos = 0
    for i in range(n):
        if still is None or not (still[0] <= i < still[1]):
            pos += step
        x = pos % (size - 16)
        frames[i, 20:36, x : x + 16] = 230
    return frames


def test_successor_is_first_frame_below_threshold() -> None:
    gray = to_gray(_moving_square(30))
    threshold = 0.89
    chain = successor_chain(gray, threshold)
    assert chain[0][0] == 0
    for ref, succ in chain:
        if succ is None:
            assert all(ssim(gray[ref], gray[j]) >= threshold for j in range(ref + 1, len(gray)))
            continue
        assert ssim(gray[ref], gray[succ]) < threshold
        assert all(ssim(gray[ref], gray[j]) >= threshold for j in range(ref + 1, succ))
    refs = [r for r, _ in chain]
    assert refs[1:] == [s for _, s in chain[:-1]]  # chained: each successor is the next reference


def test_still_stretch_is_skipped_and_identical_clip_has_no_successor() -> None:
    chain = successor_chain(to_gray(_moving_square(30, still=(5, 20))), 0.89)
    refs = [r for r, _ in chain]
    assert not any(6 <= r < 20 for r in refs)  # no keyframes inside the still stretch
    static = np.repeat(_moving_square(1), 10, axis=0)
    assert successor_chain(to_gray(static), 0.89) == [(0, None)]


@pytest.mark.parametrize(("ref", "succ", "k", "expected"), [
    (0, 4, 1, [4]),
    (3, 15, 6, [5, 7, 9, 11, 13, 15]),
    (0, 3, 6, [1, 1, 2, 2, 3, 3]),
    (10, 11, 6, [11] * 6),
])
def test_next_positions_end_at_successor(ref: int, succ: int, k: int, expected: list[int]) -> None:
    assert next_positions(ref, succ, k).tolist() == expected


def test_crop_maps_joints_onto_the_same_pixels_as_the_frame() -> None:
    # A 480 x 640 frame with a bright dot; the dot's joint must land on the dot after the crop.
    h, w, size = 480, 640, 64
    frame = np.zeros((h, w, 3), np.uint8)
    jx, jy = 400.0, 150.0
    frame[140:160, 390:410] = 255
    crop = SquareCrop.centred(w, h, size)
    cx, cy = crop.joints(np.array([jx]), np.array([jy]))
    out = crop_frame(frame, w, h, size)
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert abs(xs.mean() + 0.5 - cx[0]) < 1.0 and abs(ys.mean() + 0.5 - cy[0]) < 1.0
    # The same geometry on a frame decoded at half scale (JPEG draft mode) gives the same canvas.
    half = frame[::2, ::2]
    assert np.abs(crop_frame(half, w, h, size).astype(int) - out.astype(int)).mean() < 8


def test_joints_outside_the_crop_leave_the_canvas() -> None:
    crop = SquareCrop.centred(640, 480, 256)
    x, _ = crop.joints(np.array([10.0, 630.0]), np.array([240.0, 240.0]))
    assert x[0] < 0 and x[1] > 256


def _frame(video: str, number: int, size: int = 32) -> np.ndarray:
    """A distinct random frame per (video, frame number), the same every time it is asked for."""
    seed = sum(map(ord, video)) * 1000 + number
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_image_stage_encodes_each_frame_once_with_the_same_codes(tmp_path) -> None:
    torch.manual_seed(0)
    path = FSQTokenizer(FSQAutoencoder(downsample=16, channels=16)).save(tmp_path / "fsq")
    spec = SampleSpec(str(tmp_path), 32, 0.89, num_next=1, keep_pixels=True)
    joints = np.zeros((1, 13, 3), np.float32)
    rows = [spec.sample_row(v, "train", f, n, "jump", "front", "", _frame(v, f)[None], joints,
                            _frame(v, n)[None], joints, np.array([n], np.int32))
            for v, f, n in (("a", 1, 4), ("a", 4, 9), ("a", 9, 12), ("b", 4, 7))]  # a's chain; b reuses a number
    rows.insert(2, spec.empty_row("a", "train", "joint 3: NaN", frame=6))
    stage = ImageTokenStage("fsq", str(path), [get("tok_rgb"), get("tok_rgb_next")])
    out = stage(rows_to_columns(rows, spec))

    assert stage.encoded_frames == 6  # a: 1, 4, 9, 12; b: 4, 7 (not 8: each chain link is shared)
    assert not any(k.startswith("pixels_") or k == "frames_next" for k in out)
    tok = FSQTokenizer.load(path)
    kept = [r for r in rows if r["reason"] == ""]
    for col, key in (("tok_rgb", "pixels_current"), ("tok_rgb_next", "pixels_next")):
        expected = tok.encode(np.concatenate([r[key] for r in kept])).reshape(len(kept), -1)
        np.testing.assert_array_equal(np.delete(out[col], 2, axis=0), expected)
        assert (out[col][2] == 0).all()  # the quarantined row runs through no model

    # batches that do not say which frames the next slot holds are encoded slot by slot, as before
    batch = rows_to_columns(rows, spec)
    del batch["frames_next"]
    again = ImageTokenStage("fsq", str(path), [get("tok_rgb"), get("tok_rgb_next")])
    np.testing.assert_array_equal(again(batch)["tok_rgb_next"], out["tok_rgb_next"])
    assert again.encoded_frames == 4 + 4
