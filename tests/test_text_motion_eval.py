"""Text-motion evaluation: metric formulas on embeddings with known answers, and a tiny evaluator trained on
generated KIT-ML data that tells matching caption-motion pairs from others on held-out motions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from motionlab.datasets.motion import KIT, MotionSample, MotionSplit, MotionStats, read_motion_dataset
from motionlab.datasets.synth_kit import synth_kit_ml
from motionlab.evaluation import (
    EVALUATOR_NOTE,
    EvaluatorConfig,
    TextMotionEvaluator,
    dataset_fingerprint,
    diversity,
    evaluator_cache_dir,
    fid,
    frechet_distance,
    load_or_train_evaluator,
    metrics_table,
    mm_distance,
    r_precision,
    split_rows,
    text_motion_metrics,
    train_evaluator,
)
from motionlab.models.motion import collate_motion
from motionlab.models.text_vocab import WordVocab

# ---------------------------------------------------------------------------------------------------
# Formulas


def test_frechet_distance_of_known_gaussians():
    d = np.array([3.0, -4.0, 0.0])
    eye = np.eye(3)
    assert frechet_distance(np.zeros(3), eye, d, eye) == pytest.approx(25.0)  # |d|^2 with equal covariances
    # Diagonal covariances: sum over axes of (sqrt(a) - sqrt(b))^2, plus the mean term.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = 25.0 + float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum())  # 25 + 1 + 0 + 4
    assert frechet_distance(np.zeros(3), np.diag(a), d, np.diag(b)) == pytest.approx(expected)


def test_fid_of_a_set_against_itself_is_zero_and_grows_as_the_square_of_a_shift():
    x = np.random.default_rng(0).normal(size=(2000, 8))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)
    for length in (0.5, 1.0, 2.0, 4.0):
        shift = np.full(8, length / math.sqrt(8))  # |shift| = length
        assert fid(x, x + shift) == pytest.approx(length**2, rel=1e-6)  # same covariance: only the mean moves


def test_fid_between_samples_of_two_gaussians_approaches_the_analytic_value():
    rng = np.random.default_rng(1)
    d = np.array([1.0, 2.0, 0.0, 0.0])
    a, b = rng.normal(size=(20000, 4)), rng.normal(size=(20000, 4)) + d
    assert fid(a, b) == pytest.approx(5.0, abs=0.05)


def test_fid_with_fewer_samples_than_dimensions_is_finite_and_undefined_below_two():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 32))  # singular covariances: the regularised square root must still answer
    assert fid(x, x) == pytest.approx(0.0, abs=1e-3)
    value = fid(x, rng.normal(size=(6, 32)) + 1.0)
    assert math.isfinite(value) and value > 32.0 * 0.5  # the mean term alone is 32
    assert math.isnan(fid(x[:1], x))


def test_r_precision_of_perfect_embeddings_is_one():
    e = np.random.default_rng(3).normal(size=(320, 16))
    top, batch = r_precision(e, e.copy(), seed=0)
    assert batch == 32 and top.tolist() == [1.0, 1.0, 1.0]


def test_r_precision_of_random_embeddings_is_chance():
    rng = np.random.default_rng(4)
    n = 32 * 400
    top, batch = r_precision(rng.normal(size=(n, 16)), rng.normal(size=(n, 16)), seed=0)
    assert batch == 32
    np.testing.assert_allclose(top, [1 / 32, 2 / 32, 3 / 32], atol=0.008)  # std of the top-3 rate ~0.0026


def test_r_precision_with_fewer_than_32_samples_ranks_among_all_and_breaks_ties_by_position():
    e = np.random.default_rng(5).normal(size=(10, 8))
    top, batch = r_precision(e, e.copy(), seed=0)
    assert batch == 10 and top.tolist() == [1.0, 1.0, 1.0]
    same = np.ones((10, 8))  # every caption equally near: the k first of the batch hit, as a stable sort
    top, _ = r_precision(same, same.copy(), seed=0)
    np.testing.assert_allclose(top, [0.1, 0.2, 0.3])
    top, batch = r_precision(same[:1], same[:1], seed=0)
    assert batch == 1 and np.isnan(top).all()


def test_r_precision_counts_full_batches_only():
    rng = np.random.default_rng(6)
    same = np.ones((70, 4))  # 2 full batches of 32; the 6 left over are not scored
    top, batch = r_precision(same, same.copy(), seed=0)
    assert batch == 32
    np.testing.assert_allclose(top, [1 / 32, 2 / 32, 3 / 32])
    # Different seeds shuffle differently, same seed gives the same answer.
    t, m = rng.normal(size=(70, 4)), rng.normal(size=(70, 4))
    assert r_precision(t, m, seed=1)[0].tolist() == r_precision(t, m, seed=1)[0].tolist()


def test_diversity_and_mm_distance_known_values():
    assert diversity(np.ones((50, 8))) == 0.0
    x = np.random.default_rng(7).normal(size=(1000, 64))
    # Two independent N(0, I_64) points lie sqrt(2 * 64) apart, to within the chi distribution's small bias.
    assert diversity(x, seed=0) == pytest.approx(math.sqrt(128), rel=0.03)
    assert diversity(3.0 * x, seed=0) == pytest.approx(3.0 * diversity(x, seed=0))  # same seeded pairs
    assert math.isnan(diversity(x[:1]))
    shift = np.zeros(64)
    shift[:2] = (3.0, 4.0)
    assert mm_distance(x + shift, x) == pytest.approx(5.0)


def test_metrics_table_prints_missing_values_as_dashes_and_the_note():
    rows = {"real (test set)": {"r_precision_top1": 0.5, "fid": 0.0123, "diversity": 1.2, "skating_ratio": None},
            "MotionSSM": {"feature_mse": 0.25, "skating_ratio": 0.1, "jerk_mps3": 40.0, "fid": float("nan")}}
    table = metrics_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["feat", "MSE", "skating", "penetr.", "m", "float", "m", "jerk", "m/s3", "R@1", "R@2",
                                "R@3", "FID", "diversity", "MM-dist"]
    real = next(line for line in lines if line.startswith("real (test set)"))
    assert real.split()[3:] == ["-", "-", "-", "-", "-", "0.500", "-", "-", "0.012", "1.200", "-"]
    ssm = next(line for line in lines if line.startswith("MotionSSM"))
    assert ssm.split()[1:] == ["0.2500", "0.100", "-", "-", "40.0", "-", "-", "-", "-", "-", "-"]
    assert lines[-1] == f"Note: {EVALUATOR_NOTE}"
    assert len({len(line) for line in lines[:-1] if not set(line) <= {"-"}}) == 1  # aligned columns


# ---------------------------------------------------------------------------------------------------
# A tiny evaluator on generated KIT-ML data

EVAL_EPOCHS = 30  # measured held-out R@1 0.55-0.65 over 3 data seeds x 2 evaluator seeds (chance 0.04-0.05)


@dataclass
class Trained:
    root: Path
    train: MotionSplit
    held_out: list[MotionSample]  # val + test: ~20 motions, so R-precision ranks among all of them
    vocab: WordVocab
    evaluator: TextMotionEvaluator


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on shared cores
    try:
        root = tmp_path_factory.mktemp("kit_eval") / "kit"
        synth_kit_ml(root, motions=100, seed=0)
        train = read_motion_dataset(root, KIT, "train")
        held = read_motion_dataset(root, KIT, "val").samples + read_motion_dataset(root, KIT, "test").samples
        vocab = WordVocab.build(c.text for s in train.samples for c in s.captions)
        cfg = EvaluatorConfig.tiny(len(vocab), KIT.feature_dim, epochs=EVAL_EPOCHS)
        evaluator = train_evaluator(train.samples, vocab, cfg)
        yield Trained(root, train, held, vocab, evaluator)
    finally:
        torch.set_num_threads(threads)


def _batch(t: Trained, samples: list[MotionSample]) -> dict[str, torch.Tensor]:
    return collate_motion(samples, t.vocab, t.evaluator.cfg.max_text_len)  # first caption of each


def test_trained_evaluator_matches_captions_to_held_out_motions(trained: Trained):
    t = trained
    assert t.evaluator.history[-1] < 0.5 * t.evaluator.history[0]  # the contrastive loss fell
    b = _batch(t, t.held_out)
    m = text_motion_metrics(t.evaluator, b["text_tokens"], b["features"], b["lengths"], seed=0)
    n = len(t.held_out)
    assert m["real_r_precision_batch"] == n < 32  # fewer than 32: one batch of all
    assert m["real_r_precision_top1"] > 0.3 >= 6 / n  # measured 0.65: 13x chance (1/n = 0.05)
    assert m["real_r_precision_top3"] > 0.6  # measured 0.95; chance 0.15
    text = t.evaluator.embed_texts(b["text_tokens"])
    motion = t.evaluator.embed_motions(b["features"], b["lengths"])
    dist = np.linalg.norm(motion[:, None] - text[None], axis=-1)  # (N, N)
    mismatched = dist[~np.eye(n, dtype=bool)].mean()
    assert m["real_mm_distance"] == pytest.approx(np.diag(dist).mean())
    assert m["real_mm_distance"] < 0.75 * mismatched  # measured 0.64 vs ~1.2
    assert 0.0 < m["real_diversity"] <= 2.0 and 0.0 < m["real_fid"]  # unit vectors: distances in [0, 2]


def test_generated_motions_paired_with_the_wrong_captions_lose_precision_not_fid(trained: Trained):
    t = trained
    b = _batch(t, t.held_out)
    rolled = torch.roll(torch.arange(len(t.held_out)), 1)  # the same motions, each under another caption
    m = text_motion_metrics(t.evaluator, b["text_tokens"], b["features"], b["lengths"],
                            b["features"][rolled], b["lengths"][rolled], seed=0)
    assert m["fid"] == pytest.approx(0.0, abs=1e-6)  # the same set of motions: FID cannot tell
    assert m["diversity"] == pytest.approx(m["real_diversity"], rel=0.3)
    assert m["r_precision_top1"] < m["real_r_precision_top1"] - 0.3  # R-precision and MM-dist can
    assert m["mm_distance"] > m["real_mm_distance"] + 0.2
    real_row, gen_row = split_rows(m)
    table = metrics_table({"real (test set)": real_row, "shuffled": gen_row})
    assert f"{real_row['r_precision_top1']:.3f}" in table.splitlines()[2]


def test_motion_embedding_does_not_depend_on_padding_or_batch(trained: Trained):
    t = trained
    samples = sorted(t.held_out, key=lambda s: s.length)[:3]
    alone = _batch(t, samples[:1])
    together = _batch(t, samples + [max(t.held_out, key=lambda s: s.length)])  # padded to the longest
    first = t.evaluator.embed_motions(alone["features"], alone["lengths"])[0]
    np.testing.assert_allclose(t.evaluator.embed_motions(together["features"], together["lengths"])[0], first,
                               atol=1e-5)
    tokens = together["text_tokens"]
    wider = torch.nn.functional.pad(tokens, (0, 10))  # more <pad> columns
    np.testing.assert_allclose(t.evaluator.embed_texts(wider), t.evaluator.embed_texts(tokens), atol=1e-5)


def test_save_load_round_trip_gives_identical_embeddings(trained: Trained, tmp_path: Path):
    t = trained
    directory = t.evaluator.save(tmp_path / "evaluator")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.pt", "vocab.json"]
    loaded = TextMotionEvaluator.load(directory)
    assert loaded.cfg == t.evaluator.cfg and loaded.vocab == t.vocab and not loaded.training
    b = _batch(t, t.held_out)
    assert np.array_equal(loaded.embed_texts(b["text_tokens"]), t.evaluator.embed_texts(b["text_tokens"]))
    assert np.array_equal(loaded.embed_motions(b["features"], b["lengths"]),
                          t.evaluator.embed_motions(b["features"], b["lengths"]))
    assert loaded.history == t.evaluator.history


def test_training_is_deterministic_given_the_seed(trained: Trained):
    t = trained
    small = t.train.samples[:24]
    cfg = EvaluatorConfig.tiny(len(t.vocab), KIT.feature_dim, epochs=2, batch_size=8)
    a, b = train_evaluator(small, t.vocab, cfg), train_evaluator(small, t.vocab, cfg)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    c = train_evaluator(small, t.vocab, EvaluatorConfig.tiny(len(t.vocab), KIT.feature_dim, epochs=2, batch_size=8,
                                                             seed=1))
    assert not torch.equal(a.state_dict()["text_encoder.out.weight"], c.state_dict()["text_encoder.out.weight"])


def test_evaluator_cache_is_keyed_by_dataset_fingerprint_and_config(trained: Trained, tmp_path: Path):
    t = trained
    small = MotionSplit(t.train.spec, "train", t.train.samples[:16], t.train.summary, t.train.stats)
    said: list[str] = []
    first = load_or_train_evaluator(tmp_path, small, size="tiny", log=said.append, epochs=1)
    assert len(said) == 1 and "training one" in said[0]
    again = load_or_train_evaluator(tmp_path, small, size="tiny", log=said.append, epochs=1)
    assert len(said) == 1  # found in the cache, nothing trained
    b = _batch(t, t.held_out[:4])
    assert np.array_equal(again.embed_motions(b["features"], b["lengths"]),
                          first.embed_motions(b["features"], b["lengths"]))
    stats = small.stats
    assert stats is not None
    fp = dataset_fingerprint(small.samples, stats, "kit")
    assert first.fingerprint == fp and evaluator_cache_dir(tmp_path, fp, first.cfg).is_dir()
    # Other ids, other statistics or another dataset name give another key; the order of samples does not.
    assert dataset_fingerprint(small.samples[::-1], stats, "kit") == fp
    assert dataset_fingerprint(small.samples[1:], stats, "kit") != fp
    assert dataset_fingerprint(small.samples, MotionStats(stats.mean, stats.std * 1.01), "kit") != fp
    assert dataset_fingerprint(small.samples, stats, "humanml3d") != fp
    # Another config (here: more epochs) is another cache entry.
    load_or_train_evaluator(tmp_path, small, size="tiny", log=said.append, epochs=2)
    assert len(said) == 2 and len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2
