"""Resize-shorter-side plus centre-crop, and the identical transform applied to joints.

Cropping the centred square first and resizing it second is the same geometry as resizing the
shorter side then cropping, at a fraction of the pixels touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class SquareCrop:
    """Maps label coordinates (pixels of the original frame) to the square canvas."""

    offset_x: float  # left edge of the square, label pixels
    offset_y: float
    scale: float  # canvas pixels per label pixel
    size: int  # canvas side

    @classmethod
    def centred(cls, width: float, height: float, size: int) -> SquareCrop:
        side = min(width, height)
        return cls((width - side) / 2.0, (height - side) / 2.0, size / side, size)

    def joints(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 13) label coordinates -> (..., 13) canvas coordinates in [0, size) when inside."""
        return (x - self.offset_x) * self.scale, (y - self.offset_y) * self.scale


def crop_frame(frame: np.ndarray, label_width: float, label_height: float, size: int) -> np.ndarray:
    """(H, W, 3) uint8, possibly decoded at a reduced scale -> (size, size, 3) uint8.

    The crop is computed in label pixels and rescaled to the decoded array, so a frame decoded at
    1/2 or 1/4 scale (JPEG draft mode) lands on exactly the canvas the joints are mapped to.
    """
    h, w = frame.shape[:2]
    crop = SquareCrop.centred(label_width, label_height, size)
    sx, sy = w / label_width, h / label_height
    side = min(label_width, label_height)
    box = (crop.offset_x * sx, crop.offset_y * sy, (crop.offset_x + side) * sx, (crop.offset_y + side) * sy)
    img = Image.fromarray(frame).resize((size, size), Image.BILINEAR, box=box)
    return np.asarray(img, dtype=np.uint8)
