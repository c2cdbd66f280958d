"""A prepared dataset as the trainer sees it: Parquet splits, their manifest, and rows turned into token arrays.

The pipeline writes one `list<int32>` column per modality; here those columns become (B, L) arrays and
text rows get their real lengths (the tokens before padding), so masking never picks padding as a token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motionlab import modalities as registry
from motionlab.config import ConfigError, ExperimentConfig
from motionlab.modalities import Kind

SPLITS = ("train", "eval", "test")


@dataclass(frozen=True)
class PreparedData:
    """A folder written by `motionlab prepare`: OUT/{train,eval,test}/*.parquet and OUT/manifest.json."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: Path, cfg: ExperimentConfig) -> PreparedData:
        """Check that the folder holds complete tokens for this config's modalities, lengths and vocabularies."""
        root = Path(root).resolve()
        path = root / "manifest.json"
        if not path.is_file():
            raise ConfigError(f"{root}: manifest.json: missing, so this is not a prepared dataset; fix: run "
                              f"`motionlab prepare penn-action --config {cfg.name} --out {root}` or omit --data")
        manifest = json.loads(path.read_text())
        if manifest.get("status") != "complete":
            raise ConfigError(f"{path}: status: '{manifest.get('status')}', the preparation did not finish; "
                              "fix: run the same prepare command again (it resumes)")
        have = manifest.get("modalities", {})
        for name, length, vocab in zip(cfg.modalities, cfg.max_seq_lens, cfg.vocab_sizes, strict=True):
            if name not in have:
                raise ConfigError(f"{path}: modalities: has no '{name}' (it has {', '.join(have)}); fix: prepare "
                                  f"the dataset with config {cfg.name}, or pass the matching --data")
            if have[name]["length"] != length:
                raise ConfigError(f"{path}: modalities.{name}.length: {have[name]['length']} tokens but the config's "
                                  f"max_seq_len is {length}; fix: prepare with the same config and preset")
            if have[name]["vocab"] > vocab:
                raise ConfigError(f"{path}: modalities.{name}.vocab: tokens up to {have[name]['vocab']} but the "
                                  f"config's vocabulary is {vocab}; fix: raise vocab_sizes or re-prepare")
        for split in SPLITS:
            if not any((root / split).glob("*.parquet")):
                raise ConfigError(f"{root / split}: no Parquet shards; fix: re-run prepare (it has no {split} "
                                  "samples: give it more videos or other split_ratios)")
        return cls(root, manifest)

    def split_dir(self, split: str) -> Path:
        return self.root / split

    @property
    def digest(self) -> str:
        """The manifest's fingerprint: data config plus image tokenizer weights (the MLflow `data_manifest` tag)."""
        return str(self.manifest.get("fingerprint", ""))

    def text_eos(self) -> int | None:
        """End-of-sequence id of the dataset's text tokenizer, to find where caption rows end."""
        text = self.manifest.get("tokenizers", {}).get("text")
        if not text:
            return None
        from motionlab.tokenizers.text import TextTokenizer

        return TextTokenizer.load(Path(text["path"])).eos_id

    def read_tokens(self, split: str, columns: list[str]) -> dict[str, np.ndarray]:
        """A whole split's token columns in memory: {name: (N, L) int64}, in file order."""
        return token_arrays(self.read_pandas(split, columns), columns)

    def in_memory(self, cfg: ExperimentConfig) -> TokenSplits:
        """The train and eval splits of the config's modalities, read once (for in-process sweep trials)."""
        columns = list(cfg.modalities)
        return TokenSplits(self.read_tokens("train", columns), self.read_tokens("eval", columns), self.text_eos())

    def read_pandas(self, split: str, columns: list[str] | None = None):
        """A whole split in memory (evaluation and generation read the small test split this way)."""
        import pyarrow.parquet as pq

        files = sorted(self.split_dir(split).glob("*.parquet"))
        import pyarrow as pa

        return pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pandas()


@dataclass(frozen=True, eq=False)
class TokenSplits:
    """A prepared dataset's train and eval splits as arrays, one object to put in the object store."""

    train: dict[str, np.ndarray]  # {name: (N_train, L) int64}
    eval: dict[str, np.ndarray]  # {name: (N_eval, L) int64}
    text_eos: int | None  # the text tokenizer's EOS (where caption rows end)


def token_arrays(batch: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
    """Columns of token lists (Ray Data numpy batches or pandas) -> {name: (B, L) int64}."""
    out = {}
    for name in names:
        column = batch[name]
        if isinstance(column, np.ndarray) and column.dtype != object and column.ndim == 2:
            out[name] = column.astype(np.int64, copy=False)
        else:
            out[name] = np.stack([np.asarray(row, dtype=np.int64) for row in column])
    return out


def valid_lengths(tokens: dict[str, np.ndarray], eos_id: int | None) -> dict[str, np.ndarray]:
    """{name: (B,)} real tokens per row: text rows end at their EOS; every other kind is full length."""
    out = {}
    for name, rows in tokens.items():
        batch, length = rows.shape
        if registry.get(name).kind is Kind.TEXT and eos_id is not None:
            is_eos = rows == eos_id
            # BOS may equal EOS when a tokenizer has only one special: skip position 0
            is_eos[:, 0] = False
            out[name] = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1) + 1, length).astype(np.int64)
        else:
            out[name] = np.full(batch, length, dtype=np.int64)
    return out
