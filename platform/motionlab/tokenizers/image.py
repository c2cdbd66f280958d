"""The one interface the pipeline and the models see for image tokenizers (Cosmos TorchScript or trained FSQ).

Both map uint8 frames to a grid of integer codes and back, so the pipeline's actor pool, the modality
registry (grid side = image_size / downsample) and the GIF rendering never ask which one is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

IMAGE_TOKENIZER_KINDS = ("fsq", "cosmos")


@runtime_checkable
class ImageTokenizer(Protocol):
    name: str  # 'fsq' | 'cosmos'
    codebook_size: int
    downsample: int  # pixels per token side

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, H/d, W/d) int32."""
        ...

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(B, h, w) int -> (B, H, W, 3) uint8."""
        ...


def check_frames(frames: np.ndarray, downsample: int, who: str) -> np.ndarray:
    """Reject frames a tokenizer would silently crop or misread, with the shape that was expected."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{who}: expected frames of shape (B, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{who}: expected uint8 frames, got {frames.dtype}")
    h, w = frames.shape[1:3]
    if h % downsample or w % downsample:
        raise ValueError(
            f"{who}: frame size {h}x{w} is not a multiple of the tokenizer's downsample {downsample}; "
            "resize/crop frames to a multiple of it first"
        )
    return frames


def check_tokens(tokens: np.ndarray, codebook_size: int, who: str) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 3:
        raise ValueError(f"{who}: expected tokens of shape (B, h, w), got {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{who}: expected integer tokens, got {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= codebook_size):
        raise ValueError(
            f"{who}: token ids must lie in [0, {codebook_size}), got [{tokens.min()}, {tokens.max()}]"
        )
    return tokens


def frames_to_tensor(frames: np.ndarray, device: str | torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) in [-1, 1], the range both tokenizers were trained on."""
    x = torch.from_numpy(np.array(frames, copy=True)).to(device)  # Ray's zero-copy batches are read-only
    return (x.permute(0, 3, 1, 2).to(dtype) / 127.5 - 1.0).contiguous()


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    x = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def load_image_tokenizer(kind: str, path: Path, device: str = "cpu") -> ImageTokenizer:
    """Open the configured image tokenizer from a local folder; missing files fail with the fix."""
    path = Path(path)
    if kind == "fsq":
        from motionlab.tokenizers.fsq import FSQTokenizer

        return FSQTokenizer.load(path, device=device)
    if kind == "cosmos":
        from motionlab.tokenizers.cosmos import CosmosTokenizer

        return CosmosTokenizer(path, device=device)
    raise ValueError(
        f"unknown image tokenizer kind '{kind}'; expected one of {', '.join(IMAGE_TOKENIZER_KINDS)}"
    )
