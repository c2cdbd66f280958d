"""Tokenizers: every modality's raw values to integer ids and back.

image (Cosmos TorchScript | a locally trained FSQ autoencoder), pose (13 joints -> 39 ids), text (BPE),
and the captioners that make the text. Names resolve lazily, so importing the pose quantizer in a
light Ray task does not pull in torch, transformers or scikit-image.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PoseQuantizer": "pose",
    "VIS_INVISIBLE": "pose",
    "VIS_VISIBLE": "pose",
    "VIS_OUTSIDE": "pose",
    "ImageTokenizer": "image",
    "load_image_tokenizer": "image",
    "FSQAutoencoder": "fsq",
    "FSQTokenizer": "fsq",
    "train_fsq_tokenizer": "fsq",
    "CosmosTokenizer": "cosmos",
    "TextTokenizer": "text",
    "train_bpe": "text",
    "TemplateCaptioner": "captioners",
    "BlipCaptioner": "captioners",
    "build_captioner": "captioners",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
