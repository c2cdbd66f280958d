"""Tiny local stand-ins for the pretrained models, built from code so tests never need weights or a hub.

`write_tiny_cosmos` writes TorchScript files with the Cosmos DI signature (encoder: (B, 3, H, W) in
[-1, 1] -> (indices int32 (B, H/d, W/d), codes); decoder: indices -> (B, 3, H, W)), so the loader, the
dtype handling and the pipeline's actor code run exactly as with the real files. Its "codec" is an
average colour per d x d patch quantised FSQ-style to L levels per channel (L^3 <= codebook_size):
crude, but exact enough that a flat-colour frame survives a round trip within one quantisation step.

`write_tiny_blip` saves a randomly initialised, few-kilobyte BLIP captioner and its processor with
`save_pretrained`, the same layout as a downloaded checkpoint, so `BlipCaptioner` loads it offline.
"""

# no `from __future__ import annotations` here: TorchScript reads the annotations at script time

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TINY_BLIP_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[DEC]",
    *"a an the person man woman athlete is doing playing swinging lifting jumping in on of with and "
    "front side back view bat ball club guitar rope barbell court gym field".split(),
]


def _levels_per_channel(codebook_size: int) -> int:
    levels = round(codebook_size ** (1 / 3))
    while levels**3 > codebook_size:
        levels -= 1
    if levels < 2:
        raise ValueError(f"tiny Cosmos needs codebook_size >= 8, got {codebook_size}")
    return levels


class TinyCosmosEncoder(nn.Module):
    def __init__(self, downsample: int, levels: int) -> None:
        super().__init__()
        self.downsample = downsample
        self.levels = levels
        self.register_buffer(
            "basis", torch.tensor([levels * levels, levels, 1], dtype=torch.int64).view(1, 3, 1, 1)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # x: (B, 3, H, W) in [-1, 1] -> indices (B, H/d, W/d) int32, codes (B, 3, H/d, W/d)
        z = F.avg_pool2d(x, self.downsample).clamp(-1.0, 1.0)
        q = torch.round((z + 1.0) * 0.5 * (self.levels - 1))
        indices = (q.long() * self.basis).sum(dim=1).to(torch.int32)
        codes = q / (self.levels - 1) * 2.0 - 1.0
        return indices, codes


class TinyCosmosDecoder(nn.Module):
    def __init__(self, downsample: int, levels: int) -> None:
        super().__init__()
        self.downsample = downsample
        self.levels = levels
        # a float buffer so `.to(dtype)` decides the output dtype, as with the real decoder's weights
        self.register_buffer("scale", torch.tensor(2.0 / (levels - 1)))

    def forward(self, indices: Tensor) -> Tensor:
        # indices (B, h, w) int -> (B, 3, h*d, w*d) in [-1, 1]
        idx = indices.long()
        lv = self.levels
        q = torch.stack([(idx // (lv * lv)) % lv, (idx // lv) % lv, idx % lv], dim=1).to(self.scale.dtype)
        z = q * self.scale - 1.0
        return F.interpolate(z, scale_factor=float(self.downsample), mode="nearest")


def write_tiny_cosmos(dir: Path, downsample: int = 16, codebook_size: int = 64000) -> Path:
    """Write encoder.jit and decoder.jit into `dir`; returns `dir`."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    levels = _levels_per_channel(codebook_size)
    torch.jit.save(torch.jit.script(TinyCosmosEncoder(downsample, levels)), str(dir / "encoder.jit"))
    torch.jit.save(torch.jit.script(TinyCosmosDecoder(downsample, levels)), str(dir / "decoder.jit"))
    return dir


def write_tiny_blip(dir: Path) -> Path:
    """Save a tiny BlipForConditionalGeneration + BlipProcessor (32 x 32 images) into `dir`; returns `dir`."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipProcessor,
    )

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "vocab.txt").write_text("\n".join(TINY_BLIP_VOCAB) + "\n")
    # BLIP's decoder starts from [DEC] (its bos) and stops at [SEP]; the ids must match the config below
    tokenizer = BertTokenizer.from_pretrained(dir, local_files_only=True, bos_token="[DEC]")
    ids = {t: TINY_BLIP_VOCAB.index(t) for t in ("[PAD]", "[SEP]", "[DEC]")}
    try:  # transformers >= 5: the PIL backend needs no torchvision
        from transformers import BlipImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import BlipImageProcessor as ImageProcessor
    image_processor = ImageProcessor(size={"height": 32, "width": 32})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = BlipConfig(
        text_config={
            "vocab_size": len(TINY_BLIP_VOCAB),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "pad_token_id": ids["[PAD]"],
            "bos_token_id": ids["[DEC]"],
            "sep_token_id": ids["[SEP]"],
            "eos_token_id": ids["[SEP]"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    with torch.random.fork_rng(devices=[]):  # fixed weights without disturbing the caller's RNG
        torch.manual_seed(0)
        BlipForConditionalGeneration(config).save_pretrained(dir)
    processor.save_pretrained(dir)
    return dir
