"""Successor frames by SSIM: the first later frame that no longer looks like the reference.

Chaining (the successor becomes the next reference) turns a clip into keyframes that each differ
visibly from the last, so near-duplicate frames of a still stretch do not flood the dataset.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, S, S) float32 luma in [0, 1]."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (frames.astype(np.float32) @ weights) / 255.0


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (S, S) grey frames in [0, 1]."""
    return float(structural_similarity(a, b, data_range=1.0))


def successor_chain(gray: np.ndarray, threshold: float) -> list[tuple[int, int | None]]:
    """(N, S, S) grey frames -> [(reference, successor or None)] chained through the clip.

    The chain starts at frame 0; each successor is the first later frame whose SSIM against the
    reference drops below `threshold` and becomes the next reference. The last reference has no
    successor (None) when no later frame differs enough.
    """
    chain: list[tuple[int, int | None]] = []
    ref = 0
    n = len(gray)
    while ref < n:
        succ = next((j for j in range(ref + 1, n) if ssim(gray[ref], gray[j]) < threshold), None)
        chain.append((ref, succ))
        if succ is None:
            break
        ref = succ
    return chain


def next_positions(ref: int, succ: int, count: int) -> np.ndarray:
    """`count` frame positions in (ref, succ], evenly spaced and ending at the successor.

    With fewer than `count` frames in between, positions repeat (nearest-frame resampling);
    count=1 gives the successor itself.
    """
    if succ <= ref:
        raise ValueError(f"successor {succ} must come after reference {ref}")
    steps = np.arange(1, count + 1, dtype=np.float64) * (succ - ref) / count
    return ref + np.ceil(steps - 1e-9).astype(np.int64)
