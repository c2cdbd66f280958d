"""Pose tokens: 13 joints -> 39 ids per frame, each joint as [x bin, y bin, visibility state].

Coordinates are quantised on the square canvas the frame (and its joints) were transformed into, so a
token means the same thing whatever the source video's resolution was. Decoding returns bin *centres*:
the seed code returned the bin's lower edge, which biased every joint by half a bin towards the origin.
Visibility is a third token with an explicit "outside the frame" state, because a joint that left the
crop has a clamped coordinate that must not be mistaken for a joint standing on the border.
"""

from __future__ import annotations

import numpy as np

from motionlab.modalities import POSE_JOINTS, POSE_TOKENS_PER_FRAME, POSE_TOKENS_PER_JOINT

VIS_INVISIBLE, VIS_VISIBLE, VIS_OUTSIDE = 0, 1, 2
NUM_VIS_STATES = 3


class PoseQuantizer:
    """Uniform quantiser of joint coordinates on a `canvas` x `canvas` frame into `bins` bins per axis.

    The visibility states reuse ids 0..2 of the same vocabulary: a token's position in the
    39-token frame (every third token) says whether it is a coordinate or a state.
    """

    def __init__(self, bins: int = 8192, canvas: int = 256) -> None:
        if bins < NUM_VIS_STATES:
            raise ValueError(
                f"pose bins must be at least {NUM_VIS_STATES} (the visibility states), got {bins}"
            )
        if canvas <= 0:
            raise ValueError(f"pose canvas must be a positive frame side in pixels, got {canvas}")
        self.bins = int(bins)
        self.canvas = int(canvas)
        self.bin_width = self.canvas / self.bins

    @property
    def codebook_size(self) -> int:
        return self.bins

    def _bin(self, v: np.ndarray) -> np.ndarray:
        # floor, then clip: values on or past the far edge fall in the last bin, negatives in the first
        return np.clip(np.floor(v / self.bin_width), 0, self.bins - 1).astype(np.int32)

    def encode(self, x: np.ndarray, y: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Joints (..., 13) of x, y (pixels on the canvas) and annotated visibility -> tokens (..., 39) int32.

        NaN coordinates raise: the pipeline quarantines such samples with a reason before tokenising,
        and a silent NaN -> bin 0 would teach the model joints in the top-left corner.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        visible = np.asarray(visible).astype(bool)
        if not (x.shape == y.shape == visible.shape) or x.ndim == 0 or x.shape[-1] != POSE_JOINTS:
            raise ValueError(
                f"pose encode expects x, y and visible of the same shape (..., {POSE_JOINTS}); "
                f"got x {x.shape}, y {y.shape}, visible {visible.shape}"
            )
        bad = ~(np.isfinite(x) & np.isfinite(y))
        if bad.any():
            where = np.argwhere(bad)[0].tolist()
            raise ValueError(
                f"pose encode got {int(bad.sum())} non-finite joint coordinate(s), first at index {where}; "
                "quarantine the sample before tokenising"
            )
        inside = (x >= 0) & (x < self.canvas) & (y >= 0) & (y < self.canvas)
        state = np.where(visible, np.where(inside, VIS_VISIBLE, VIS_OUTSIDE), VIS_INVISIBLE)
        tokens = np.empty((*x.shape[:-1], POSE_TOKENS_PER_FRAME), dtype=np.int32)  # (..., 39)
        tokens[..., 0::POSE_TOKENS_PER_JOINT] = self._bin(x)
        tokens[..., 1::POSE_TOKENS_PER_JOINT] = self._bin(y)
        tokens[..., 2::POSE_TOKENS_PER_JOINT] = state
        return tokens

    def decode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tokens (..., 39) -> x (..., 13) float64 bin centres, y (..., 13), state (..., 13) int.

        Out-of-range ids raise rather than being clipped: they mean the tokens came from the wrong
        slot (or an unconstrained sampler), and clipping would hide that.
        """
        tokens = np.asarray(tokens)
        if tokens.ndim == 0 or tokens.shape[-1] != POSE_TOKENS_PER_FRAME:
            raise ValueError(
                f"pose decode expects tokens of shape (..., {POSE_TOKENS_PER_FRAME}), got {tokens.shape}"
            )
        if not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"pose decode expects integer tokens, got dtype {tokens.dtype}")
        xb = tokens[..., 0::POSE_TOKENS_PER_JOINT].astype(np.int64)
        yb = tokens[..., 1::POSE_TOKENS_PER_JOINT].astype(np.int64)
        state = tokens[..., 2::POSE_TOKENS_PER_JOINT].astype(np.int64)
        for label, b in (("x", xb), ("y", yb)):
            if b.size and (b.min() < 0 or b.max() >= self.bins):
                raise ValueError(
                    f"pose decode: {label} bins must lie in [0, {self.bins}), got [{b.min()}, {b.max()}]"
                )
        if state.size and (state.min() < 0 or state.max() >= NUM_VIS_STATES):
            raise ValueError(
                f"pose decode: visibility states must lie in [0, {NUM_VIS_STATES}), got [{state.min()}, "
                f"{state.max()}]; restrict sampling at every third position to the state ids"
            )
        x = (xb + 0.5) * self.bin_width
        y = (yb + 0.5) * self.bin_width
        return x, y, state
