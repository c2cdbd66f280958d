"""Readers of raw sources and writers of look-alike generated data.

Penn Action: `penn_action` reads the official layout; `synth_penn` writes a look-alike of it that
the project uses as its default data when the real dataset is not at hand.
"""

from motionlab.datasets.penn_action import (
    ACTIONS,
    VIEWPOINTS,
    PennActionError,
    PennLabel,
    frame_paths,
    frame_problem,
    list_video_ids,
    read_frame,
    read_label,
    read_label_file,
)
from motionlab.datasets.synth_penn import synth_penn_action

__all__ = [
    "ACTIONS",
    "VIEWPOINTS",
    "PennActionError",
    "PennLabel",
    "frame_paths",
    "frame_problem",
    "list_video_ids",
    "read_frame",
    "read_label",
    "read_label_file",
    "synth_penn_action",
]
