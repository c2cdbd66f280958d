"""The schedule counted in tokens, as the team's configs state it (millions of tokens, not steps).

Counting in tokens keeps runs comparable when the batch size or the number of workers changes: the same
`total_tokens` is the same amount of learning signal whatever the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from motionlab.config import ExperimentConfig

MILLION = 1_000_000


@dataclass(frozen=True)
class TokenSchedule:
    """Steps derived from the token budget; every frequency is rounded to whole steps (at least one)."""

    total_steps: int
    warmup_steps: int
    eval_every: int
    ckpt_every: int
    tokens_per_step: int
    lr: float
    min_lr: float

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, global_batch: int | None = None) -> TokenSchedule:
        """`iterations = ceil(total_tokens * 1e6 / (num_tokens_per_sample * global_batch))`."""
        batch = global_batch or cfg.batch_size
        per_step = cfg.num_tokens_per_sample * batch

        def steps(millions: float) -> int:
            return math.ceil(millions * MILLION / per_step)

        total = steps(cfg.total_tokens)
        return cls(
            total_steps=total,
            warmup_steps=min(steps(cfg.warmup_tokens), total) if cfg.warmup_tokens > 0 else 0,
            eval_every=max(1, min(steps(cfg.eval_freq), total)),
            ckpt_every=max(1, min(steps(cfg.save_ckpt_freq), total)),
            tokens_per_step=per_step,
            lr=cfg.lr,
            min_lr=cfg.min_lr,
        )

    def lr_at(self, step: int) -> float:
        """Linear warm-up from 0 to `lr` over the warm-up steps, then cosine to `min_lr` at the last step.

        `step` counts optimizer updates already done (0 for the first update).
        """
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def is_due(self, step: int, every: int) -> bool:
        """True after update `step` (0-based) when a periodic action falls due, and always at the end."""
        done = step + 1
        return done % every == 0 or done == self.total_steps
