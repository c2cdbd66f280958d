"""Generation from trained models: MaskGIT decoding and roll-outs (`maskgit`), token limits, pose/frame GIFs.

Exports resolve lazily, so importing this package does not pull in rendering or tokenizer dependencies.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"decode_modality": "maskgit", "rollout": "maskgit", "unknown_schedule": "maskgit"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
