"""The text-motion evaluator: a caption encoder and a motion encoder sharing one embedding space.

Text-to-motion models are compared with the protocol of Guo et al., "Generating Diverse and Natural 3D
Human Motions from Text" (CVPR 2022): captions and motions are embedded by two encoders trained to
agree, and R-precision, FID, diversity and MM-distance are read in that space (`motionlab.evaluation.metrics`).
The published evaluator weights cannot be downloaded here, so this project trains its own on the same
training split with a symmetric InfoNCE loss. Its figures rank our models against each other and against
the real test motions; they are not comparable with published tables (`EVALUATOR_NOTE` says so wherever
they are printed).

Architecture (close to the published one, without its GloVe/POS inputs, which are not available offline):
words -> learned embeddings -> bidirectional GRU -> linear; z-scored features -> strided 1-D convolutions
(time / 2 each) -> bidirectional GRU -> linear. Both outputs are L2-normalised, so Euclidean distances
(what the metrics rank) and the cosine similarities of the training loss order pairs the same way, and
distances lie in [0, 2].

The evaluator is trained once per dataset and cached: `load_or_train_evaluator` keys the cache folder by
`dataset_fingerprint` (sorted sample ids + SHA-256 of Mean.npy and Std.npy + the dataset's name) and by a
hash of the evaluator config, so a changed split, re-computed statistics or a different evaluator size
trains a new one, while re-running an evaluation reuses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from motionlab.datasets.motion import MotionSample, MotionSplit, MotionStats
from motionlab.models.motion import collate_motion, length_mask
from motionlab.models.text_vocab import PAD_ID, WordVocab

__all__ = [
    "EVALUATOR_FORMAT", "EVALUATOR_NOTE", "EvaluatorConfig", "TextMotionEvaluator", "dataset_fingerprint",
    "evaluator_cache_dir", "load_or_train_evaluator", "train_evaluator",
]

EVALUATOR_FORMAT = "motionlab.text_motion_evaluator/1"
EVALUATOR_NOTE = (
    "Text-motion metrics (R@k, FID, diversity, MM-dist) come from an evaluator this project trains on the "
    "same training split (contrastive text and motion encoders after Guo et al., CVPR 2022), not from the "
    "published evaluator, whose weights are not available here: compare rows of this table with each other, "
    "not with published figures."
)
CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE = "config.json", "model.pt", "vocab.json"
CONV_KERNEL, CONV_STRIDE, CONV_PADDING = 4, 2, 1  # output length = floor(T / 2) exactly
LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class EvaluatorConfig:
    """Sizes and training settings of the evaluator; `tiny` for tests and laptops, `default` for real data."""

    vocab_size: int
    feature_dim: int = 251  # KIT-ML; 263 for HumanML3D
    word_dim: int = 128
    text_hidden: int = 256
    motion_channels: int = 256
    downsample: int = 2  # strided conv layers: the GRU reads T / 2**downsample steps
    motion_hidden: int = 256
    embed_dim: int = 128
    max_text_len: int = 24  # words; captions of KIT-ML / HumanML3D rarely exceed it
    temperature: float = 0.1
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < 3:
            raise ValueError("EvaluatorConfig: vocab_size must be >= 3 (<pad>, <unk> and a word), "
                             f"got {self.vocab_size}")
        if self.temperature <= 0:
            raise ValueError(f"EvaluatorConfig: temperature must be > 0, got {self.temperature}")
        if self.downsample < 0:
            raise ValueError(f"EvaluatorConfig: downsample must be >= 0, got {self.downsample}")

    @classmethod
    def default(cls, vocab_size: int, feature_dim: int = 251, **overrides: Any) -> Self:
        return cls(vocab_size=vocab_size, feature_dim=feature_dim, **overrides)

    @classmethod
    def tiny(cls, vocab_size: int, feature_dim: int = 251, **overrides: Any) -> Self:
        """A few thousand steps' worth of model: trains in seconds on a CPU core on generated data."""
        sizes = dict(word_dim=32, text_hidden=32, motion_channels=64, downsample=2, motion_hidden=48,
                     embed_dim=32, epochs=40, batch_size=32, lr=3e-3)
        return cls(vocab_size=vocab_size, feature_dim=feature_dim, **{**sizes, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"EvaluatorConfig: unknown fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    def key(self) -> str:
        """A short hash of every field: part of the cache folder's name."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


class TextEncoder(nn.Module):
    def __init__(self, cfg: EvaluatorConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.word_dim, padding_idx=PAD_ID)
        self.gru = nn.GRU(cfg.word_dim, cfg.text_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.text_hidden, cfg.embed_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, L) word ids, right-padded with <pad> -> (B, E) unit vectors; padding never changes a caption's vector."""
        lengths = (tokens != PAD_ID).sum(1).clamp(min=1)  # an all-pad row reads one <pad> step
        packed = pack_padded_sequence(self.embed(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)  # (2, B, H): last state of each direction
        return F.normalize(self.out(torch.cat([hidden[0], hidden[1]], -1)), dim=-1)


class MotionEncoder(nn.Module):
    def __init__(self, cfg: EvaluatorConfig) -> None:
        super().__init__()
        dims = [cfg.feature_dim] + [cfg.motion_channels] * cfg.downsample
        self.convs = nn.ModuleList(nn.Conv1d(a, b, CONV_KERNEL, CONV_STRIDE, CONV_PADDING)
                                   for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.gru = nn.GRU(dims[-1], cfg.motion_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.motion_hidden, cfg.embed_dim)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, D) z-scored features, (B,) lengths -> (B, E) unit vectors.

        Frames past a length are zeroed before each layer, which is exactly the convolution's own zero padding
        at the end of an unpadded clip, so a motion's vector does not depend on what it is batched with.
        """
        lengths = lengths.to(features.device).long()
        x = features * length_mask(lengths, features.shape[1])[..., None].to(features.dtype)
        x = x.transpose(1, 2)  # (B, D, T)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            lengths = (lengths // CONV_STRIDE).clamp(min=1)
            x = x * length_mask(lengths, x.shape[2])[:, None, :].to(x.dtype)
        packed = pack_padded_sequence(x.transpose(1, 2), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)  # (2, B, H)
        return F.normalize(self.out(torch.cat([hidden[0], hidden[1]], -1)), dim=-1)


class TextMotionEvaluator(nn.Module):
    """Caption and motion encoders into one space of unit vectors; trained by `train_evaluator`.

    `vocab` is the evaluator's own word list: captions are scored with it, never with a generator's vocabulary.
    """

    def __init__(self, cfg: EvaluatorConfig, vocab: WordVocab | None = None, fingerprint: str = "") -> None:
        super().__init__()
        if vocab is not None and len(vocab) != cfg.vocab_size:
            raise ValueError(f"TextMotionEvaluator: vocab has {len(vocab)} words but the config says "
                             f"vocab_size={cfg.vocab_size}; build the config from this vocabulary")
        self.cfg = cfg
        self.vocab = vocab
        self.fingerprint = fingerprint  # of the dataset it was trained on ("" when unknown)
        self.history: list[float] = []  # mean training loss per epoch
        self.text_encoder = TextEncoder(cfg)
        self.motion_encoder = MotionEncoder(cfg)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """(B, L) word ids -> (B, E)."""
        return self.text_encoder(tokens)

    def encode_motion(self, features: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, D) z-scored features, (B,) lengths -> (B, E)."""
        return self.motion_encoder(features, lengths)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """(B,) captions -> (B, max_text_len) ids in the evaluator's vocabulary."""
        if self.vocab is None:
            raise ValueError("TextMotionEvaluator.tokenize: this evaluator has no vocabulary; load it with "
                             "TextMotionEvaluator.load or pass vocab= when building it")
        return self.vocab.encode(list(texts), self.cfg.max_text_len)

    @torch.no_grad()
    def embed_texts(self, tokens: Tensor, batch_size: int = 256) -> np.ndarray:
        """(N, L) ids -> (N, E) float64, in eval mode, chunked to bound memory."""
        was = self.training
        self.eval()
        try:
            chunks = [self.encode_text(tokens[i:i + batch_size]) for i in range(0, len(tokens), batch_size)]
        finally:
            self.train(was)
        return torch.cat(chunks).double().numpy() if chunks else np.zeros((0, self.cfg.embed_dim))

    @torch.no_grad()
    def embed_motions(self, features: Tensor, lengths: Tensor, batch_size: int = 256) -> np.ndarray:
        """(N, T, D) z-scored features, (N,) lengths -> (N, E) float64, in eval mode."""
        was = self.training
        self.eval()
        try:
            chunks = [self.encode_motion(features[i:i + batch_size].float(), lengths[i:i + batch_size])
                      for i in range(0, len(features), batch_size)]
        finally:
            self.train(was)
        return torch.cat(chunks).double().numpy() if chunks else np.zeros((0, self.cfg.embed_dim))

    def save(self, directory: Path) -> Path:
        """config.json (format, config, dataset fingerprint, note) + model.pt (state dict) + vocab.json.

        Written to a sibling temporary folder and renamed, so a crash never leaves a half-written cache entry.
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            meta = {"format": EVALUATOR_FORMAT, "config": self.cfg.to_dict(), "fingerprint": self.fingerprint,
                    "history": self.history, "note": EVALUATOR_NOTE}
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
            torch.save(self.state_dict(), tmp / WEIGHTS_FILE)
            if self.vocab is not None:
                self.vocab.save(tmp / VOCAB_FILE)
            if directory.exists():
                shutil.rmtree(directory)
            tmp.rename(directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: Path) -> TextMotionEvaluator:
        """The evaluator `save` wrote, in eval mode; weights read with weights_only=True."""
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.is_file() or not (directory / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{directory}: no {CONFIG_FILE} and {WEIGHTS_FILE}; train one with "
                                    "train_evaluator(...).save(dir) or load_or_train_evaluator")
        meta = json.loads(path.read_text())
        if meta.get("format") != EVALUATOR_FORMAT:
            raise ValueError(f"{path}: 'format' is {meta.get('format')!r}, expected {EVALUATOR_FORMAT!r}; "
                             "delete the folder to retrain the evaluator")
        vocab = WordVocab.load(directory / VOCAB_FILE) if (directory / VOCAB_FILE).is_file() else None
        model = cls(EvaluatorConfig.from_dict(meta["config"]), vocab, meta.get("fingerprint", ""))
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        model.history = [float(x) for x in meta.get("history", [])]
        return model.eval()


def contrastive_loss(text: Tensor, motion: Tensor, temperature: float, same_text: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE over a batch: (B, E) unit text and motion vectors, matching rows are positives.

    `same_text` (B, B) bool marks pairs whose captions are identical (common in motion data: "a person walks
    forward."); they are removed from the negatives, since pushing such a pair apart would teach the
    encoders to tell equal captions apart.
    """
    logits = text @ motion.T / temperature  # (B, B)
    if same_text is not None:
        off_diag = ~torch.eye(len(text), dtype=torch.bool, device=text.device)
        logits = logits.masked_fill(same_text & off_diag, float("-inf"))
    target = torch.arange(len(text), device=text.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def train_evaluator(
    samples: Sequence[MotionSample],
    vocab: WordVocab,
    cfg: EvaluatorConfig,
    fingerprint: str = "",
    log: Callable[[str], None] | None = None,
) -> TextMotionEvaluator:
    """Train the evaluator on z-scored training samples; same seed, same weights (on CPU).

    Each epoch visits every sample once in a seeded order with one of its captions drawn at random. A plain
    loop: the evaluator is small, trained once per dataset and cached, so Ray Train would only add start-up.
    """
    if len(samples) < 2:
        raise ValueError(f"train_evaluator: needs at least 2 samples for contrastive pairs, got {len(samples)}")
    dim = samples[0].features.shape[1]
    if dim != cfg.feature_dim:
        raise ValueError(f"train_evaluator: samples have {dim} features per frame but the config says "
                         f"feature_dim={cfg.feature_dim}; build the config for this dataset")
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's global RNG
        torch.manual_seed(cfg.seed)
        model = TextMotionEvaluator(cfg, vocab, fingerprint)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(samples) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1)
    model.train()
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(samples))
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2:  # a lone sample has no negatives
                continue
            batch = collate_motion([samples[i] for i in idx], vocab, cfg.max_text_len, generator=rng)
            tokens = batch["text_tokens"]  # (B, L)
            same = (tokens[:, None, :] == tokens[None, :, :]).all(-1)  # (B, B)
            loss = contrastive_loss(model.encode_text(tokens), model.encode_motion(batch["features"], batch["lengths"]),
                                    cfg.temperature, same)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        model.history.append(float(np.mean(losses)) if losses else float("nan"))
        if log is not None and (epoch + 1) % max(1, cfg.epochs // 5) == 0:
            log(f"evaluator epoch {epoch + 1}/{cfg.epochs}: contrastive loss {model.history[-1]:.4f}")
    return model.eval()


def dataset_fingerprint(samples: Sequence[MotionSample], stats: MotionStats, dataset: str) -> str:
    """16 hex digits naming what an evaluator was trained on: the dataset's name, the sorted sample ids
    (sub-clips included, so a changed length filter changes it) and SHA-256 of the float32 Mean and Std.

    Feature files edited in place under unchanged ids and statistics are not detected; delete the cache then.
    """
    digest = hashlib.sha256()
    digest.update(dataset.encode())
    for sample_id in sorted(s.id for s in samples):
        digest.update(b"\0" + sample_id.encode())
    for array in (stats.mean, stats.std):
        digest.update(b"\1" + hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).digest())
    return digest.hexdigest()[:16]


def evaluator_cache_dir(cache_root: Path, fingerprint: str, cfg: EvaluatorConfig) -> Path:
    """``<cache_root>/<dataset fingerprint>-<config key>``: one evaluator per dataset and evaluator config."""
    return Path(cache_root) / f"{fingerprint}-{cfg.key()}"


def load_or_train_evaluator(
    cache_root: Path,
    train: MotionSplit,
    size: str = "default",
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> TextMotionEvaluator:
    """The cached evaluator of this training split, or a new one trained, saved and announced in one line.

    `size` is "default" or "tiny"; `overrides` change config fields. The vocabulary is built from the training
    split's captions (so test words unseen in training map to <unk>, as for the models being evaluated).
    """
    if train.stats is None:
        raise ValueError(f"load_or_train_evaluator: the {train.split} split was read with normalize=False; the "
                         "evaluator reads z-scored features: read it with normalize=True")
    if size not in ("default", "tiny"):
        raise ValueError(f"load_or_train_evaluator: size must be 'default' or 'tiny', got {size!r}")
    vocab = WordVocab.build(c.text for s in train.samples for c in s.captions)
    make = EvaluatorConfig.tiny if size == "tiny" else EvaluatorConfig.default
    cfg = make(len(vocab), train.spec.feature_dim, **overrides)
    fingerprint = dataset_fingerprint(train.samples, train.stats, train.spec.name)
    directory = evaluator_cache_dir(cache_root, fingerprint, cfg)
    if (directory / CONFIG_FILE).is_file() and (directory / WEIGHTS_FILE).is_file():
        model = TextMotionEvaluator.load(directory)
        if model.fingerprint == fingerprint and model.vocab == vocab:
            return model
    if log is not None:
        log(f"no text-motion evaluator for this {train.spec.name} training split in {directory}: training one "
            f"({len(train.samples)} samples, {cfg.epochs} epochs)")
    model = train_evaluator(train.samples, vocab, cfg, fingerprint)
    model.save(directory)
    return model
