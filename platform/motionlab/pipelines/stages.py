"""The batch stages of the Penn Action graph, shared by the Ray Data pipeline and the sequential baseline.

Each stage looks modalities up in the registry (kind and temporal slot), never by name. Batches are
Ray Data numpy batches: dict of column -> ndarray with the batch on axis 0. Rows with a non-empty
`reason` are quarantined: stages pass them through without running models on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from motionlab.modalities import Kind, Modality
from motionlab.tokenizers.captioners import build_captioner
from motionlab.tokenizers.pose import PoseQuantizer
from motionlab.tokenizers.text import TextTokenizer

Batch = dict[str, np.ndarray]
META_COLUMNS = ("video_id", "frame", "next_frame", "action", "viewpoint", "caption", "split")


def _ok(batch: Batch) -> np.ndarray:
    return np.asarray([r == "" for r in batch["reason"]], dtype=bool)


class CaptionStage:
    """Adds `caption`. A class so the BLIP backend loads once per actor; the template one is cheap."""

    def __init__(self, kind: str, path: str | None, device: str | None = None) -> None:
        self.captioner = build_captioner(kind, Path(path) if path else None, device)
        self.needs_pixels = kind != "template"

    def __call__(self, batch: Batch) -> Batch:
        ok = _ok(batch)
        captions = np.full(len(ok), "", dtype=object)
        if ok.any():
            keys = [f"{v}:{f}" for v, f in zip(batch["video_id"][ok], batch["frame"][ok], strict=True)]
            frames = batch["pixels_current"][ok][:, 0] if self.needs_pixels else None  # (B, S, S, 3)
            captions[ok] = self.captioner(list(batch["action"][ok]), list(batch["viewpoint"][ok]), keys,
                                          frames=frames)
        batch["caption"] = captions
        return batch


def caption_batch(batch: Batch, kind: str, path: str | None) -> Batch:
    """Stateless captions (the template backend): no actor, so it fuses with the decode task."""
    return CaptionStage(kind, path)(batch)


class ImageTokenStage:
    """Pixels of each image modality's slot -> (B, frames * h * w) int32 codes; drops the pixels.

    Each distinct (video, frame) in the batch is encoded once: in a successor chain the next slot of one
    sample is the current slot of the following one, so M3/M4 would otherwise encode most frames twice.
    """

    def __init__(self, kind: str, path: str, modalities: Sequence[Modality], device: str = "cpu") -> None:
        # Imported here: torch takes seconds to import, and the decode tasks that share this module need none of it.
        from motionlab.tokenizers.image import load_image_tokenizer

        self.tokenizer = load_image_tokenizer(kind, Path(path), device)
        self.modalities = [m for m in modalities if m.kind is Kind.IMAGE]
        self.encoded_frames = 0  # frames sent to the tokenizer so far (after de-duplication)

    def __call__(self, batch: Batch) -> Batch:
        ok = _ok(batch)
        n_ok = int(ok.sum())
        frames, slot_index = _distinct_frames(batch, ok, sorted({m.temporal for m in self.modalities}))
        codes = self.tokenizer.encode(frames) if len(frames) else None  # (U, h, w)
        self.encoded_frames += len(frames)
        for m in self.modalities:
            b, f, s = batch[f"pixels_{m.temporal}"].shape[:3]  # (B, F, S, S, 3)
            side = s // self.tokenizer.downsample
            out = np.zeros((b, f * side * side), dtype=np.int32)
            if n_ok:
                out[ok] = codes[slot_index[m.temporal]].reshape(n_ok, -1)
            batch[m.name] = out
        for key in [k for k in batch if k.startswith(("pixels_", "frames_"))]:
            del batch[key]
        return batch


def _slot_frame_numbers(batch: Batch, slot: str) -> np.ndarray | None:
    """(B, F) frame numbers of a pixel slot, or None when the batch does not say which frames they are."""
    if slot == "current":
        return np.asarray(batch["frame"]).reshape(-1, 1)
    return np.asarray(batch[f"frames_{slot}"]) if f"frames_{slot}" in batch else None


def _distinct_frames(batch: Batch, ok: np.ndarray, slots: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The distinct frames of the kept rows' pixel slots, (U, S, S, 3), and per slot (B_ok, F) indices into them."""
    videos = [str(v) for v in np.asarray(batch["video_id"])[ok]]
    seen: dict[tuple, int] = {}
    picks: list[np.ndarray] = []
    slot_index: dict[str, np.ndarray] = {}
    for slot in slots:
        pixels = batch[f"pixels_{slot}"][ok]  # (B_ok, F, S, S, 3)
        numbers = _slot_frame_numbers(batch, slot)
        numbers = numbers[ok] if numbers is not None else None
        index = np.empty(pixels.shape[:2], dtype=np.int64)
        for i, j in np.ndindex(*index.shape):
            # unnumbered frames get a key of their own position: never shared
            key = (videos[i], int(numbers[i, j])) if numbers is not None else (slot, i, j)
            if key not in seen:
                seen[key] = len(picks)
                picks.append(pixels[i, j])
            index[i, j] = seen[key]
        slot_index[slot] = index
    side = batch[f"pixels_{slots[0]}"].shape[2] if slots else 0
    return (np.stack(picks) if picks else np.zeros((0, side, side, 3), np.uint8)), slot_index


def pose_tokens(batch: Batch, modalities: Sequence[Modality], bins: int, canvas: int) -> Batch:
    """Joints of each pose modality's slot -> (B, frames * 39) int32; drops the joints."""
    quantizer = PoseQuantizer(bins=bins, canvas=canvas)
    ok = _ok(batch)
    for m in (m for m in modalities if m.kind is Kind.POSE):
        joints = batch[f"joints_{m.temporal}"]  # (B, F, 13, 3): x, y, visible
        tokens = np.zeros((joints.shape[0], joints.shape[1] * 39), dtype=np.int32)
        if ok.any():
            j = joints[ok]
            tokens[ok] = quantizer.encode(j[..., 0], j[..., 1], j[..., 2] > 0.5).reshape(int(ok.sum()), -1)
        batch[m.name] = tokens
    for key in [k for k in batch if k.startswith("joints_")]:
        del batch[key]
    return batch


@dataclass(frozen=True)
class FinalSpec:
    """Lengths and vocabularies the written tokens must respect."""

    modalities: tuple[Modality, ...]
    lengths: dict[str, int]
    vocab: dict[str, int]
    text_tokenizer: str | None  # tokenizer.json used for text modalities


def _violation(name: str, tokens: np.ndarray, length: int, vocab: int) -> str:
    if tokens.shape[-1] != length:
        return f"{name}: {tokens.shape[-1]} tokens but max_seq_len is {length}; fix: align the config's grid"
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab):
        return (f"{name}: token {int(tokens.max() if tokens.max() >= vocab else tokens.min())} outside "
                f"[0, {vocab}); fix: raise vocab_sizes or use a tokenizer with fewer codes")
    return ""


def finalize(batch: Batch, spec: FinalSpec) -> pa.Table:
    """Encode captions, validate every modality, and emit Arrow list<int32> columns (one per modality)."""
    reasons = np.asarray(batch["reason"], dtype=object).copy()
    n = len(reasons)
    columns: dict[str, Any] = {}
    text = TextTokenizer.load(Path(spec.text_tokenizer)) if spec.text_tokenizer else None
    for m in spec.modalities:
        length = spec.lengths[m.name]
        if m.kind is Kind.TEXT:
            if text is None:
                raise ValueError(f"{m.name}: a text modality needs a text tokenizer")
            captions = [str(c) for c in batch["caption"]]
            tokens = text.encode(captions, max_len=length)  # (B, L)
            # Truncation is legitimate for text but never silent: flag every row it touched.
            columns[f"{m.name}_truncated"] = pa.array(text.lengths(captions) > length)
        else:
            tokens = np.asarray(batch[m.name], dtype=np.int64).reshape(n, -1)  # (B, L)
        for i in range(n):
            if reasons[i] == "":
                reasons[i] = _violation(m.name, tokens[i], length, spec.vocab[m.name])
        columns[m.name] = pa.array([row.astype(np.int32) for row in tokens], type=pa.list_(pa.int32()))
    for col in META_COLUMNS:
        values = batch[col]
        columns[col] = pa.array(values.tolist() if isinstance(values, np.ndarray) else list(values))
    columns["reason"] = pa.array([str(r) for r in reasons], type=pa.string())
    return pa.table(columns)


class VideoTokenStage:
    """A video's whole journey (decode, template captions, pose and image tokens) inside one actor.

    On CPU-only nodes this is one process per core, like a plain process pool: frames never cross the
    object store and no third process competes for the cores (benchmarks/pipeline_throughput.py).
    With GPUs the graph keeps decoding in CPU tasks and the image model in GPU actors instead.
    """

    def __init__(self, spec: Any, modalities: Sequence[Modality], image_kind: str | None, image_path: str | None,
                 pose_bins: int, canvas: int) -> None:
        from motionlab.pipelines.video_samples import videos_to_samples

        self.decode = videos_to_samples
        self.spec = spec
        self.pose = {"modalities": modalities, "bins": pose_bins, "canvas": canvas}
        self.captions = CaptionStage("template", None)
        self.images = ImageTokenStage(image_kind, image_path, modalities) if image_kind and image_path else None

    def __call__(self, batch: Batch) -> Batch:
        out = self.decode(batch, self.spec)  # columns of the videos' samples, or {} when there are none
        if not out:
            return out
        out = pose_tokens(self.captions(out), **self.pose)
        return self.images(out) if self.images is not None else out
