"""Mamba-1 selective state-space block with interchangeable scan backends (CUDA kernels, compiled CPU, PyTorch)."""

from motionlab.models.ssm.backends import BACKENDS, ENV_VAR, requested_backend, resolve_backend, selective_scan
from motionlab.models.ssm.block import Mamba
from motionlab.models.ssm.reference import selective_scan_reference

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "Mamba",
    "requested_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_reference",
]
