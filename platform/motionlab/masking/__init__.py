"""Masking: which tokens of a sample the encoder sees and which the decoder must predict."""

from motionlab.masking.dirichlet import MaskedBatch, MaskingSpec, mask_batch, sample_budgets, whole_modality_batch

__all__ = ["MaskedBatch", "MaskingSpec", "mask_batch", "sample_budgets", "whole_modality_batch"]
