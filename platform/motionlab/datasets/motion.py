"""Reader for text-motion datasets in the HumanML3D layout (KIT-ML and HumanML3D).

Layout under ROOT: ``new_joint_vecs/<id>.npy`` (T x D features), ``new_joints/<id>.npy``
(T x J x 3, not needed to train), ``texts/<id>.txt``, ``Mean.npy``, ``Std.npy`` and
``train.txt`` / ``val.txt`` / ``test.txt`` (one id a line).

A text line is ``caption#tok/POS tok/POS ...#start#end`` with times in seconds; ``0.0#0.0`` means
the whole clip. As in the public text-to-motion loaders, a caption with its own times makes its
own sub-clip (frames ``int(start * fps)`` to ``int(end * fps)``), and clips and sub-clips outside
the length filter are dropped. Unlike them, sub-clip ids are deterministic (``<id>@<from>-<to>``),
captions of the same sub-clip share one sample, and the dataset's own frame rate is used (the
public loaders multiply by 20 for KIT-ML too).

Real dataset folders carry defects (NaN frames, ids in a split file without a file, empty text
files). A defect of one clip skips that clip with its reason, counted in `MotionSplit.summary`;
a defect of the whole dataset (no split file, Mean/Std of another layout) raises
`MotionDataError` naming the file, the field and the fix.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from motionlab.datasets.motion_features import (
    HUMANML3D,
    KIT,
    SPECS,
    MotionDatasetSpec,
    canonicalise,
    feature_dim,
    joints_to_features,
    recover_joints,
)

__all__ = [
    "HUMANML3D", "KIT", "SPECS", "Caption", "MotionDataError", "MotionDatasetSpec", "MotionSample",
    "MotionSplit", "MotionStats", "ReadSummary", "Skip", "canonicalise", "feature_dim", "joints_to_features",
    "parse_caption_line", "read_motion_dataset", "read_stats", "recover_joints",
]

SPLITS = ("train", "val", "test")


class MotionDataError(ValueError):
    """A dataset-level defect, as one line: ``<file>: <field> <problem>; fix: <fix>``."""

    def __init__(self, path: Path | str, field: str, problem: str, fix: str):
        self.path, self.field, self.problem, self.fix = Path(path), field, problem, fix
        super().__init__(f"{path}: {field} {problem}; fix: {fix}")

    def __reduce__(self):  # picklable across Ray workers
        return (type(self), (self.path, self.field, self.problem, self.fix))


@dataclass(frozen=True)
class Caption:
    text: str
    tokens: tuple[str, ...]  # "word/POS"
    start: float = 0.0  # seconds; 0, 0 = the whole clip
    end: float = 0.0


@dataclass(frozen=True, eq=False)
class MotionSample:
    id: str  # the file id, or "<file id>@<from>-<to>" for a sub-clip
    source_id: str
    features: np.ndarray  # (T, D) float32, z-scored when the split was read with normalize=True
    captions: tuple[Caption, ...]
    start_frame: int = 0  # where the sample begins in its source clip

    @property
    def length(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class Skip:
    id: str
    reason: str  # a short key counted in the summary, e.g. "too_short"
    message: str  # names the file, what is wrong and the fix


@dataclass
class ReadSummary:
    """What a read kept and what it skipped, with why; print it after a read."""

    split: str
    listed: int = 0
    kept: int = 0  # samples, sub-clips included
    sub_clips: int = 0
    skipped: list[Skip] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped))

    def skip(self, id_: str, reason: str, message: str) -> None:
        self.skipped.append(Skip(id_, reason, message))

    def __str__(self) -> str:
        lines = [f"{self.split}: kept {self.kept} samples ({self.sub_clips} caption sub-clips) from "
                 f"{self.listed} listed ids; skipped {len(self.skipped)}"]
        for reason, count in sorted(self.counts().items()):
            example = next(s for s in self.skipped if s.reason == reason)
            lines.append(f"  {reason}: {count} (e.g. {example.message})")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class MotionStats:
    mean: np.ndarray  # (D,) float32
    std: np.ndarray  # (D,) float32

    def normalize(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def denormalize(self, features: np.ndarray) -> np.ndarray:
        return (features * self.std + self.mean).astype(np.float32)


@dataclass(frozen=True, eq=False)
class MotionSplit:
    spec: MotionDatasetSpec
    split: str
    samples: list[MotionSample]
    summary: ReadSummary
    stats: MotionStats | None  # what normalized the features (None: raw features)

    def __len__(self) -> int:
        return len(self.samples)


def read_stats(root: Path, spec: MotionDatasetSpec) -> MotionStats:
    """Mean.npy and Std.npy, checked against the spec's feature layout."""
    root = Path(root)
    arrays = []
    for name in ("Mean.npy", "Std.npy"):
        path = root / name
        if not path.is_file():
            raise MotionDataError(path, "file", "does not exist",
                                  "copy the dataset's Mean.npy/Std.npy next to new_joint_vecs/, or read with "
                                  "normalize=False")
        value = np.load(path)
        if value.shape != (spec.feature_dim,):
            raise MotionDataError(
                path, "shape", f"is {value.shape} but {spec.name} features have ({spec.feature_dim},) "
                f"({spec.num_joints} joints)",
                "use the statistics of this dataset (KIT-ML: 251, HumanML3D: 263) or pass the matching spec")
        if not np.isfinite(value).all():
            raise MotionDataError(path, "values", "contain NaN or infinite entries",
                                  "recompute the statistics on the training split")
        arrays.append(value.astype(np.float32))
    mean, std = arrays
    if (std <= 0).any():
        bad = np.flatnonzero(std <= 0)[:5].tolist()
        raise MotionDataError(root / "Std.npy", "values", f"are <= 0 at columns {bad}",
                              "recompute Std.npy on the training split (a constant column needs a floor such "
                              "as 1e-2)")
    return MotionStats(mean, std)


def parse_caption_line(line: str) -> Caption:
    """``caption#tok/POS ...#start#end`` -> Caption; ValueError saying what is malformed."""
    parts = line.strip().split("#")
    if len(parts) < 4:
        raise ValueError(f"has {len(parts)} '#'-separated fields, expected 4 (caption#tokens#start#end)")
    text, tokens, start_s, end_s = parts[0].strip(), parts[1].split(), parts[2], parts[3]
    if not text:
        raise ValueError("has an empty caption")
    try:
        start, end = float(start_s), float(end_s)
    except ValueError as exc:
        raise ValueError(f"has times {start_s!r}, {end_s!r} that are not numbers") from exc
    start = 0.0 if math.isnan(start) else start
    end = 0.0 if math.isnan(end) else end
    return Caption(text, tuple(tokens), start, end)


def _read_split_ids(root: Path, split: str) -> list[str]:
    path = root / f"{split}.txt"
    if not path.is_file():
        raise MotionDataError(path, "file", "does not exist",
                              f"add {split}.txt (one motion id a line) or read one of the splits present: "
                              + ", ".join(s for s in SPLITS if (root / f"{s}.txt").is_file()))
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_motion_dataset(
    root: Path,
    spec: MotionDatasetSpec,
    split: str,
    normalize: bool = True,
    min_length: int | None = None,
    max_length: int | None = None,
) -> MotionSplit:
    """Read one split: clips and caption sub-clips within ``min_length <= T < max_length`` frames.

    With `normalize`, features are z-scored with Mean.npy/Std.npy (checked first, so a wrong
    statistics file fails before any clip is read).
    """
    root = Path(root)
    if not (root / "new_joint_vecs").is_dir():
        raise MotionDataError(root, "folder", "has no new_joint_vecs/",
                              "point at the dataset root that holds new_joint_vecs/, texts/ and the split files, "
                              "or generate one with `motionlab synth kit-ml --out DIR`")
    lo = spec.min_length if min_length is None else min_length
    hi = spec.max_length if max_length is None else max_length
    stats = read_stats(root, spec) if normalize else None
    ids = _read_split_ids(root, split)
    summary = ReadSummary(split=split, listed=len(ids))
    samples: list[MotionSample] = []
    for motion_id in ids:
        samples.extend(_read_clip(root, spec, motion_id, lo, hi, summary))
    if stats is not None:
        samples = [MotionSample(s.id, s.source_id, stats.normalize(s.features), s.captions, s.start_frame)
                   for s in samples]
    summary.kept = len(samples)
    summary.sub_clips = sum(s.id != s.source_id for s in samples)
    return MotionSplit(spec, split, samples, summary, stats)


def _read_clip(root: Path, spec: MotionDatasetSpec, motion_id: str, lo: int, hi: int,
               summary: ReadSummary) -> list[MotionSample]:
    feat_path = root / "new_joint_vecs" / f"{motion_id}.npy"
    text_path = root / "texts" / f"{motion_id}.txt"
    name = f"new_joint_vecs/{motion_id}.npy"
    if not feat_path.is_file():
        summary.skip(motion_id, "missing_features",
                     f"{name}: listed in {summary.split}.txt but absent; fix: restore the file or remove the id")
        return []
    try:
        features = np.load(feat_path)
    except Exception as exc:  # numpy raises several types for damaged files
        summary.skip(motion_id, "unreadable_features",
                     f"{name}: cannot be read ({type(exc).__name__}); fix: re-export it with numpy.save")
        return []
    if features.ndim != 2 or features.shape[1] != spec.feature_dim:
        summary.skip(motion_id, "wrong_dimension",
                     f"{name}: shape {features.shape}, expected (frames, {spec.feature_dim}) for {spec.name}; "
                     "fix: use the spec of the dataset it comes from")
        return []
    bad_rows = ~np.isfinite(features).all(1)
    if bad_rows.any():
        summary.skip(motion_id, "non_finite",
                     f"{name}: {int(bad_rows.sum())} of {len(features)} frames hold NaN or infinite values "
                     f"(first at frame {int(np.argmax(bad_rows))}); fix: recompute its features from new_joints")
        return []
    if not (lo <= len(features) < hi):
        reason = "too_short" if len(features) < lo else "too_long"
        summary.skip(motion_id, reason, f"{name}: {len(features)} frames, outside {lo} <= T < {hi}")
        return []
    if not text_path.is_file():
        summary.skip(motion_id, "missing_text",
                     f"texts/{motion_id}.txt: absent; fix: add its captions or remove the id from {summary.split}.txt")
        return []

    whole: list[Caption] = []
    parts: dict[tuple[int, int], list[Caption]] = {}
    for number, line in enumerate(text_path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            caption = parse_caption_line(line)
        except ValueError as exc:
            summary.skip(f"{motion_id}:{number}", "bad_caption_line",
                         f"texts/{motion_id}.txt line {number}: {exc}; fix: write caption#tok/POS ...#start#end")
            continue
        if caption.start == 0.0 and caption.end == 0.0:
            whole.append(caption)
            continue
        a, b = int(caption.start * spec.fps), int(caption.end * spec.fps)
        n = len(features[a:b])
        if not (lo <= n < hi):
            summary.skip(f"{motion_id}@{a}-{b}", "sub_clip_length",
                         f"texts/{motion_id}.txt line {number}: {caption.start:g}-{caption.end:g} s gives {n} "
                         f"frames, outside {lo} <= T < {hi}")
            continue
        parts.setdefault((a, b), []).append(caption)

    out = []
    if whole:
        out.append(MotionSample(motion_id, motion_id, features.astype(np.float32), tuple(whole)))
    for (a, b), captions in parts.items():
        out.append(MotionSample(f"{motion_id}@{a}-{b}", motion_id, features[a:b].astype(np.float32),
                                tuple(captions), start_frame=a))
    if not out:
        summary.skip(motion_id, "no_captions",
                     f"texts/{motion_id}.txt: no usable caption; fix: add lines caption#tok/POS ...#0.0#0.0")
    return out
