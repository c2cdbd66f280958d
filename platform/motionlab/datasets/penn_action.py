"""Reader for the official Penn Action layout: ``ROOT/frames/NNNN/NNNNNN.jpg`` and ``ROOT/labels/NNNN.mat``.

The real label files are not uniform: coordinates are float64 in most files but uint16 or uint8 in
some, ``nframes`` is uint8 in most files (and would wrap for long clips), and two files carry one
``bbox`` row fewer than frames. Everything downstream wants one shape and one dtype, so this module
normalises once (float64 joints, bool visibility, frame count from the rows of ``x``) and turns
every defect it cannot normalise into a :class:`PennActionError` that names the file, the field and
the fix. The pipeline catches that error per video and writes the message to its quarantine table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

from motionlab.modalities import JOINT_NAMES, POSE_JOINTS

ACTIONS = (
    "baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
    "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar",
    "tennis_forehand", "tennis_serve",
)
VIEWPOINTS = ("front", "back", "left", "right")
REQUIRED_FIELDS = ("action", "pose", "x", "y", "visibility", "dimensions", "train")
FRAME_SUFFIXES = (".jpg", ".jpeg")

# Fields that describe a whole file rather than a named .mat variable are printed without quotes.
_FILE_LEVEL_FIELDS = ("file", "jpeg", "folder")
_REEXPORT = ("re-export the label with MATLAB's save -v7 "
             "(fields action, pose, x, y, visibility, dimensions, train)")


def _display_path(path: Path | str) -> str:
    """Show a path from its `labels`/`frames` folder on, so messages read the same on every machine."""
    parts = Path(path).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in ("labels", "frames"):
            return "/".join(parts[i:])
    return str(path)


class PennActionError(ValueError):
    """A defect in one Penn Action file, as one line naming the file, the field and the fix.

    The pipeline stores ``str(error)`` as a quarantine reason, so the message must be useful on its
    own: ``labels/0042.mat: 'x' has 40 rows but 'visibility' has 39; fix: ...``.
    """

    def __init__(self, path: Path | str, field: str, problem: str, fix: str):
        self.path = Path(path)
        self.field = field
        self.problem = problem
        self.fix = fix
        name = field if field in _FILE_LEVEL_FIELDS else f"'{field}'"
        super().__init__(f"{_display_path(path)}: {name} {problem}; fix: {fix}")

    def __reduce__(self):  # keep the error picklable across Ray workers
        return (type(self), (self.path, self.field, self.problem, self.fix))


@dataclass(frozen=True, eq=False)
class PennLabel:
    """One video's annotation with dtypes normalised; the arrays share the frame axis N."""

    video_id: str
    action: str
    viewpoint: str
    x: np.ndarray  # (N, 13) float64
    y: np.ndarray  # (N, 13) float64
    visibility: np.ndarray  # (N, 13) bool
    bbox: np.ndarray | None  # (N, 4) float64 x1, y1, x2, y2
    height: int
    width: int
    train: bool

    @property
    def num_frames(self) -> int:
        """Rows of `x`: the stored `nframes` can overflow its uint8, the rows cannot."""
        return int(self.x.shape[0])


def label_path(root: Path, video_id: str) -> Path:
    return Path(root) / "labels" / f"{video_id}.mat"


def frames_dir(root: Path, video_id: str) -> Path:
    return Path(root) / "frames" / video_id


def list_video_ids(root: Path) -> list[str]:
    """Every video the folder mentions, labelled or not.

    A video with frames but no label is listed too, so the pipeline can quarantine it as a
    missing label instead of silently dropping it.
    """
    root = Path(root)
    labels, frames = root / "labels", root / "frames"
    if not labels.is_dir() and not frames.is_dir():
        raise PennActionError(
            root, "folder", "has neither labels/ nor frames/",
            "point the dataset path at the Penn_Action folder that holds labels/NNNN.mat and "
            "frames/NNNN/, or generate look-alike data with motionlab.datasets.synth_penn_action",
        )
    ids: set[str] = set()
    if labels.is_dir():
        ids.update(p.stem for p in labels.glob("*.mat") if not p.name.startswith("."))
    if frames.is_dir():
        ids.update(p.name for p in frames.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(ids)


def frame_paths(root: Path, video_id: str) -> list[Path]:
    """The video's JPEG frames in frame order (zero-padded names sort correctly); [] if none."""
    folder = frames_dir(root, video_id)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _string_field(path: Path, mat: dict[str, Any], field: str) -> str:
    """MATLAB strings load as 1-element string arrays (or cells of them); unwrap to a plain str."""
    value: Any = mat[field]
    while isinstance(value, np.ndarray):
        if value.size == 0:
            raise PennActionError(path, field, "is empty", _REEXPORT)
        if value.dtype.kind in "US":
            value = "".join(str(v) for v in value.ravel()) if value.ndim > 1 else value.ravel()[0]
        elif value.dtype.kind == "O":
            value = value.ravel()[0]
        else:
            raise PennActionError(path, field, f"is {value.dtype} numbers, expected a string", _REEXPORT)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def _numeric_field(path: Path, mat: dict[str, Any], field: str) -> np.ndarray:
    value = np.asarray(mat[field])
    if value.dtype.kind not in "biuf":
        raise PennActionError(path, field, f"has dtype {value.dtype}, expected numbers", _REEXPORT)
    return value


def _joint_matrix(path: Path, mat: dict[str, Any], field: str) -> np.ndarray:
    value = _numeric_field(path, mat, field)
    if value.ndim != 2 or value.shape[1] != POSE_JOINTS:
        raise PennActionError(
            path, field, f"has shape {value.shape}, expected (frames, {POSE_JOINTS})",
            f"store one row per frame and one column per joint ({', '.join(JOINT_NAMES)})",
        )
    return value


def _load_mat(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PennActionError(
            path, "file", "does not exist",
            f"add labels/{path.name} from the Penn Action release, or remove frames/{path.stem}/ "
            "if the video has no annotation",
        )
    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types for damaged files; all mean the same here
        raise PennActionError(
            path, "file", f"cannot be read as a MATLAB file ({type(exc).__name__}: {exc})",
            "replace it with an intact copy from the Penn Action release or re-save it with save -v7",
        ) from exc


def read_label(root: Path, video_id: str) -> PennLabel:
    """Read and normalise ``labels/<video_id>.mat``; raise PennActionError for anything unusable."""
    return read_label_file(label_path(root, video_id))


def read_label_file(path: Path) -> PennLabel:
    """read_label for a label file outside the official layout; the video id is the file stem."""
    path = Path(path)
    video_id = path.stem
    mat = _load_mat(path)
    for field in REQUIRED_FIELDS:
        if field not in mat:
            raise PennActionError(path, field, "is missing", _REEXPORT)

    x = _joint_matrix(path, mat, "x")
    y = _joint_matrix(path, mat, "y")
    visibility = _joint_matrix(path, mat, "visibility")
    rows = x.shape[0]
    if rows == 0:
        raise PennActionError(
            path, "x", "has 0 rows (an empty video)",
            "remove the video (labels and frames) or re-export its label with one row per frame",
        )
    for name, other in (("y", y), ("visibility", visibility)):
        if other.shape[0] != rows:
            raise PennActionError(
                path, "x", f"has {rows} rows but '{name}' has {other.shape[0]}",
                "re-export the label so every per-frame field has one row per frame",
            )

    action = _string_field(path, mat, "action")
    if action not in ACTIONS:
        raise PennActionError(path, "action", f"is '{action}', not a Penn Action class",
                              f"use one of {', '.join(ACTIONS)}")
    viewpoint = _string_field(path, mat, "pose")
    if viewpoint not in VIEWPOINTS:
        raise PennActionError(path, "pose", f"is '{viewpoint}', not a viewpoint",
                              f"use one of {', '.join(VIEWPOINTS)}")

    dims = _numeric_field(path, mat, "dimensions").ravel()
    if dims.size < 2 or not np.all(np.isfinite(dims[:2])) or np.any(dims[:2] <= 0):
        raise PennActionError(path, "dimensions", f"is {dims.tolist()}, expected [height, width, frames]",
                              "store the frame size in pixels as [H, W, nframes]")

    train_values = _numeric_field(path, mat, "train").ravel()
    if train_values.size != 1 or int(train_values[0]) not in (1, -1):
        raise PennActionError(path, "train", f"is {train_values.tolist()}, expected 1 or -1",
                              "store 1 for the official training split and -1 for the test split")

    return PennLabel(
        video_id=video_id,
        action=action,
        viewpoint=viewpoint,
        x=x.astype(np.float64),
        y=y.astype(np.float64),
        visibility=visibility != 0,
        bbox=_bbox(mat, rows),
        height=int(dims[0]),
        width=int(dims[1]),
        train=int(train_values[0]) == 1,
    )


def _bbox(mat: dict[str, Any], rows: int) -> np.ndarray | None:
    """The person box is advisory (nothing is rejected for it): a box short of rows repeats its
    last row, as in the two real files with one row fewer than frames; a malformed box is None."""
    if "bbox" not in mat:
        return None
    box = np.asarray(mat["bbox"])
    if box.dtype.kind not in "biuf" or box.ndim != 2 or box.shape[1] != 4 or box.shape[0] == 0:
        return None
    box = box.astype(np.float64)
    if box.shape[0] < rows:
        box = np.concatenate([box, np.repeat(box[-1:], rows - box.shape[0], axis=0)])
    return box[:rows]


def frame_problem(label: PennLabel, index: int) -> str | None:
    """Why row `index` of the joints cannot be tokenised (non-finite or negative), else None.

    Checked per frame rather than in read_label so one bad frame quarantines that sample only,
    not the whole video.
    """
    if not 0 <= index < label.num_frames:
        raise IndexError(f"frame index {index} outside 0..{label.num_frames - 1} of video {label.video_id}")
    where = f"labels/{label.video_id}.mat"
    frame = f"row {index} (frames/{label.video_id}/{index + 1:06d}.jpg)"
    for check, what, fix in (
        (lambda v: ~np.isfinite(v), "not finite", "re-annotate the joint or drop the frame"),
        (lambda v: v < 0, "negative", "clamp the coordinate into the image or mark the frame unusable"),
    ):
        for axis, values in (("x", label.x[index]), ("y", label.y[index])):
            bad = np.flatnonzero(check(values))
            if bad.size:
                j = int(bad[0])
                more = f" (and {bad.size - 1} more joints)" if bad.size > 1 else ""
                return (f"{where}: '{axis}' of {JOINT_NAMES[j]} is {values[j]:g} ({what}) in {frame}{more}; "
                        f"fix: {fix}")
    return None


def read_frame(path: Path, min_side: int | None = None) -> np.ndarray:
    """Decode one frame as (H, W, 3) uint8 RGB.

    With `min_side`, the JPEG decoder is asked for a reduced DCT scale (1/2, 1/4, 1/8) whose
    shorter side is still >= min_side: decoding a 640x480 frame at 1/4 or 1/8 is several times
    faster and the pipeline resizes to 64-256 px anyway. Callers rescale joints by the returned
    array's shape against the label's height and width.
    """
    path = Path(path)
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be a positive number of pixels, got {min_side}")
    if not path.is_file():
        raise PennActionError(
            path, "file", "does not exist",
            "re-extract the video's frames as frames/NNNN/000001.jpg ... or remove the video",
        )
    try:
        with Image.open(path) as img:
            if min_side is not None:
                img.draft("RGB", (min_side, min_side))
            return np.array(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PennActionError(
            path, "jpeg", f"cannot be decoded ({exc})",
            "re-extract the frame from the source video, or remove the video if it is damaged",
        ) from exc
