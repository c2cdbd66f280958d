"""A word-level caption vocabulary for the text-to-motion SSMs, saved and loaded as JSON.

Motion captions ("a person walks forward slowly.") use a few thousand words at most, and the SSMs read
text one token per scan step, so a word vocabulary keeps the text prefix short (one step per word instead
of one per BPE piece) and its ids readable in a checkpoint. The project's byte-level BPE
(`motionlab.tokenizers.text`) stays the choice for the 4M models, whose text modality has a fixed row layout;
here a caption is a variable-length prefix, so only <pad> and <unk> are needed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCAB_FORMAT = "motionlab.word_vocab/1"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # words and numbers; punctuation carries nothing here


def words(text: str) -> list[str]:
    """Lower-cased words of a caption: "A man's hand." -> ["a", "man's", "hand"]."""
    return _WORD.findall(text.lower())


class WordVocab:
    """Words seen in the training captions -> ids; <pad> = 0, <unk> = 1, the rest by frequency, then a-z."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"WordVocab: the first tokens must be {PAD!r}, {UNK!r}, got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            dup = sorted(t for t, n in Counter(tokens).items() if n > 1)[:5]
            raise ValueError(f"WordVocab: duplicate tokens {dup}")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, captions: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> WordVocab:
        """From the training captions only, so validation words map to <unk> as unseen words would at test time."""
        counts = Counter(w for c in captions for w in words(c))
        kept = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            kept = kept[: max(0, max_size - 2)]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordVocab) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(tuple(self.tokens))

    def encode_one(self, text: str) -> list[int]:
        """One caption -> ids (unknown words -> <unk>); never empty, so every sample has a text prefix."""
        ids = [self.index.get(w, UNK_ID) for w in words(text)]
        return ids or [UNK_ID]

    def encode(self, texts: Sequence[str], max_len: int) -> Tensor:
        """(B,) captions -> (B, max_len) int64, right-padded with <pad>; a long caption keeps its first words."""
        if max_len < 1:
            raise ValueError(f"WordVocab.encode: max_len must be >= 1, got {max_len}")
        out = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
        for row, text in zip(out, texts, strict=True):
            ids = self.encode_one(text)[:max_len]
            row[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out  # (B, max_len)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> words joined by spaces, <pad> dropped (for logs and titles)."""
        return " ".join(self.tokens[int(i)] for i in ids if int(i) != PAD_ID)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": VOCAB_FORMAT, "tokens": self.tokens}, indent=0))
        return path

    @classmethod
    def load(cls, path: Path) -> WordVocab:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: word vocabulary does not exist; build one with WordVocab.build(captions)"
                                    " and save it next to the checkpoint")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc}); rewrite it with WordVocab.save") from None
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT or not isinstance(data.get("tokens"), list):
            raise ValueError(f"{path}: 'format' is not {VOCAB_FORMAT!r} or 'tokens' is missing; "
                             "rewrite it with WordVocab.save")
        return cls(data["tokens"])
