"""NVIDIA Cosmos discrete image tokenizer (DI16x16) from its TorchScript files, behind the ImageTokenizer API.

Cosmos ships as two self-contained TorchScript programs, so no Cosmos package is needed: the encoder
takes (B, 3, H, W) in [-1, 1] and returns (indices, codes, ...), the decoder takes the indices back.
Its FSQ levels (8, 8, 8, 5, 5, 5) give 64,000 codes, the same code space as a locally trained FSQ.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from motionlab.tokenizers.image import check_frames, check_tokens, frames_to_tensor, tensor_to_frames

COSMOS_FILES = ("encoder.jit", "decoder.jit")
COSMOS_DOWNSAMPLE = 16
COSMOS_CODEBOOK_SIZE = 64000


class CosmosTokenizer:
    """Runs bf16 on CUDA (what the released weights were trained in) and fp32 on CPU (bf16 is slow there)."""

    name = "cosmos"
    downsample = COSMOS_DOWNSAMPLE

    def __init__(self, path: Path, device: str = "cpu", codebook_size: int = COSMOS_CODEBOOK_SIZE) -> None:
        path = Path(path)
        missing = [f for f in COSMOS_FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"Cosmos tokenizer folder {path} lacks {', '.join(missing)}; put the TorchScript files "
                "encoder.jit and decoder.jit of nvidia/Cosmos-0.1-Tokenizer-DI16x16 there, or set the "
                "image tokenizer kind to 'fsq' to train a local one"
            )
        self.path = path
        self.device = torch.device(device)
        self.codebook_size = int(codebook_size)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        with warnings.catch_warnings():
            # torch marks TorchScript deprecated, but it is the only format Cosmos is released in
            warnings.simplefilter("ignore", DeprecationWarning)
            self._encoder = self._load(path / "encoder.jit")
            self._decoder = self._load(path / "decoder.jit")

    def _load(self, file: Path) -> torch.jit.ScriptModule:
        return torch.jit.load(str(file), map_location=self.device).to(self.dtype).eval()

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, H/16, W/16) int32."""
        frames = check_frames(frames, self.downsample, "cosmos encode")
        x = frames_to_tensor(frames, self.device, self.dtype)  # (B, 3, H, W)
        out = self._encoder(x)
        indices = out[0] if isinstance(out, tuple | list) else out  # (B, h, w)
        b, h, w = frames.shape[:3]
        expected = (b, h // self.downsample, w // self.downsample)
        if tuple(indices.shape) != expected:
            raise ValueError(
                f"Cosmos encoder in {self.path} returned indices of shape {tuple(indices.shape)}, expected "
                f"{expected}: is it a DI16x16 (discrete, 16x16) tokenizer?"
            )
        return indices.to(torch.int32).cpu().numpy()

    @torch.inference_mode()
    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(B, h, w) int -> (B, 16h, 16w, 3) uint8."""
        tokens = check_tokens(tokens, self.codebook_size, "cosmos decode")
        idx = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int32)).to(self.device)  # (B, h, w)
        x = self._decoder(idx)  # (B, 3, H, W) in [-1, 1]
        if isinstance(x, tuple | list):
            x = x[0]
        return tensor_to_frames(x)
