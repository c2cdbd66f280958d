"""Per-position bounds on valid token ids, so sampling a modality's row can only produce ids its tokenizer decodes.

A model shares one vocabulary size per modality, often larger than what the tokenizer emits (every
modality of a variant may use 65536). Sampling freely would give image codes the codebook lacks and,
worse, pose rows whose every third token is not a visibility state, which the pose decoder rejects.
The bounds depend on the modality's kind, looked up in the registry, never on its name.
"""

from __future__ import annotations

import numpy as np

from motionlab import modalities
from motionlab.config.schema import ExperimentConfig
from motionlab.modalities import POSE_TOKENS_PER_FRAME, POSE_TOKENS_PER_JOINT, Kind
from motionlab.tokenizers.pose import NUM_VIS_STATES

VIS_OFFSET = POSE_TOKENS_PER_JOINT - 1  # position of the visibility state within a joint's tokens


def token_limits(cfg: ExperimentConfig, modality: str, text_vocab: int | None = None) -> np.ndarray:
    """(L,) int64 exclusive upper bound of a valid id at each position of `modality`'s row.

    `text_vocab` is the size of the text tokenizer actually trained (a BPE may stop below the
    configured `data.text_vocab_size`); without it the configured size is used. No bound exceeds
    the modality's vocabulary size, so the result can index the model's logits directly.
    """
    index = cfg.modality_index(modality)
    length = cfg.max_seq_lens[index]
    vocab = cfg.vocab_sizes[index]
    kind = modalities.get(modality).kind
    if kind is Kind.IMAGE:
        limits = np.full(length, cfg.data.image_codes, dtype=np.int64)  # (L,)
    elif kind is Kind.POSE:
        if length % POSE_TOKENS_PER_FRAME:
            raise ValueError(
                f"modality '{modality}': max_seq_len {length} is not a multiple of {POSE_TOKENS_PER_FRAME} "
                "pose tokens per frame; fix max_seq_lens in the config"
            )
        limits = np.full(length, cfg.data.pose_bins, dtype=np.int64)  # (L,) coordinate bins
        limits[VIS_OFFSET::POSE_TOKENS_PER_JOINT] = NUM_VIS_STATES
    elif kind is Kind.TEXT:
        size = cfg.data.text_vocab_size if text_vocab is None else int(text_vocab)
        if size < 1:
            raise ValueError(f"modality '{modality}': text vocabulary size must be positive, got {size}")
        limits = np.full(length, size, dtype=np.int64)  # (L,)
    else:  # a new kind in the registry needs its bounds here
        raise ValueError(f"modality '{modality}': no token limits defined for kind '{kind}'")
    return np.minimum(limits, vocab)
