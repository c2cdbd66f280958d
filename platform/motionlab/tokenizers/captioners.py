"""Captions for frames: label templates offline by default, or BLIP from a local checkpoint.

The template captioner turns the dataset's own labels (action, viewpoint) into varied sentences, so the
text modality carries real information with no model at all; several phrasings, picked by a hash of
the sample key, keep the text model from learning one fixed string per class while staying
reproducible across runs and workers. BLIP describes what is visible instead, when weights are at hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

CAPTIONER_KINDS = ("template", "blip")

# Penn Action's 15 actions as verb phrases that follow "a person ..."
ACTION_PHRASES: dict[str, str] = {
    "baseball_pitch": "pitching a baseball",
    "baseball_swing": "swinging a baseball bat",
    "bench_press": "doing a bench press",
    "bowl": "bowling",
    "clean_and_jerk": "lifting a barbell in a clean and jerk",
    "golf_swing": "swinging a golf club",
    "jump_rope": "jumping rope",
    "jumping_jacks": "performing jumping jacks",
    "pullup": "doing pull-ups",
    "pushup": "doing push-ups",
    "situp": "doing sit-ups",
    "squat": "doing squats",
    "strum_guitar": "strumming a guitar",
    "tennis_forehand": "hitting a tennis forehand",
    "tennis_serve": "serving a tennis ball",
}

# Penn Action's `pose` field: where the camera stands relative to the person
VIEWPOINT_PHRASES: dict[str, tuple[str, str]] = {  # (adverbial, noun phrase)
    "front": ("from the front", "a front view"),
    "back": ("from behind", "a view from behind"),
    "left": ("from the left side", "a left-side view"),
    "right": ("from the right side", "a right-side view"),
}

# {act}: verb phrase; {adv}: "from the front"; {noun}: "a front view"
TEMPLATES = (
    "a person {act}, filmed {adv}",
    "someone {act}, seen {adv}",
    "{noun} of a person {act}",
    "a person {act}, viewed {adv}",
)
NO_VIEW_TEMPLATES = (
    "a person {act}",
    "someone {act}",
    "a video of a person {act}",
    "a person {act} on camera",
)


class Captioner(Protocol):
    def __call__(
        self,
        actions: Sequence[str],
        viewpoints: Sequence[str],
        keys: Sequence[str],
        frames: np.ndarray | None = None,
    ) -> list[str]: ...


def action_phrase(action: str) -> str:
    """A readable verb phrase for an action label; unknown labels still read as an activity."""
    label = str(action).strip().lower()
    if label in ACTION_PHRASES:
        return ACTION_PHRASES[label]
    words = label.replace("_", " ").replace("-", " ").split()
    return f"performing {' '.join(words)}" if words else "moving"


def _pick(key: str, n: int) -> int:
    # a content hash, not hash(): Python salts str hashes per process, and Ray runs many processes
    return int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=8).digest(), "big") % n


def _check_lengths(actions: Sequence[str], viewpoints: Sequence[str], keys: Sequence[str]) -> None:
    if not (len(actions) == len(viewpoints) == len(keys)):
        raise ValueError(
            f"captioner got {len(actions)} actions, {len(viewpoints)} viewpoints and {len(keys)} keys; "
            "they must describe the same samples"
        )


class TemplateCaptioner:
    """Action + viewpoint into one of several sentences, chosen deterministically from the sample key."""

    def __call__(
        self,
        actions: Sequence[str],
        viewpoints: Sequence[str],
        keys: Sequence[str],
        frames: np.ndarray | None = None,
    ) -> list[str]:
        _check_lengths(actions, viewpoints, keys)
        out = []
        for action, view, key in zip(actions, viewpoints, keys, strict=True):
            act = action_phrase(action)
            v = str(view).strip().lower()
            if v in VIEWPOINT_PHRASES:
                adv, noun = VIEWPOINT_PHRASES[v]
                out.append(TEMPLATES[_pick(key, len(TEMPLATES))].format(act=act, adv=adv, noun=noun))
            elif v:
                out.append(f"a person {act}, filmed from the {v.replace('_', ' ')}")
            else:
                out.append(NO_VIEW_TEMPLATES[_pick(key, len(NO_VIEW_TEMPLATES))].format(act=act))
        return out


class BlipCaptioner:
    """BLIP image captioning from a local folder (save_pretrained layout); greedy, batched generation.

    Greedy decoding keeps captions reproducible, so a re-run of the pipeline writes the same tokens.
    """

    def __init__(
        self, path: Path, device: str | None = None, max_new_tokens: int = 24, batch_size: int = 16
    ) -> None:
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"BLIP captioner folder {path} has no config.json; save a BLIP captioning checkpoint there "
                "(e.g. Salesforce/blip-image-captioning-base via save_pretrained) or use captioner 'template'"
            )
        self.path = path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.processor = BlipProcessor.from_pretrained(path, local_files_only=True)
        self.model = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True)
        self.model.to(device=self.device, dtype=dtype).eval()
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def __call__(
        self,
        actions: Sequence[str],
        viewpoints: Sequence[str],
        keys: Sequence[str],
        frames: np.ndarray | None = None,
    ) -> list[str]:
        """frames (B, H, W, 3) uint8 -> B captions; the labels are accepted for the common interface."""
        import torch

        _check_lengths(actions, viewpoints, keys)
        if frames is None:
            raise ValueError("the BLIP captioner needs the frames; the pipeline must keep pixels for it")
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"BLIP captioner expects (B, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}"
            )
        if len(frames) != len(keys):
            raise ValueError(f"BLIP captioner got {len(frames)} frames for {len(keys)} samples")
        captions: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                chunk = list(frames[start : start + self.batch_size])
                pixels = self.processor(images=chunk, return_tensors="pt")["pixel_values"]  # (b, 3, S, S)
                out = self.model.generate(
                    pixel_values=pixels.to(self.device, self.dtype),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                )
                captions += [c.strip() for c in self.processor.batch_decode(out, skip_special_tokens=True)]
        return captions


def build_captioner(kind: str, path: Path | None = None, device: str | None = None) -> Captioner:
    """The configured captioner; 'blip' needs a local checkpoint folder, 'template' needs nothing."""
    if kind == "template":
        return TemplateCaptioner()
    if kind == "blip":
        if path is None:
            raise ValueError(
                "captioner 'blip' needs data.captioner_path: a local folder with a BLIP captioning "
                "checkpoint (config.json, weights, processor files); or set data.captioner to 'template'"
            )
        return BlipCaptioner(Path(path), device=device)
    raise ValueError(f"unknown captioner '{kind}'; expected one of {', '.join(CAPTIONER_KINDS)}")
