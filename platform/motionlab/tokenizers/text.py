"""Captions to fixed-length id rows: a byte-level BPE trained on the captions, or any local tokenizer.json.

No pretrained vocabulary ships offline, and captions here come from a small template grammar or a
captioner, so a BPE trained on them in seconds gives short sequences with no unknown bytes. Any Hugging
Face fast tokenizer (a tokenizer.json, or the folder holding one) can be loaded instead; its own special
tokens are looked up by the usual names, and the row layout stays [BOS] ids [EOS] pad...
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0..3 in a trained tokenizer
TOKENIZER_FILE = "tokenizer.json"

# names other tokenizers give the same roles, tried in order after the HF config's own declaration
_CANDIDATES = {
    "pad": (PAD, "<pad>", "<|pad|>", "[pad]"),
    "bos": (BOS, "<s>", "<bos>", "<|startoftext|>", "[CLS]", "<|endoftext|>"),
    "eos": (EOS, "</s>", "<eos>", "[SEP]", "<|endoftext|>"),
}


def _tokenizer_file(path: Path) -> Path:
    return path / TOKENIZER_FILE if path.is_dir() else path


def _declared_specials(folder: Path) -> dict[str, str]:
    """pad/bos/eos token strings declared by a Hugging Face folder's config files, when present."""
    found: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = folder / name
        if not file.is_file():
            continue
        try:
            cfg = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for role in ("pad", "bos", "eos"):
            tok = cfg.get(f"{role}_token")
            if isinstance(tok, dict):
                tok = tok.get("content")
            if isinstance(tok, str) and role not in found:
                found[role] = tok
    return found


class TextTokenizer:
    """Fixed-length rows for the text modality; decode undoes them for logs, GIF titles and evaluation."""

    def __init__(
        self, tokenizer: Tokenizer, source: Path | None = None, declared: dict[str, str] | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.source = source
        # the row layout is ours: padding and truncation off here, post-processor skipped in encode()
        tokenizer.no_padding()
        tokenizer.no_truncation()
        ids = {role: self._find(role, (declared or {}).get(role)) for role in ("pad", "bos", "eos")}
        if ids["eos"] is None:
            raise ValueError(
                f"{source or 'text tokenizer'}: no end-of-sequence token (tried "
                f"{', '.join(_CANDIDATES['eos'])}); add one as a special token or train a BPE with "
                "motionlab.tokenizers.text.train_bpe"
            )
        self.eos_id: int = ids["eos"]
        self.bos_id: int = ids["bos"] if ids["bos"] is not None else self.eos_id
        self.pad_id: int = ids["pad"] if ids["pad"] is not None else self.eos_id
        self._strip = {self.pad_id, self.bos_id, self.eos_id}

    def _find(self, role: str, declared: str | None) -> int | None:
        for name in (declared, *_CANDIDATES[role]):
            if name is not None and (i := self.tokenizer.token_to_id(name)) is not None:
                return int(i)
        return None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def load(cls, path: Path) -> TextTokenizer:
        """A tokenizer.json, or a directory holding one (e.g. a Hugging Face fast tokenizer folder)."""
        path = Path(path)
        file = _tokenizer_file(path)
        if not file.is_file():
            raise FileNotFoundError(
                f"text tokenizer {file} does not exist; point the config at a tokenizer.json (or a folder "
                "holding one), or leave it unset so a BPE is trained on the captions"
            )
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # the tokenizers library raises a bare Exception on bad files
            raise ValueError(f"{file}: not a readable tokenizers file ({e})") from None
        return cls(tok, source=file, declared=_declared_specials(file.parent))

    def save(self, path: Path) -> Path:
        """Write tokenizer.json at `path` (a file path, or a directory to put it in); returns the file."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        file.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(file))
        return file

    def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        """(B,) strings -> (B, max_len) int32: [BOS] ids [EOS] then pad; a long text keeps EOS last."""
        if max_len < 2:
            raise ValueError(f"text max_len must leave room for [BOS] and [EOS], got {max_len}")
        out = np.full((len(texts), max_len), self.pad_id, dtype=np.int32)
        for row, enc in zip(
            out, self.tokenizer.encode_batch(list(texts), add_special_tokens=False), strict=True
        ):
            ids = [self.bos_id, *enc.ids[: max_len - 2], self.eos_id]
            row[: len(ids)] = ids
        return out

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) strings -> (B,) int: tokens each needs with [BOS] and [EOS], to tell truncation apart."""
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return np.asarray([len(e.ids) + 2 for e in encoded], dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text, reading past a leading BOS up to the first EOS and dropping pad and specials."""
        seq = [int(i) for i in ids]
        if seq and seq[0] == self.bos_id:
            seq = seq[1:]
        if self.eos_id in seq:
            seq = seq[: seq.index(self.eos_id)]
        seq = [i for i in seq if i not in self._strip]
        return self.tokenizer.decode(seq, skip_special_tokens=True).strip()


def train_bpe(captions: Sequence[str], vocab_size: int, out_path: Path) -> TextTokenizer:
    """Train a byte-level BPE with [PAD]=0, [UNK], [BOS], [EOS] on the captions and save it at out_path.

    Byte level means every caption encodes, whatever characters a captioner emits; the vocabulary
    never exceeds `vocab_size`, which therefore has to hold the 256 byte symbols and the 4 specials.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    floor = len(alphabet) + len(SPECIALS)
    if vocab_size < floor:
        raise ValueError(
            f"text vocab_size {vocab_size} is below the {floor} ids a byte-level BPE needs "
            f"({len(alphabet)} bytes + {len(SPECIALS)} specials); raise data.text_vocab_size"
        )
    if not captions:
        raise ValueError("train_bpe got no captions to train on")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        initial_alphabet=alphabet,
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator([str(c) for c in captions], trainer=trainer)
    text = TextTokenizer(tok)
    file = text.save(Path(out_path))
    text.source = file
    return text
