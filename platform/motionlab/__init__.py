"""motionlab: a Ray-distributed experiment platform for multimodal human-motion models."""

__version__ = "0.1.0"
