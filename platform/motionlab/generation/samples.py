"""Generated samples of a trained 4M model as GIFs: chained roll-outs against the video's real future.

For a variant with "next" modalities (M2..M4) a test sample's current frame and pose go in, the model
predicts the successor (MaskGIT), and the prediction's last frame is fed back as the next input, N times;
the ground truth is the same video's chain of successor samples in the test split. A variant without
"next" modalities (M1) shows each modality of a kind with a picture (pose, image) decoded from the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from motionlab import modalities as registry
from motionlab.config import ExperimentConfig
from motionlab.generation.gifs import frames_gif, skeleton_gif, split_frames
from motionlab.generation.limits import token_limits
from motionlab.generation.maskgit import decode_modality
from motionlab.modalities import Kind
from motionlab.models.fourm import FourM
from motionlab.tokenizers.pose import PoseQuantizer
from motionlab.training.data import PreparedData, token_arrays, valid_lengths

ROLLOUT_STEPS = 6  # the team's M3 report chains six predictions
DECODE = {"steps": 8, "temperature": 0.0}  # greedy MaskGIT: a GIF should show the model's best guess


def _chain_rows(test: pd.DataFrame, start: int, steps: int) -> list[int]:
    """Row indices of a video's successor chain from `start`, following `next_frame`, at most `steps` long."""
    by_key = {(v, int(f)): i for i, (v, f) in enumerate(zip(test["video_id"], test["frame"], strict=True))}
    chain, row = [start], start
    while len(chain) < steps:
        key = (test["video_id"].iloc[row], int(test["next_frame"].iloc[row]))
        if key not in by_key:
            break
        row = by_key[key]
        chain.append(row)
    return chain


def _inputs(cfg: ExperimentConfig, tokens: dict[str, np.ndarray], names: list[str], eos: int | None
            ) -> dict[str, torch.Tensor]:
    """One sample's rows as (1, L) tensors; text trimmed to its real length so padding is never an input."""
    lens = valid_lengths(tokens, eos)
    return {n: torch.from_numpy(tokens[n][:, : int(lens[n][0])]) for n in names}


class SampleWriter:
    """Holds what every GIF needs: the model, the decoders, the test split."""

    def __init__(self, model: FourM, cfg: ExperimentConfig, data: PreparedData) -> None:
        self.model, self.cfg, self.data = model, cfg, data
        self.test = data.read_pandas("test").reset_index(drop=True)
        self.eos = data.text_eos()
        self.quantizer = PoseQuantizer(cfg.data.pose_bins, cfg.data.image_size)
        self.limits = {n: torch.from_numpy(token_limits(cfg, n)) for n in cfg.modalities}
        self._image = None
        self.generator = torch.Generator().manual_seed(cfg.data.seed)

    def image_tokenizer(self):
        if self._image is None:
            from motionlab.training.evaluation import image_tokenizer

            self._image = image_tokenizer(self.data)
        return self._image

    def frames(self, rows: np.ndarray) -> np.ndarray:
        """(T, F*h*w) image-token rows -> (T*F, H, W, 3) frames."""
        side = self.cfg.data.image_size // self.cfg.data.image_downsample
        return self.image_tokenizer().decode(rows.reshape(-1, side, side))

    def tokens(self, rows: list[int]) -> dict[str, np.ndarray]:
        part = self.test.iloc[rows]
        return token_arrays({n: part[n].to_numpy() for n in self.cfg.modalities}, list(self.cfg.modalities))

    def decode(self, inputs: dict[str, torch.Tensor], target: str) -> np.ndarray:
        ids = decode_modality(self.model, inputs, target, limits=self.limits[target], generator=self.generator,
                              **DECODE)
        return ids.numpy()  # (1, L)

    def picture(self, kind: Kind, true: np.ndarray, pred: np.ndarray, frames: int, path: Path) -> Path:
        """(T, L) rows of one kind -> a ground truth vs prediction GIF, frame by frame."""
        if kind is Kind.POSE:
            return skeleton_gif(split_frames(true, frames, Kind.POSE).reshape(-1, true.shape[1] // frames),
                                split_frames(pred, frames, Kind.POSE).reshape(-1, pred.shape[1] // frames),
                                self.quantizer, path)
        return frames_gif(self.frames(true), self.frames(pred), path)

    def rollout(self, start: int, folder: Path, index: int) -> list[Path]:
        """Chained prediction of every next modality from one test sample, against its video's real chain."""
        from motionlab.training.evaluation import next_pairs

        pairs = next_pairs(self.cfg)
        chain = _chain_rows(self.test, start, ROLLOUT_STEPS)
        truth = self.tokens(chain)
        current = self.tokens([start])
        inputs = [n for n in self.cfg.modalities if registry.get(n).temporal != "next"]
        preds: dict[str, list[np.ndarray]] = {p.target: [] for p in pairs}
        for _ in chain:
            given = _inputs(self.cfg, current, inputs, self.eos)
            for pair in pairs:
                row = self.decode(given, pair.target)  # (1, L_next)
                preds[pair.target].append(row[0])
                # the successor is the last frame the next modality spans: it becomes the current input
                current[pair.current] = row[:, -current[pair.current].shape[1]:]
        paths = []
        frames = self.cfg.data.num_next_frames
        for pair in pairs:
            kind = pair.kind
            if kind not in (Kind.POSE, Kind.IMAGE):
                continue
            suffix = "pose" if kind is Kind.POSE else "frames"
            paths.append(self.picture(kind, truth[pair.target], np.stack(preds[pair.target]), frames,
                                      folder / f"rollout_{index:02d}_{suffix}.gif"))
        return paths

    def reconstructions(self, rows: list[int], folder: Path) -> list[Path]:
        """Each pictured modality decoded from all the others, one sample per GIF frame (variants without next)."""
        tokens = self.tokens(rows)
        paths = []
        for target in self.cfg.modalities:
            kind = registry.get(target).kind
            if kind not in (Kind.POSE, Kind.IMAGE):
                continue
            others = [n for n in self.cfg.modalities if n != target]
            pred = np.concatenate([self.decode(_inputs(self.cfg, {k: v[i : i + 1] for k, v in tokens.items()},
                                                       others, self.eos), target) for i in range(len(rows))])
            suffix = "pose" if kind is Kind.POSE else "frames"
            paths.append(self.picture(kind, tokens[target], pred, 1, folder / f"{target}_{suffix}.gif"))
        return paths


def start_rows(test: pd.DataFrame, samples: int) -> list[int]:
    """The earliest sample of the first `samples` test videos: deterministic, one per video."""
    first = test.reset_index(drop=True).sort_values(["video_id", "frame"]).groupby("video_id").head(1)
    return [int(i) for i in first.index[:samples]]


def write_sample_gifs(model: FourM, cfg: ExperimentConfig, data: PreparedData, folder: Path,
                      samples: int = 8) -> list[Path]:
    """GIFs of generated samples into `folder`; returns their paths (none when the test split is empty)."""
    from motionlab.training.evaluation import next_pairs

    folder.mkdir(parents=True, exist_ok=True)
    writer = SampleWriter(model.eval(), cfg, data)
    if writer.test.empty or samples < 1:
        return []
    starts = start_rows(writer.test, samples)
    if next_pairs(cfg):
        return [p for i, row in enumerate(starts) for p in writer.rollout(row, folder, i)]
    return writer.reconstructions(starts, folder)
