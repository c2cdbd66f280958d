"""Evaluation metrics, sampling limits and the GIF / plot artifacts, checked with numbers that can fail."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from motionlab import modalities
from motionlab.config import load_config
from motionlab.generation.gifs import (
    GAP,
    LABEL_HEIGHT,
    MIN_FRAME_SIDE,
    MIN_SKELETON_SIDE,
    frames_gif,
    skeleton_gif,
    split_frames,
    upscale_factor,
)
from motionlab.generation.limits import token_limits
from motionlab.modalities import POSE_JOINTS, POSE_TOKENS_PER_FRAME, Kind
from motionlab.tokenizers.pose import NUM_VIS_STATES, VIS_INVISIBLE, VIS_OUTSIDE, VIS_VISIBLE, PoseQuantizer
from motionlab.tracking.plots import loss_curves_png
from motionlab.training.metrics import frame_ssim, pose_errors, token_accuracy


def _poses(rng: np.random.Generator, n: int, q: PoseQuantizer, margin: float = 0.25) -> np.ndarray:
    """(n, 39) tokens of visible joints in the middle of the canvas, so shifted copies stay inside."""
    lo, hi = margin * q.canvas, (1 - margin) * q.canvas
    x = rng.uniform(lo, hi, (n, POSE_JOINTS))
    y = rng.uniform(lo, hi, (n, POSE_JOINTS))
    return q.encode(x, y, np.ones((n, POSE_JOINTS), dtype=bool))


# -- token limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["m4", "m2"])
def test_token_limits_follow_kind_and_lengths(name: str) -> None:
    cfg = load_config(name, preset="tiny")
    q = PoseQuantizer(bins=cfg.data.pose_bins, canvas=cfg.data.image_size)
    rng = np.random.default_rng(0)
    for modality, length, vocab in zip(cfg.modalities, cfg.max_seq_lens, cfg.vocab_sizes, strict=True):
        limits = token_limits(cfg, modality)
        assert limits.shape == (length,) and limits.dtype == np.int64
        assert (limits <= vocab).all() and (limits >= 1).all()
        kind = modalities.get(modality).kind
        if kind is Kind.IMAGE:
            assert (limits == min(cfg.data.image_codes, vocab)).all()
        elif kind is Kind.POSE:
            assert length % POSE_TOKENS_PER_FRAME == 0
            assert (limits[2::3] == NUM_VIS_STATES).all()
            coords = np.delete(limits, np.s_[2::3])
            assert (coords == min(cfg.data.pose_bins, vocab)).all()
            # any encoded pose, with every visibility state and clamped coordinates, lies under the limits
            frames = length // POSE_TOKENS_PER_FRAME
            x = rng.uniform(-20, q.canvas + 20, (50, frames, POSE_JOINTS))
            y = rng.uniform(-20, q.canvas + 20, (50, frames, POSE_JOINTS))
            tokens = q.encode(x, y, rng.random((50, frames, POSE_JOINTS)) < 0.7).reshape(50, length)
            assert (tokens < limits).all()
            assert set(np.unique(tokens[:, 2::3])) == {VIS_INVISIBLE, VIS_VISIBLE, VIS_OUTSIDE}
            # and the bound is tight: the largest allowed id at every position still decodes
            q.decode((limits - 1).reshape(frames, POSE_TOKENS_PER_FRAME))
        else:
            assert (limits == min(cfg.data.text_vocab_size, vocab)).all()
    if "captions" in cfg.modalities:
        assert (token_limits(cfg, "captions", text_vocab=300) == 300).all()


def test_token_limits_m2_multi_frame_pose() -> None:
    cfg = load_config("m2", preset="tiny")
    limits = token_limits(cfg, "coords_next")
    assert limits.shape == (POSE_TOKENS_PER_FRAME * cfg.data.num_next_frames,) == (234,)
    assert (split_frames(limits, cfg.data.num_next_frames)[:, 2::3] == NUM_VIS_STATES).all()
    assert int((limits == NUM_VIS_STATES).sum()) == POSE_JOINTS * cfg.data.num_next_frames


def test_token_limits_capped_by_vocab() -> None:
    # validation keeps tokenizers within their vocabularies, but a trained text tokenizer passed in may not
    cfg = load_config("m2", preset="tiny")
    vocab = cfg.vocab_sizes[cfg.modality_index("captions")]
    assert (token_limits(cfg, "captions", text_vocab=10 * vocab) == vocab).all()
    with pytest.raises(KeyError, match="not in this config"):
        token_limits(cfg, "depth")


# -- pose errors ---------------------------------------------------------------------------------------------


def test_pose_errors_identical() -> None:
    q = PoseQuantizer(bins=1024, canvas=64)
    rows = _poses(np.random.default_rng(1), 8, q)
    err = pose_errors(rows, rows, q)
    assert err == {"mpjpe_px": 0.0, "pck": 1.0, "joints": 8 * POSE_JOINTS}


@pytest.mark.parametrize("k", [1, 3, 40])
def test_pose_errors_shift_by_bins(k: int) -> None:
    q = PoseQuantizer(bins=1024, canvas=64)  # 1/16 px bins; PCK threshold 0.05 x 64 = 3.2 px = 51.2 bins
    true = _poses(np.random.default_rng(2), 6, q)
    pred = true.copy()
    pred[:, 0::3] += k  # x bins only
    err = pose_errors(pred, true, q)
    assert err["mpjpe_px"] == pytest.approx(k * q.bin_width, rel=1e-12)
    assert err["joints"] == 6 * POSE_JOINTS
    # diagonal shift: error is k * bin_width * sqrt(2)
    pred[:, 1::3] += k
    diag = pose_errors(pred, true, q)
    assert diag["mpjpe_px"] == pytest.approx(k * q.bin_width * np.sqrt(2), rel=1e-12)
    assert err["pck"] == (1.0 if k * q.bin_width <= 0.05 * q.canvas else 0.0)
    assert diag["pck"] == (1.0 if k * q.bin_width * np.sqrt(2) <= 0.05 * q.canvas else 0.0)


def test_pose_errors_pck_threshold_splits_joints() -> None:
    q = PoseQuantizer(bins=256, canvas=256)  # 1 px bins, threshold 12.8 px
    true = _poses(np.random.default_rng(3), 1, q)
    pred = true.copy()
    pred[0, 0:15:3] += 12  # first 5 joints 12 px off: inside
    pred[0, 15::3] += 13  # other 8 joints 13 px off: outside
    err = pose_errors(pred, true, q)
    assert err["pck"] == pytest.approx(5 / 13)
    assert err["mpjpe_px"] == pytest.approx((5 * 12 + 8 * 13) / 13)


def test_pose_errors_ignore_joints_not_visible_in_truth() -> None:
    q = PoseQuantizer(bins=256, canvas=256)
    true = _poses(np.random.default_rng(4), 2, q).reshape(1, 2 * POSE_TOKENS_PER_FRAME)  # one 2-frame row
    pred = true.copy()
    hidden = [0, 4, 7 + POSE_JOINTS]  # joint indices over both frames
    for j in hidden:
        true[0, 3 * j + 2] = VIS_INVISIBLE if j != 4 else VIS_OUTSIDE
        pred[0, 3 * j] += 60  # far off, but must not count
    pred[0, 3 * 1] += 5  # a visible joint 5 px off
    err = pose_errors(pred, true, q)
    assert err["joints"] == 2 * POSE_JOINTS - len(hidden)
    assert err["mpjpe_px"] == pytest.approx(5 / err["joints"])
    assert err["pck"] == 1.0
    true[0, 2::3] = VIS_INVISIBLE
    none = pose_errors(pred, true, q)
    assert none["joints"] == 0 and np.isnan(none["mpjpe_px"]) and np.isnan(none["pck"])


def test_pose_errors_rejects_mismatched_rows() -> None:
    q = PoseQuantizer(bins=256, canvas=256)
    rows = _poses(np.random.default_rng(5), 2, q)
    with pytest.raises(ValueError, match="different numbers of frames"):
        pose_errors(rows[:1], rows, q)
    with pytest.raises(ValueError, match="multiple of 39"):
        pose_errors(rows[:, :38], rows[:, :38], q)


# -- frames and tokens --------------------------------------------------------------------------------------


def test_frame_ssim() -> None:
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[0:32, 0:32]
    base = np.stack([(xx * 8) % 256, (yy * 8) % 256, ((xx + yy) * 4) % 256], -1).astype(np.uint8)
    frames = np.stack([base, np.roll(base, 5, axis=1)])  # (2, 32, 32, 3)
    assert frame_ssim(frames, frames) == pytest.approx(1.0)
    noisy = np.clip(frames + rng.normal(0, 40, frames.shape), 0, 255).astype(np.uint8)
    score = frame_ssim(noisy, frames)
    assert 0.0 < score < 0.9
    noisier = np.clip(frames + rng.normal(0, 80, frames.shape), 0, 255).astype(np.uint8)
    assert frame_ssim(noisier, frames) < score
    assert frame_ssim(frames[:, :5, :5], frames[:, :5, :5]) == pytest.approx(1.0)  # small frames, smaller window


def test_token_accuracy() -> None:
    true = np.arange(10)
    pred = true.copy()
    pred[[1, 2, 3]] = -1
    assert token_accuracy(pred, true) == pytest.approx(0.7)
    mask = np.zeros(10, dtype=bool)
    mask[[0, 1, 4, 5]] = True
    assert token_accuracy(pred, true, mask) == pytest.approx(0.75)
    assert np.isnan(token_accuracy(pred, true, np.zeros(10, dtype=bool)))


def test_split_frames() -> None:
    pose = np.arange(3 * POSE_TOKENS_PER_FRAME)
    assert split_frames(pose, 3).shape == (3, POSE_TOKENS_PER_FRAME)
    assert (split_frames(pose, 3)[1] == pose[39:78]).all()
    image = np.arange(6 * 64)
    grids = split_frames(image, 6, "tok_rgb_next")
    assert grids.shape == (6, 8, 8) and grids[2, 1, 0] == 2 * 64 + 8
    assert split_frames(np.zeros((4, 2 * 39)), 2, Kind.POSE).shape == (4, 2, 39)
    with pytest.raises(ValueError):
        split_frames(np.arange(2 * 50), 2, Kind.IMAGE)
    with pytest.raises(ValueError):
        split_frames(np.arange(2 * 64), 2, "coords")


# -- artifacts ------------------------------------------------------------------------------------------------


def _gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        assert im.format == "GIF" and im.info.get("loop") == 0
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
    return out


def test_skeleton_gif(tmp_path) -> None:
    q = PoseQuantizer(bins=1024, canvas=64)
    rng = np.random.default_rng(7)
    true = _poses(rng, 5, q)  # (T=5, 39)
    pred = true.copy()
    pred[:, 0::3] += 40
    pred[0, 2::3] = VIS_OUTSIDE  # nothing of the first predicted pose is drawn
    path = skeleton_gif(true, pred, q, tmp_path / "sk" / "pose.gif", fps=5)
    frames = _gif_frames(path)
    side = 64 * upscale_factor(64, MIN_SKELETON_SIDE)
    assert side >= MIN_SKELETON_SIDE and len(frames) == 5
    assert frames[0].shape == (LABEL_HEIGHT + side, 2 * side + GAP, 3)
    left = frames[1][LABEL_HEIGHT:, :side]
    right0 = frames[0][LABEL_HEIGHT:, side + GAP:]
    right1 = frames[1][LABEL_HEIGHT:, side + GAP:]
    reddish = lambda a: ((a[..., 0] > 150) & (a[..., 1] < 120)).sum()  # noqa: E731
    greenish = lambda a: ((a[..., 1] > 100) & (a[..., 0] < 100)).sum()  # noqa: E731
    assert greenish(left) > 100 and reddish(left) == 0
    assert reddish(right1) > 100 and reddish(right0) == 0
    # truth only, titles as captions, multi-frame row
    only = skeleton_gif(true.reshape(-1), None, q, tmp_path / "only.gif", titles=[f"t+{i}" for i in range(5)])
    frames = _gif_frames(only)
    assert len(frames) == 5 and frames[0].shape == (LABEL_HEIGHT + side, side, 3)
    with pytest.raises(ValueError, match="titles"):
        skeleton_gif(true, pred, q, tmp_path / "bad.gif", titles=["a"])


def test_frames_gif(tmp_path) -> None:
    rng = np.random.default_rng(8)
    true = rng.integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
    pred = np.zeros_like(true)
    pred[..., 2] = 255  # pure blue
    path = frames_gif(true, pred, tmp_path / "frames.gif")
    frames = _gif_frames(path)
    k = upscale_factor(32, MIN_FRAME_SIDE)
    assert k == 4 and len(frames) == 4
    assert frames[0].shape == (LABEL_HEIGHT + 32 * k, 2 * 48 * k + GAP, 3)
    right = frames[2][LABEL_HEIGHT:, 48 * k + GAP:].astype(int)
    assert np.abs(right - [0, 0, 255]).max() <= 8
    assert iio_frames(path) == 4


def iio_frames(path) -> int:
    import imageio.v3 as iio

    return len(iio.imread(path, index=None))


def test_loss_curves_png(tmp_path) -> None:
    histories = {
        "train/loss": [(s, 5.0 * 0.9 ** (s / 10)) for s in range(0, 500, 10)],
        "eval/loss": [(s, 5.5 * 0.9 ** (s / 10)) for s in range(0, 500, 100)],
    }
    path = loss_curves_png(histories, tmp_path / "plots" / "loss.png", title="M4 tiny")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (700, 450)
    assert path.stat().st_size > 10_000
    # negative values (e.g. a log-likelihood) and an empty series still plot, on a linear axis
    mixed = loss_curves_png({"a": [(0, -1.0), (1, 2.0)], "b": []}, tmp_path / "mixed.png")
    assert mixed.stat().st_size > 5_000
