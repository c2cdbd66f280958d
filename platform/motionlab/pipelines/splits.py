"""Leak-free splits: whole videos go to one split, chosen by a seeded permutation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SPLITS = ("train", "eval", "test")


def _counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Round each share, keep at least one video in every split with a positive ratio when n allows."""
    counts = [int(round(n * r)) for r in ratios[:2]]
    counts.append(n - sum(counts))
    if n >= sum(1 for r in ratios if r > 0):
        for i, r in enumerate(ratios):
            if r > 0 and counts[i] == 0:
                donor = int(np.argmax(counts))
                counts[donor] -= 1
                counts[i] += 1
    return counts


def split_by_ratio(video_ids: Sequence[str], ratios: Sequence[float], seed: int) -> dict[str, str]:
    """Assign each video to train/eval/test in the given ratios, reproducibly for a seed.

    The permutation runs over the sorted ids, so the assignment does not depend on listing order.
    """
    ids = sorted(video_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    counts = _counts(len(ids), ratios)
    bounds = np.cumsum(counts)
    out: dict[str, str] = {}
    for rank, idx in enumerate(order):
        out[ids[idx]] = SPLITS[int(np.searchsorted(bounds, rank, side="right"))]
    return out


def split_official(
    train_flags: Mapping[str, bool], ratios: Sequence[float], seed: int
) -> dict[str, str]:
    """The dataset's own train/test flag; eval is carved from the train videos by the ratios' share."""
    train_ids = [v for v, is_train in train_flags.items() if is_train]
    eval_share = ratios[1] / max(ratios[0] + ratios[1], 1e-12)
    inner = split_by_ratio(train_ids, (1.0 - eval_share, eval_share, 0.0), seed)
    return {v: (inner[v] if is_train else "test") for v, is_train in train_flags.items()}
