"""Model definitions: the 4M-style encoder-decoder (`fourm`); sequence models live beside it."""

from motionlab.models.fourm import FourM, FourMConfig

__all__ = ["FourM", "FourMConfig"]
