"""One video in, its samples out: decode, crop, pick successor frames, gather the joints.

This is the pipeline's per-video task. A problem with the whole video (no label, corrupt label,
rows that do not match the frames, no frames) becomes one quarantine row; a problem with one frame
(unreadable JPEG, NaN or negative joints) removes that frame from the chain and quarantines it.
Every row carries every column (zeros on quarantine rows) because a Ray Data block needs one schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motionlab.datasets.penn_action import (
    PennActionError,
    PennLabel,
    frame_paths,
    frame_problem,
    read_frame,
    read_label,
)
from motionlab.modalities import POSE_JOINTS
from motionlab.pipelines.geometry import SquareCrop, crop_frame
from motionlab.pipelines.successor import next_positions, successor_chain, to_gray


@dataclass(frozen=True)
class SampleSpec:
    """What the per-video stage must produce, derived once from the config."""

    source: str
    size: int  # canvas side
    ssim_threshold: float
    num_next: int  # frames in a "next" slot; 0 when no modality looks ahead
    keep_pixels: bool  # image modalities or an image captioner need the frames

    def empty_row(self, video_id: str, split: str, reason: str, frame: int = -1) -> dict[str, Any]:
        """A quarantine row with zero payloads of the right shapes."""
        pixels = np.zeros((1, self.size, self.size, 3), np.uint8) if self.keep_pixels else None
        next_pixels = (np.zeros((self.num_next, self.size, self.size, 3), np.uint8)
                       if self.keep_pixels and self.num_next else None)
        next_joints = np.zeros((self.num_next, POSE_JOINTS, 3), np.float32) if self.num_next else None
        next_frames = np.full(self.num_next, -1, np.int32) if self.num_next else None
        return self.sample_row(video_id, split, frame, -1, "", "", reason, pixels,
                               np.zeros((1, POSE_JOINTS, 3), np.float32), next_pixels, next_joints, next_frames)

    def sample_row(self, video_id: str, split: str, frame: int, next_frame: int, action: str, viewpoint: str,
                   reason: str, pixels: np.ndarray | None, joints: np.ndarray,
                   next_pixels: np.ndarray | None, next_joints: np.ndarray | None,
                   next_frames: np.ndarray | None) -> dict[str, Any]:
        """One row; frame numbers are 1-based like the frame files (-1: none)."""
        row: dict[str, Any] = {
            "video_id": video_id, "frame": np.int32(frame), "next_frame": np.int32(next_frame),
            "action": action, "viewpoint": viewpoint, "split": split, "reason": reason,
            "joints_current": joints,  # (1, 13, 3) canvas x, y, visible
        }
        if self.keep_pixels:
            row["pixels_current"] = pixels  # (1, S, S, 3) uint8
        if self.num_next:
            row["joints_next"] = next_joints  # (K, 13, 3)
            if self.keep_pixels:
                row["pixels_next"] = next_pixels  # (K, S, S, 3) uint8
                row["frames_next"] = next_frames  # (K,) int32: which frames those are, so each is encoded once
        return row


def _check_frames_match(root: Path, label: PennLabel, paths: list[Path]) -> None:
    if not paths:
        raise PennActionError(root / "frames" / label.video_id, "frames", "no frames found",
                              "extract the video's frames as frames/<id>/000001.jpg ...")
    if len(paths) != label.num_frames:
        raise PennActionError(
            root / "labels" / f"{label.video_id}.mat", "x",
            f"has {label.num_frames} rows but frames/{label.video_id} holds {len(paths)} images",
            "re-extract the frames or fix the label so there is one row per frame")


def video_to_samples(row: dict[str, Any], spec: SampleSpec) -> list[dict[str, Any]]:
    """One {video_id, split} row -> sample rows (plus quarantine rows for what could not be used)."""
    root = Path(spec.source)
    video_id, split = str(row["video_id"]), str(row["split"])
    try:
        label = read_label(root, video_id)
        paths = frame_paths(root, video_id)
        _check_frames_match(root, label, paths)
    except PennActionError as err:
        return [spec.empty_row(video_id, split, str(err))]

    out: list[dict[str, Any]] = []
    crop = SquareCrop.centred(label.width, label.height, spec.size)
    cx, cy = crop.joints(label.x, label.y)  # (N, 13) each
    joints = np.stack([cx, cy, label.visibility.astype(np.float64)], axis=-1).astype(np.float32)

    good: list[int] = []  # frame indices usable as references or next frames
    frames: list[np.ndarray] = []
    for i, path in enumerate(paths):
        problem = frame_problem(label, i)
        if problem is None:
            try:
                raw = read_frame(path, min_side=spec.size)
                frames.append(crop_frame(raw, label.width, label.height, spec.size))
                good.append(i)
                continue
            except PennActionError as err:
                problem = str(err)
        out.append(spec.empty_row(video_id, split, problem, frame=i + 1))
    if not good:
        return out

    canvas = np.stack(frames)  # (G, S, S, 3)
    for ref, succ in successor_chain(to_gray(canvas), spec.ssim_threshold):
        if spec.num_next and succ is None:
            break  # the clip ends before the reference changes: no successor, no sample
        nxt = next_positions(ref, succ, spec.num_next) if spec.num_next else None
        out.append(spec.sample_row(
            video_id, split, good[ref] + 1, good[succ] + 1 if succ is not None else -1,
            label.action, label.viewpoint, "",
            canvas[ref : ref + 1] if spec.keep_pixels else None,
            joints[good[ref]][None],
            canvas[nxt] if nxt is not None and spec.keep_pixels else None,
            joints[[good[p] for p in nxt]] if nxt is not None else None,
            np.asarray([good[p] + 1 for p in nxt], np.int32) if nxt is not None else None,
        ))
    return out


def rows_to_columns(rows: list[dict[str, Any]], spec: SampleSpec) -> dict[str, np.ndarray]:
    """Sample rows -> one columnar batch (arrays stacked on axis 0); zero-length columns when empty.

    Ray Data builds blocks from columns far faster than from rows holding frame-sized arrays.
    """
    template = rows or [spec.empty_row("", "", "")]
    columns: dict[str, np.ndarray] = {}
    for key, first in template[0].items():
        if isinstance(first, np.ndarray):
            columns[key] = np.stack([r[key] for r in template]) if rows else np.zeros((0, *first.shape), first.dtype)
        else:
            values = [r[key] for r in rows]
            columns[key] = np.asarray(values, dtype=np.int32 if isinstance(first, np.integer) else object)
    return columns


def videos_to_samples(batch: dict[str, np.ndarray], spec: SampleSpec) -> dict[str, np.ndarray]:
    """A batch of {video_id, split} rows -> the columnar batch of all their samples."""
    rows: list[dict[str, Any]] = []
    for video_id, split in zip(batch["video_id"], batch["split"], strict=True):
        rows.extend(video_to_samples({"video_id": video_id, "split": split}, spec))
    # No rows (a clip without a successor): an empty batch, since zero-length tensor columns do not convert.
    return rows_to_columns(rows, spec) if rows else {}
