"""The modality registry: every stage looks up a modality's kind here instead of branching on its name.

Adding a modality (say `depth`) is one entry below and one tokenizer; the pipeline, validation,
masking and losses ask `kind` and `temporal`, never the name (apple/ml-4m's MODALITY_INFO is the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

POSE_JOINTS = 13
POSE_TOKENS_PER_JOINT = 3  # x bin, y bin, visibility state
POSE_TOKENS_PER_FRAME = POSE_JOINTS * POSE_TOKENS_PER_JOINT  # 39

JOINT_NAMES = (
    "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)


class Kind(StrEnum):
    IMAGE = "image"  # grid of image-tokenizer codes per frame
    POSE = "pose"  # 13 joints x (x bin, y bin, visibility)
    TEXT = "text"  # caption token ids, padded to max_seq_len


@dataclass(frozen=True)
class Modality:
    name: str
    kind: Kind
    # "current": the reference frame; "next": the frames up to the SSIM successor (1 or num_next_frames)
    temporal: Literal["current", "next", "none"]
    # The tokenizer whose ids the modality holds: modalities naming the same one share a token table and
    # an output head in the model, so a current and a next modality read and write the same codes.
    tokenizer: str


REGISTRY: dict[str, Modality] = {
    m.name: m
    for m in (
        Modality("tok_rgb", Kind.IMAGE, "current", tokenizer="image"),
        Modality("coords", Kind.POSE, "current", tokenizer="pose"),
        Modality("captions", Kind.TEXT, "none", tokenizer="text"),
        Modality("tok_rgb_next", Kind.IMAGE, "next", tokenizer="image"),
        Modality("coords_next", Kind.POSE, "next", tokenizer="pose"),
    )
}


def get(name: str) -> Modality:
    """Look a modality up, with an error that lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown modality '{name}'; known modalities: {', '.join(REGISTRY)} "
            "(add an entry to motionlab.modalities.REGISTRY for a new one)"
        ) from None


def frames_spanned(modality: Modality, num_next_frames: int) -> int:
    """How many frames a modality's tokens cover: next modalities span `num_next_frames`."""
    return num_next_frames if modality.temporal == "next" else 1


def expected_length(
    modality: Modality, image_size: int, image_downsample: int, num_next_frames: int
) -> int | None:
    """Tokens a sample of this modality holds; None where any length is allowed (text)."""
    frames = frames_spanned(modality, num_next_frames)
    if modality.kind is Kind.IMAGE:
        side = image_size // image_downsample
        return side * side * frames
    if modality.kind is Kind.POSE:
        return POSE_TOKENS_PER_FRAME * frames
    return None
