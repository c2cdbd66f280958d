"""Find, or train on the dataset's own frames, the image tokenizer a config asks for."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from motionlab.config import ConfigError, ExperimentConfig
from motionlab.datasets.penn_action import PennActionError, frame_paths, read_frame, read_label
from motionlab.pipelines.geometry import crop_frame
from motionlab.tokenizers.fsq import train_fsq_tokenizer
from motionlab.workspace import Workspace


def fsq_dir(cfg: ExperimentConfig, workspace: Workspace) -> Path:
    """Workspace folder of the FSQ tokenizer for this geometry and code space."""
    d = cfg.data
    levels = "-".join(str(v) for v in d.fsq_levels)
    return workspace.tokenizers / f"fsq-{d.image_size}px-d{d.image_downsample}-l{levels}"


def sample_frames(
    source: Path, video_ids: Sequence[str], size: int, max_frames: int, seed: int = 0
) -> np.ndarray:
    """Up to `max_frames` cropped frames spread evenly over the videos -> (N, size, size, 3) uint8.

    Videos or frames that cannot be read are skipped: the pipeline quarantines them later.
    """
    per_video = max(1, max_frames // max(1, len(video_ids)))
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    for vid in video_ids:
        try:
            label = read_label(source, vid)
        except PennActionError:
            continue
        paths = frame_paths(source, vid)
        if not paths:
            continue
        for i in np.sort(rng.choice(len(paths), size=min(per_video, len(paths)), replace=False)):
            try:
                frames.append(crop_frame(read_frame(paths[i], min_side=size), label.width, label.height, size))
            except PennActionError:
                continue
        if len(frames) >= max_frames:
            break
    if not frames:
        raise PennActionError(source / "frames", "frames", "no readable frames to train the image tokenizer on",
                              "check the --source folder holds frames/NNNN/*.jpg")
    return np.stack(frames[:max_frames])


def file_digest(path: Path) -> str:
    """Short sha256 of a file, to name the exact tokenizer weights in a manifest."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def ensure_image_tokenizer(
    cfg: ExperimentConfig,
    source: Path,
    video_ids: Sequence[str],
    workspace: Workspace,
    log: Callable[[str], None] = print,
    steps: int = 300,
    max_frames: int = 2048,
) -> Path:
    """The directory of the image tokenizer to use; trains the FSQ one first when the workspace lacks it."""
    d = cfg.data
    if d.image_tokenizer_path:
        path = Path(d.image_tokenizer_path).expanduser()
        if not path.exists():
            raise ConfigError(f"{cfg.source}: data.image_tokenizer_path: {path} does not exist; "
                              "fix: point it at a local folder holding the tokenizer files")
        return path
    if d.image_tokenizer != "fsq":
        raise ConfigError(f"{cfg.source}: data.image_tokenizer_path: the '{d.image_tokenizer}' tokenizer "
                          "has no default; fix: set data.image_tokenizer_path to its local folder "
                          "(encoder.jit and decoder.jit for cosmos)")
    out = fsq_dir(cfg, workspace)
    if (out / "model.pt").exists():
        return out
    log(f"no FSQ image tokenizer for {d.image_size}px/{d.image_downsample}x in {workspace.tokenizers}; "
        f"training one on the dataset's frames first ({steps} steps)")
    frames = sample_frames(source, video_ids, d.image_size, max_frames, seed=d.seed)
    metrics = train_fsq_tokenizer(frames, out, levels=tuple(d.fsq_levels), downsample=d.image_downsample,
                                  steps=steps, seed=d.seed, log=log)
    log(f"image tokenizer saved to {out}: reconstruction SSIM {metrics['recon_ssim']:.3f}")
    return out
