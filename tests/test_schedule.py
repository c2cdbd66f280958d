"""The token-counted schedule: iterations from the token budget, linear warm-up, cosine to min_lr."""

from __future__ import annotations

import math

import pytest

from motionlab.config import load_config
from motionlab.training.schedule import TokenSchedule


def test_iterations_follow_the_token_budget_of_the_full_configs() -> None:
    m4 = TokenSchedule.from_config(load_config("m4"))
    # 3000 M tokens / (256 tokens per sample x batch 96)
    assert m4.total_steps == math.ceil(3000e6 / (256 * 96)) == 122071
    assert m4.warmup_steps == math.ceil(500e6 / (256 * 96))
    assert m4.tokens_per_step == 256 * 96
    m2 = TokenSchedule.from_config(load_config("m2"))
    assert m2.total_steps == math.ceil(5000e6 / (256 * 128))
    # a larger global batch (more workers) means fewer steps for the same tokens
    assert TokenSchedule.from_config(load_config("m4"), global_batch=192).total_steps == math.ceil(3000e6 / (256 * 192))


def test_warmup_is_linear_then_cosine_reaches_min_lr() -> None:
    cfg = load_config("m4", preset="tiny", overrides=["total_tokens=0.2", "warmup_tokens=0.02"])
    s = TokenSchedule.from_config(cfg)
    assert (s.total_steps, s.warmup_steps) == (98, 10)
    assert s.lr_at(0) == pytest.approx(cfg.lr / 10)
    assert s.lr_at(4) == pytest.approx(cfg.lr * 5 / 10)
    assert s.lr_at(9) == pytest.approx(cfg.lr)
    assert s.lr_at(10) == pytest.approx(cfg.lr)  # cosine starts at the peak
    assert s.lr_at(s.total_steps - 1) == pytest.approx(cfg.min_lr)
    mid = 10 + (s.total_steps - 11) / 2
    assert s.lr_at(int(mid)) == pytest.approx((cfg.lr + cfg.min_lr) / 2, rel=0.05)
    lrs = [s.lr_at(i) for i in range(10, s.total_steps)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # never rises after warm-up


def test_frequencies_are_whole_steps_and_due_at_the_end() -> None:
    cfg = load_config("m4", preset="tiny", overrides=["total_tokens=0.05", "warmup_tokens=0.005", "eval_freq=0.02",
                                                      "save_ckpt_freq=0.02"])
    s = TokenSchedule.from_config(cfg)
    assert (s.total_steps, s.eval_every, s.ckpt_every) == (25, 10, 10)
    due = [i + 1 for i in range(s.total_steps) if s.is_due(i, s.ckpt_every)]
    assert due == [10, 20, 25]
    no_warmup = TokenSchedule.from_config(load_config("m4", preset="tiny", overrides=["warmup_tokens=0"]))
    assert no_warmup.warmup_steps == 0 and no_warmup.lr_at(0) == pytest.approx(cfg.lr)
