"""Looping GIFs of ground truth beside prediction: the quickest way to see whether a roll-out moves like a person.

Drawn with PIL on numpy frames rather than matplotlib, because an evaluation writes many of them and a
figure per frame costs tens of milliseconds. Every frame carries its own label (a title or `t i/T`), which
also keeps the GIF writer from merging identical consecutive frames, so a GIF always holds T frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from motionlab import modalities
from motionlab.modalities import JOINT_NAMES, POSE_TOKENS_PER_FRAME, Kind
from motionlab.tokenizers.pose import VIS_VISIBLE, PoseQuantizer

LABEL_HEIGHT = 16  # px of the caption strip above the panels
GAP = 4  # px between the ground-truth and the predicted panel
MIN_FRAME_SIDE = 128  # decoded frames are upscaled (nearest) to at least this many px per side
MIN_SKELETON_SIDE = 256  # skeleton panels are drawn at least this large so limbs stay legible
TRUE_LABEL, PRED_LABEL = "ground truth", "predicted"

# Penn Action's 13-joint skeleton, as pairs of joint names so the order of JOINT_NAMES is the only index.
LIMB_NAMES = (
    ("head", "left_shoulder"), ("head", "right_shoulder"), ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_hip", "right_hip"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
)
LIMBS = tuple((JOINT_NAMES.index(a), JOINT_NAMES.index(b)) for a, b in LIMB_NAMES)

BACKGROUND = (255, 255, 255)
LABEL_BACKGROUND = (235, 235, 235)
LABEL_COLOUR = (0, 0, 0)
TRUE_COLOUR = (30, 140, 60)
PRED_COLOUR = (210, 50, 40)
GHOST_COLOUR = (200, 200, 200)  # ground truth drawn under the prediction, for reference
LIMB_WIDTH = 3
JOINT_RADIUS = 3


def upscale_factor(side: int, minimum: int) -> int:
    """Smallest integer factor that brings `side` to at least `minimum` px (1 if it is already there)."""
    return max(1, math.ceil(minimum / side))


def split_frames(row: np.ndarray, frames: int, kind: Kind | str | None = None) -> np.ndarray:
    """A row spanning `frames` frames -> per-frame pieces: pose (..., F*39) -> (..., F, 39),
    image tokens (..., F*h*w) -> (..., F, h, w) with a square grid.

    `kind` is a Kind, its value, or a modality name (looked up in the registry); without it the kind is
    inferred from the per-frame length (39 is a pose, a perfect square an image grid).
    """
    row = np.asarray(row)
    if frames < 1 or row.ndim == 0 or row.shape[-1] % frames:
        raise ValueError(f"split_frames: a row of shape {row.shape} does not split into {frames} frames")
    per_frame = row.shape[-1] // frames
    if kind is None:
        kind = Kind.POSE if per_frame == POSE_TOKENS_PER_FRAME else Kind.IMAGE
    elif isinstance(kind, str) and kind in modalities.REGISTRY:
        kind = modalities.get(kind).kind
    kind = Kind(kind)
    lead = row.shape[:-1]
    if kind is Kind.POSE:
        if per_frame != POSE_TOKENS_PER_FRAME:
            raise ValueError(
                f"split_frames: {per_frame} tokens per frame is not a pose ({POSE_TOKENS_PER_FRAME} per frame)"
            )
        return row.reshape(*lead, frames, POSE_TOKENS_PER_FRAME)
    if kind is Kind.IMAGE:
        side = math.isqrt(per_frame)
        if side * side != per_frame:
            raise ValueError(f"split_frames: {per_frame} image tokens per frame do not form a square grid")
        return row.reshape(*lead, frames, side, side)
    raise ValueError(f"split_frames: a {kind} row does not span frames")


def _write_gif(frames: list[np.ndarray], path: Path | str, fps: float) -> Path:
    """(T, H, W, 3) uint8 -> a GIF that loops forever."""
    if fps <= 0:
        raise ValueError(f"GIF fps must be positive, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _compose(panels: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Equal-size (S, S', 3) panels side by side, GAP apart, each under its caption -> (LABEL_HEIGHT + S, W, 3)."""
    height, width = panels[0].shape[:2]
    total = len(panels) * width + (len(panels) - 1) * GAP
    image = Image.new("RGB", (total, LABEL_HEIGHT + height), LABEL_BACKGROUND)  # grey gap divides panels
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, total - 1, LABEL_HEIGHT - 1), fill=LABEL_BACKGROUND)
    font = _font()
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        left = i * (width + GAP)
        image.paste(Image.fromarray(panel), (left, LABEL_HEIGHT))
        draw.text((left + 3, 2), label, fill=LABEL_COLOUR, font=font)
    return np.asarray(image)


def _frame_labels(count: int, titles: Sequence[str] | None) -> list[str]:
    if titles is None:
        return [f"t {i + 1}/{count}" for i in range(count)]
    if len(titles) != count:
        raise ValueError(f"got {len(titles)} titles for {count} frames")
    return [str(t) for t in titles]


def _pose_rows(rows: np.ndarray, who: str) -> np.ndarray:
    """(T, 39) or multi-frame (..., 39*F) -> (T', 39) frames in order."""
    rows = np.asarray(rows)
    if rows.ndim == 0 or rows.shape[-1] % POSE_TOKENS_PER_FRAME or rows.size == 0:
        raise ValueError(
            f"skeleton_gif: {who} rows of shape {rows.shape} are not whole {POSE_TOKENS_PER_FRAME}-token poses"
        )
    return rows.reshape(-1, POSE_TOKENS_PER_FRAME)


def _draw_skeleton(
    draw: ImageDraw.ImageDraw, x: np.ndarray, y: np.ndarray, state: np.ndarray, scale: float, colour: tuple
) -> None:
    """One pose (13 joints, canvas px) onto a panel; only joints annotated visible inside the frame are drawn."""
    shown = state == VIS_VISIBLE  # (13,)
    px, py = x * scale, y * scale
    for a, b in LIMBS:
        if shown[a] and shown[b]:
            draw.line((px[a], py[a], px[b], py[b]), fill=colour, width=LIMB_WIDTH)
    r = JOINT_RADIUS
    for j in np.flatnonzero(shown):
        draw.ellipse((px[j] - r, py[j] - r, px[j] + r, py[j] + r), fill=colour)


def skeleton_gif(
    true_rows: np.ndarray,
    pred_rows: np.ndarray | None,
    quantizer: PoseQuantizer,
    path: Path | str,
    titles: Sequence[str] | None = None,
    fps: float = 4,
) -> Path:
    """Ground-truth and predicted pose sequences, (T, 39) tokens each, as a looping GIF, truth on the left.

    The prediction's panel also shows the ground truth in light grey beneath it, so drift is visible
    without looking back and forth. Without `pred_rows` only the ground truth is drawn. Each frame is
    (LABEL_HEIGHT + S, 2 S + GAP) px (S without a prediction), S = canvas x upscale_factor(canvas,
    MIN_SKELETON_SIDE).
    """
    true = _pose_rows(true_rows, "ground-truth")  # (T, 39)
    pred = None if pred_rows is None else _pose_rows(pred_rows, "predicted")  # (T, 39)
    if pred is not None and pred.shape != true.shape:
        raise ValueError(f"skeleton_gif: {len(true)} ground-truth frames but {len(pred)} predicted frames")
    labels = _frame_labels(len(true), titles)
    scale = upscale_factor(quantizer.canvas, MIN_SKELETON_SIDE)
    side = quantizer.canvas * scale
    tx, ty, ts = quantizer.decode(true)  # (T, 13) each
    if pred is not None:
        px, py, ps = quantizer.decode(pred)  # (T, 13) each
    out = []
    for t, label in enumerate(labels):
        left = Image.new("RGB", (side, side), BACKGROUND)
        _draw_skeleton(ImageDraw.Draw(left), tx[t], ty[t], ts[t], scale, TRUE_COLOUR)
        panels, captions = [np.asarray(left)], [f"{TRUE_LABEL}  {label}"]
        if pred is not None:
            right = Image.new("RGB", (side, side), BACKGROUND)
            draw = ImageDraw.Draw(right)
            _draw_skeleton(draw, tx[t], ty[t], ts[t], scale, GHOST_COLOUR)
            _draw_skeleton(draw, px[t], py[t], ps[t], scale, PRED_COLOUR)
            panels.append(np.asarray(right))
            captions.append(PRED_LABEL)
        out.append(_compose(panels, captions))  # (LABEL_HEIGHT + S, 2 S + GAP, 3)
    return _write_gif(out, path, fps)


def frames_gif(true_frames: np.ndarray, pred_frames: np.ndarray, path: Path | str, fps: float = 4) -> Path:
    """Ground-truth and predicted (T, H, W, 3) uint8 frames side by side as a looping GIF.

    Frames are upscaled by the integer factor k = upscale_factor(min(H, W), MIN_FRAME_SIDE) with
    nearest neighbours (tokenizer artefacts stay visible rather than smoothed away): each GIF frame is
    (LABEL_HEIGHT + k H, 2 k W + GAP) px.
    """
    true = np.asarray(true_frames)
    pred = np.asarray(pred_frames)
    if true.shape != pred.shape or true.ndim != 4 or true.shape[-1] != 3 or len(true) == 0:
        raise ValueError(
            f"frames_gif expects two non-empty (T, H, W, 3) arrays of equal shape, got {true.shape} and {pred.shape}"
        )
    if true.dtype != np.uint8 or pred.dtype != np.uint8:
        raise ValueError(f"frames_gif expects uint8 frames, got {true.dtype} and {pred.dtype}")
    k = upscale_factor(min(true.shape[1:3]), MIN_FRAME_SIDE)
    labels = _frame_labels(len(true), None)
    out = []
    for t, label in enumerate(labels):
        panels = [f.repeat(k, axis=0).repeat(k, axis=1) for f in (true[t], pred[t])]  # (k H, k W, 3) each
        out.append(_compose(panels, [f"{TRUE_LABEL}  {label}", PRED_LABEL]))
    return _write_gif(out, path, fps)
