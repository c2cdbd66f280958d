"""Text-to-motion metrics in the evaluator's embedding space, and the comparison table.

Formulas follow the protocol of Guo et al. (CVPR 2022), used by every text-to-motion paper since:

- R-precision top-k: samples are shuffled with a fixed seed and cut into batches of 32; in a batch, each
  motion's distances to the 32 captions are ranked and the hit counts if its own caption is among the k
  nearest. Only full batches count (as in the published code); with fewer than 32 samples the one batch is
  all of them, so chance is k / N rather than k / 32 (`r_precision_batch` in the result says which).
  The published code ranks motions per caption; the paper's text, followed here, ranks captions per motion.
  Ties (identical captions) are broken by batch position, as a stable sort would.
- FID: Fréchet distance between Gaussians fitted to real and generated motion embeddings,
  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)). With N <= E samples the covariances are singular and the
  estimate is biased upward; compare FIDs only at equal N and embedding size.
- Diversity: mean distance between `DIVERSITY_PAIRS` (300) pairs of embeddings drawn without replacement
  with a fixed seed; with fewer samples than that, N pairs.
- MM-distance: mean distance between each motion's embedding and its own caption's.

The figures are read in this project's own evaluator (`EVALUATOR_NOTE`), not the published one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import scipy.linalg
from torch import Tensor

from motionlab.evaluation.text_motion import EVALUATOR_NOTE, TextMotionEvaluator

__all__ = [
    "DIVERSITY_PAIRS", "R_PRECISION_BATCH", "TABLE_COLUMNS", "TOP_K", "diversity", "fid", "frechet_distance",
    "metrics_table", "mm_distance", "r_precision", "split_rows", "text_motion_metrics",
]

R_PRECISION_BATCH = 32
TOP_K = 3
DIVERSITY_PAIRS = 300
SQRTM_EPS = 1e-6  # added to the diagonals when the product of covariances is singular

# (header, key, format) in printing order; physics keys are those of `motionlab.physics.losses.motion_metrics`.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("feat MSE", "feature_mse", "{:.4f}"),
    ("skating", "skating_ratio", "{:.3f}"),
    ("penetr. m", "penetration_m", "{:.4f}"),
    ("float m", "floating_m", "{:.4f}"),
    ("jerk m/s3", "jerk_mps3", "{:.1f}"),
    ("R@1", "r_precision_top1", "{:.3f}"),
    ("R@2", "r_precision_top2", "{:.3f}"),
    ("R@3", "r_precision_top3", "{:.3f}"),
    ("FID", "fid", "{:.3f}"),
    ("diversity", "diversity", "{:.3f}"),
    ("MM-dist", "mm_distance", "{:.3f}"),
)
TEXT_MOTION_KEYS = ("r_precision_top1", "r_precision_top2", "r_precision_top3", "fid", "diversity", "mm_distance")
REAL_PREFIX = "real_"


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, E), (M, E) -> (N, M) Euclidean distances."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2): (E,), (E, E), (E,), (E, E) -> float."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularise both, as is customary
        offset = np.eye(len(mu1)) * SQRTM_EPS
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # rounding leaves tiny imaginary parts
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # rounding can take an exact 0 slightly below


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """(N, E), (M, E) embeddings -> FID; NaN when either set has fewer than 2 samples (no covariance)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def r_precision(text: np.ndarray, motion: np.ndarray, seed: int = 0, batch_size: int = R_PRECISION_BATCH,
                top_k: int = TOP_K) -> tuple[np.ndarray, int]:
    """(N, E) caption and (N, E) motion embeddings, row i matching row i -> ((top_k,) hit rates, batch used).

    See the module docstring for batching and ties.
    """
    n = len(text)
    if n != len(motion):
        raise ValueError(f"r_precision: {n} caption embeddings but {len(motion)} motion embeddings; pass one "
                         "caption per motion, row for row")
    if n < 2:
        return np.full(top_k, math.nan), n
    batch = min(batch_size, n)
    order = np.random.default_rng(seed).permutation(n)
    hits = np.zeros(top_k)
    count = 0
    for start in range(0, n - batch + 1, batch):
        idx = order[start:start + batch]
        dist = _distances(motion[idx], text[idx])  # (b, b): motion i to caption j
        own = np.diag(dist)[:, None]
        cols = np.arange(batch)
        # captions strictly nearer, plus equally near ones earlier in the batch (a stable sort's order)
        ahead = (dist < own) | ((dist == own) & (cols[None, :] < cols[:, None]))
        rank = ahead.sum(1)  # 0 = own caption nearest
        hits += (rank[:, None] < np.arange(1, top_k + 1)[None, :]).sum(0)
        count += batch
    return hits / count, batch


def diversity(embeddings: np.ndarray, seed: int = 0, num_pairs: int = DIVERSITY_PAIRS) -> float:
    """(N, E) -> mean distance of `num_pairs` seeded pairs (N pairs when N is smaller); NaN below 2 samples."""
    n = len(embeddings)
    if n < 2:
        return math.nan
    pairs = min(num_pairs, n)
    rng = np.random.default_rng(seed)
    first, second = rng.choice(n, pairs, replace=False), rng.choice(n, pairs, replace=False)
    return float(np.linalg.norm(embeddings[first] - embeddings[second], axis=1).mean())


def mm_distance(text: np.ndarray, motion: np.ndarray) -> float:
    """(N, E), (N, E) row-matched -> mean distance between each motion and its own caption."""
    if len(text) != len(motion):
        raise ValueError(f"mm_distance: {len(text)} caption embeddings but {len(motion)} motion embeddings")
    return float(np.linalg.norm(text - motion, axis=1).mean()) if len(text) else math.nan


def _row(text: np.ndarray, motion: np.ndarray, seed: int) -> dict[str, float]:
    top, batch = r_precision(text, motion, seed)
    out = {f"r_precision_top{k + 1}": float(v) for k, v in enumerate(top)}
    out.update(diversity=diversity(motion, seed), mm_distance=mm_distance(text, motion),
               r_precision_batch=float(batch))
    return out


def text_motion_metrics(
    evaluator: TextMotionEvaluator,
    texts_tokens: Tensor,
    real_features: Tensor,
    real_lengths: Tensor,
    gen_features: Tensor | None = None,
    gen_lengths: Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """R-precision, FID, diversity and MM-distance of generated motions, and the same for the real ones.

    texts_tokens (N, L) in the evaluator's vocabulary (`evaluator.tokenize`), real_features (N, T, D) z-scored
    with real_lengths (N,), gen_features (N, T', D) with gen_lengths (N,): row i of each is sample i.
    Keys without prefix describe the generated motions (fid: generated vs real); keys with `real_` describe the
    real ones, the reference row, where `real_fid` is the FID between two seeded halves of the real set (the
    sampling floor at N / 2; 0 would be real vs itself). Without generated motions only `real_` keys return.
    """
    n = len(texts_tokens)
    if len(real_features) != n or len(real_lengths) != n:
        raise ValueError(f"text_motion_metrics: {n} captions but {len(real_features)} real motions and "
                         f"{len(real_lengths)} lengths; pass one caption per motion")
    text = evaluator.embed_texts(texts_tokens)  # (N, E)
    real = evaluator.embed_motions(real_features, real_lengths)  # (N, E)
    out = {REAL_PREFIX + k: v for k, v in _row(text, real, seed).items()}
    half = np.random.default_rng(seed).permutation(n)
    out[REAL_PREFIX + "fid"] = fid(real[half[: n // 2]], real[half[n // 2:]])
    out["num_samples"] = float(n)
    if gen_features is None:
        return out
    if gen_lengths is None or len(gen_features) != n or len(gen_lengths) != n:
        raise ValueError(f"text_motion_metrics: {n} captions but {len(gen_features)} generated motions and "
                         f"{0 if gen_lengths is None else len(gen_lengths)} lengths; generate one per caption")
    gen = evaluator.embed_motions(gen_features, gen_lengths)  # (N, E)
    out.update(_row(text, gen, seed))
    out["fid"] = fid(real, gen)
    return out


def split_rows(metrics: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """`text_motion_metrics` output -> (real row, generated row) with the table's key names."""
    real = {k[len(REAL_PREFIX):]: v for k, v in metrics.items() if k.startswith(REAL_PREFIX)}
    gen = {k: v for k, v in metrics.items() if not k.startswith(REAL_PREFIX) and k in TEXT_MOTION_KEYS}
    return real, gen


def _cell(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "-" if math.isnan(number) else fmt.format(number)


def metrics_table(rows: Mapping[str, Mapping[str, float | None]]) -> str:
    """Rows (e.g. "real (test set)", "MotionSSM", "PhysicsSSM") -> a plain-text table, missing values as "-",
    followed by `EVALUATOR_NOTE` so the figures are never read without it."""
    headers = ["", *(h for h, _, _ in TABLE_COLUMNS)]
    body = [[name, *(_cell(row.get(key), fmt) for _, key, fmt in TABLE_COLUMNS)] for name, row in rows.items()]
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    rule = "-" * len(line(headers))
    return "\n".join([line(headers), rule, *(line(r) for r in body), rule, f"Note: {EVALUATOR_NOTE}"])
