"""A text-to-motion dataset as a training reads it: read once on the driver, packed, shipped to the workers.

Why not Ray Data here: a motion split is small (KIT-ML's train split is about 0.4 GB of z-scored features,
the generated one a few MB) and is read sample by sample with caption sub-clips and a length filter
(`read_motion_dataset`), so there is no per-row pipeline to stream. The split is packed into one feature
array plus offsets and put in the object store once; every worker on a node maps the same copy. Each worker
then takes its rank's rows of a seeded per-epoch permutation (as a DistributedSampler does), so an epoch is
exactly ceil(samples / batch) optimizer steps whatever the number of workers (Ray Data's streaming split hands
workers uneven shares, which would break the epoch count), and no streaming execution is started per epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motionlab.config import MotionConfig
from motionlab.datasets.motion import SPECS, Caption, MotionDataError, MotionSample, MotionSplit, read_motion_dataset
from motionlab.models.text_vocab import WordVocab
from motionlab.workspace import Workspace

TRAIN_SPLIT, EVAL_SPLIT = "train", "val"
GENERATED_DIR = "kit_ml"  # <workspace>/data/kit_ml
GENERATED_SEED = 0  # as `motionlab synth kit-ml`, so the workspace holds what that command writes
GENERATED_MARKER = "generated.json"  # what default_motion_root generated there: {"motions": n, "seed": s}
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class PackedSplit:
    """A split's samples as three arrays: one object to ship, zero-copy views once in a worker."""

    features: np.ndarray  # (sum of T, D) float32, z-scored
    offsets: np.ndarray  # (N + 1,) int64: sample i is features[offsets[i] : offsets[i + 1]]
    captions: tuple[tuple[Caption, ...], ...]  # (N,) every caption of each sample
    ids: tuple[str, ...]  # (N,)

    @classmethod
    def pack(cls, split: MotionSplit) -> PackedSplit:
        lengths = [s.length for s in split.samples]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        dim = split.spec.feature_dim
        features = (np.concatenate([s.features for s in split.samples]).astype(np.float32, copy=False)
                    if split.samples else np.zeros((0, dim), np.float32))
        return cls(features, offsets, tuple(s.captions for s in split.samples), tuple(s.id for s in split.samples))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def frames(self) -> int:
        return int(self.offsets[-1])

    def samples(self) -> list[MotionSample]:
        """MotionSamples whose features are views into the packed array (what `collate_motion` takes)."""
        return [MotionSample(i, i, self.features[a:b], c) for i, a, b, c in
                zip(self.ids, self.offsets[:-1], self.offsets[1:], self.captions, strict=True)]


@dataclass(frozen=True, eq=False)
class MotionPayload:
    """Everything a worker needs besides the config: both splits, the vocabulary and the z-scoring statistics."""

    train: PackedSplit
    val: PackedSplit
    vocab_tokens: tuple[str, ...]
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)


@dataclass(frozen=True, eq=False)
class MotionData:
    """A KIT-ML/HumanML3D-layout folder read for one config: train and val splits, vocabulary, fingerprint."""

    root: Path
    train: MotionSplit
    val: MotionSplit
    vocab: WordVocab
    digest: str

    @classmethod
    def open(cls, root: Path, cfg: MotionConfig) -> MotionData:
        """Read both splits (z-scored, filtered by the config's lengths) and build the vocabulary on train."""
        root = Path(root).resolve()
        spec = SPECS[cfg.data.dataset]
        d = cfg.data
        splits = {}
        for split in (TRAIN_SPLIT, EVAL_SPLIT):
            read = read_motion_dataset(root, spec, split, normalize=True, min_length=d.min_length,
                                       max_length=d.max_length)
            print(read.summary)
            if not read.samples:
                raise MotionDataError(root / f"{split}.txt", "samples", f"none kept for the {split} split",
                                      "list more motion ids in it, or widen data.min_length/data.max_length")
            splits[split] = read
        vocab = WordVocab.build(c.text for s in splits[TRAIN_SPLIT].samples for c in s.captions)
        return cls(root, splits[TRAIN_SPLIT], splits[EVAL_SPLIT], vocab, dataset_fingerprint(root))

    def payload(self) -> MotionPayload:
        stats = self.train.stats
        assert stats is not None  # read with normalize=True
        return MotionPayload(PackedSplit.pack(self.train), PackedSplit.pack(self.val), tuple(self.vocab.tokens),
                             stats.mean, stats.std)


def dataset_fingerprint(root: Path) -> str:
    """Content hash of what a training reads (split lists, statistics, features and captions of the listed ids):
    the MLflow `data_manifest` tag, equal for equal data wherever the folder lies."""
    root = Path(root)
    digest = hashlib.sha256()
    names = ["Mean.npy", "Std.npy"]
    ids: set[str] = set()
    for split in ("train", "val", "test"):
        path = root / f"{split}.txt"
        if path.is_file():
            names.append(path.name)
            ids |= {line.strip() for line in path.read_text().splitlines() if line.strip()}
    for motion_id in sorted(ids):
        names += [f"new_joint_vecs/{motion_id}.npy", f"texts/{motion_id}.txt"]
    for name in names:
        path = root / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            with path.open("rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def default_motion_root(workspace: Workspace, cfg: MotionConfig) -> Path:
    """The workspace's KIT-ML look-alike with the config's `data.generated_motions`, generated on first use
    (one line says so) and again when a config asks for another count; a folder without the marker file
    (data put there by hand) is used as it is."""
    from motionlab.datasets.synth_kit import synth_kit_ml

    root = workspace.data / GENERATED_DIR
    if cfg.data.dataset != "kit":
        raise MotionDataError(root, "dataset", f"'{cfg.data.dataset}' cannot be generated (the look-alike is "
                              "KIT-ML only)", "pass --data with a HumanML3D folder, or data.dataset=kit")
    wanted = {"motions": cfg.data.generated_motions, "seed": GENERATED_SEED}
    marker = root / GENERATED_MARKER
    if (root / f"{TRAIN_SPLIT}.txt").is_file():
        if not marker.is_file():
            return root
        made = json.loads(marker.read_text())
        if made == wanted:
            return root
        print(f"{root} holds {made.get('motions')} generated motions, the config asks for {wanted['motions']}; "
              "generating them again")
        for name in ("new_joint_vecs", "new_joints", "texts"):
            shutil.rmtree(root / name, ignore_errors=True)
    else:
        print(f"no KIT-ML data in {root}; generating {wanted['motions']} look-alike motions first "
              "(`motionlab synth kit-ml`)")
    synth_kit_ml(root, motions=wanted["motions"], seed=GENERATED_SEED)
    marker.write_text(json.dumps(wanted))
    return root


def epoch_rows(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The global batch of optimizer step `step`: (batch_size,) row indices of a seeded per-epoch permutation.

    The last batch of an epoch wraps around to the epoch's first rows (as DistributedSampler pads), so every
    step has `batch_size` samples and an epoch is ceil(n / batch_size) steps.
    """
    per_epoch = max(1, math.ceil(n / batch_size))
    epoch, b = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order.take(np.arange(b * batch_size, (b + 1) * batch_size), mode="wrap")
