"""Evaluation metrics on tokens and decoded outputs, in numpy so they run anywhere a batch was decoded.

Token accuracy alone hides how wrong a pose is (a bin off by one and a joint on the far side of the
frame count the same), so poses are also scored in pixels after dequantisation, and frames by SSIM.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from motionlab.modalities import POSE_TOKENS_PER_FRAME
from motionlab.tokenizers.pose import VIS_VISIBLE, PoseQuantizer

PCK_FRACTION = 0.05  # PCK@0.05
SSIM_DATA_RANGE = 255.0  # uint8 frames
SSIM_WINDOW = 7  # scikit-image's default window side


def _pose_frames(tokens: np.ndarray, who: str) -> np.ndarray:
    """(N, 39*F) or (39*F,) -> (N*F, 39): every frame scored alike, whatever row it came from."""
    tokens = np.asarray(tokens)
    if tokens.ndim == 0 or tokens.shape[-1] % POSE_TOKENS_PER_FRAME:
        raise ValueError(
            f"pose_errors: {who} rows must hold a multiple of {POSE_TOKENS_PER_FRAME} tokens, "
            f"got shape {tokens.shape}"
        )
    return tokens.reshape(-1, POSE_TOKENS_PER_FRAME)


def pose_errors(pred_tokens: np.ndarray, true_tokens: np.ndarray, quantizer: PoseQuantizer) -> dict:
    """MPJPE in pixels and PCK@0.05 over the joints the ground truth marks visible.

    Rows are (N, 39*F) pose tokens. Joints that are occluded or outside the frame in the ground truth
    carry no trustworthy position, so they are left out; the predicted visibility state is not used.
    PCK's reference length is the canvas side (0.05 x canvas pixels): Penn Action's person boxes are
    not carried in the tokens, so a box-relative threshold cannot be computed here.
    Returns {"mpjpe_px": float, "pck": float, "joints": int}; nan scores and 0 joints when no joint
    is visible.
    """
    pred = _pose_frames(pred_tokens, "predicted")  # (M, 39)
    true = _pose_frames(true_tokens, "ground-truth")  # (M, 39)
    if pred.shape != true.shape:
        raise ValueError(
            f"pose_errors: predicted rows {np.shape(pred_tokens)} and ground-truth rows {np.shape(true_tokens)} "
            "hold different numbers of frames"
        )
    px, py, _ = quantizer.decode(pred)  # (M, 13) each
    tx, ty, state = quantizer.decode(true)  # (M, 13) each
    visible = state == VIS_VISIBLE  # (M, 13)
    joints = int(visible.sum())
    if joints == 0:
        return {"mpjpe_px": float("nan"), "pck": float("nan"), "joints": 0}
    dist = np.hypot(px - tx, py - ty)[visible]  # (joints,)
    threshold = PCK_FRACTION * quantizer.canvas
    return {
        "mpjpe_px": float(dist.mean()),
        "pck": float((dist <= threshold).mean()),
        "joints": joints,
    }


def frame_ssim(pred_frames: np.ndarray, true_frames: np.ndarray) -> float:
    """Mean SSIM over (N, H, W, 3) uint8 frame pairs: structure, not per-pixel error, is what a viewer sees."""
    pred = np.asarray(pred_frames)
    true = np.asarray(true_frames)
    if pred.shape != true.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(
            f"frame_ssim expects two (N, H, W, 3) arrays of equal shape, got {pred.shape} and {true.shape}"
        )
    if pred.shape[0] == 0:
        return float("nan")
    side = min(pred.shape[1:3])
    win = min(SSIM_WINDOW, side if side % 2 else side - 1)  # SSIM windows are odd and fit the frame
    if win < 3:
        raise ValueError(f"frame_ssim: frames of {pred.shape[1]}x{pred.shape[2]} px are too small for SSIM")
    scores = [
        structural_similarity(p, t, channel_axis=-1, data_range=SSIM_DATA_RANGE, win_size=win)
        for p, t in zip(pred, true, strict=True)
    ]
    return float(np.mean(scores))


def token_accuracy(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of positions where the ids agree, over `mask` (e.g. the target tokens only); nan if none."""
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"token_accuracy: pred {pred.shape} and true {true.shape} differ in shape")
    hits = pred == true
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != hits.shape:
            raise ValueError(f"token_accuracy: mask {mask.shape} does not match tokens {hits.shape}")
        hits = hits[mask]
    return float(hits.mean()) if hits.size else float("nan")
