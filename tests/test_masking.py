"""4M masking: budgets follow the ranges and the Dirichlet weights, inputs and targets never overlap,
packed rows gather the right tokens, and the same seed gives the same batch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motionlab.config import load_config
from motionlab.masking import MaskedBatch, MaskingSpec, mask_batch, sample_budgets, whole_modality_batch

FIELDS = ("enc_tokens", "enc_mod", "enc_pos", "enc_pad", "dec_tokens", "dec_mod", "dec_pos", "dec_pad")


def _spec(lens, in_alphas, tg_alphas, in_range, tg_range) -> MaskingSpec:
    return MaskingSpec(
        modalities=tuple(f"m{i}" for i in range(len(lens))),
        max_seq_lens=tuple(lens),
        input_alphas=tuple(in_alphas),
        target_alphas=tuple(tg_alphas),
        input_tokens_range=tuple(in_range),
        target_tokens_range=tuple(tg_range),
    )


def _tokens(spec: MaskingSpec, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        n: rng.integers(1, 50_000, size=(batch, L)) for n, L in zip(spec.modalities, spec.max_seq_lens, strict=True)
    }


def _chosen(batch: MaskedBatch, side: str, row: int) -> list[tuple[int, int]]:
    """(modality, position) pairs of one packed row, in packed order."""
    real = ~getattr(batch, f"{side}_pad")[row]
    mods, poss = getattr(batch, f"{side}_mod")[row][real], getattr(batch, f"{side}_pos")[row][real]
    return list(zip(mods.tolist(), poss.tolist(), strict=True))


def _check_packed(batch: MaskedBatch, side: str, tokens: dict[str, np.ndarray], spec: MaskingSpec, valid) -> None:
    """Padding only at the end and zeroed; real slots gather tokens[mod][row, pos], sorted, within valid length."""
    tok, mod, pos, pad = (getattr(batch, f"{side}_{k}") for k in ("tokens", "mod", "pos", "pad"))
    assert tok.dtype == mod.dtype == pos.dtype == np.int64 and pad.dtype == bool
    assert np.all(pad[:, 1:] >= pad[:, :-1]), "a real slot follows a padding slot"
    assert not tok[pad].any() and not mod[pad].any() and not pos[pad].any()
    for row in range(tok.shape[0]):
        pairs = _chosen(batch, side, row)
        assert pairs == sorted(set(pairs)), "not ordered by modality then position, or a duplicate"
        for slot, (m, p) in enumerate(pairs):
            name = spec.modalities[m]
            assert p < valid[name][row]
            assert tok[row, slot] == tokens[name][row, p]


ALPHAS = st.sampled_from([0.0, 0.3, 1.0, 2.0])


@st.composite
def cases(draw: st.DrawFn):
    m = draw(st.integers(1, 4))
    lens = draw(st.lists(st.integers(1, 30), min_size=m, max_size=m))
    in_a = draw(st.lists(ALPHAS, min_size=m, max_size=m).filter(any))
    tg_a = draw(st.lists(ALPHAS, min_size=m, max_size=m).filter(any))
    in_lo = draw(st.integers(0, 20))
    in_hi = draw(st.integers(in_lo, 40))
    tg_lo = draw(st.integers(0, 20))
    tg_hi = draw(st.integers(tg_lo, 40))
    batch = draw(st.integers(1, 6))
    valid = {
        f"m{i}": np.array(draw(st.lists(st.integers(0, L), min_size=batch, max_size=batch))) for i, L in enumerate(lens)
    }
    return _spec(lens, in_a, tg_a, (in_lo, in_hi), (tg_lo, tg_hi)), batch, valid, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_mask_batch_invariants(case) -> None:
    spec, b, valid, seed = case
    tokens = _tokens(spec, b, seed)
    out = mask_batch(tokens, spec, np.random.default_rng(seed), valid_lens=valid)
    assert out.enc_tokens.shape == (b, spec.input_tokens_range[1])
    assert out.dec_tokens.shape == (b, spec.target_tokens_range[1])
    for side in ("enc", "dec"):
        _check_packed(out, side, tokens, spec, valid)
    for row in range(b):
        enc, dec = _chosen(out, "enc", row), _chosen(out, "dec", row)
        assert not set(enc) & set(dec), "a token is both input and target"
        # a zero alpha gives exactly nothing
        assert all(spec.input_alphas[m] > 0 for m, _ in enc)
        assert all(spec.target_alphas[m] > 0 for m, _ in dec)


def test_budget_totals_cover_the_inclusive_ranges_when_lengths_allow() -> None:
    spec = _spec((50, 50, 50), (1.0, 0.5, 2.0), (0.3, 1.0, 1.0), (3, 7), (10, 12))
    valid = np.full((4000, 3), 50)
    inp, tgt = sample_budgets(spec, np.random.default_rng(1), valid)
    assert inp.shape == tgt.shape == (4000, 3) and inp.dtype == tgt.dtype == np.int64
    assert set(inp.sum(1).tolist()) == {3, 4, 5, 6, 7}
    assert set(tgt.sum(1).tolist()) == {10, 11, 12}
    assert (inp >= 0).all() and (tgt >= 0).all()


def test_packed_rows_fill_to_the_drawn_total() -> None:
    spec = _spec((40, 40), (1.0, 1.0), (1.0, 1.0), (5, 9), (2, 4))
    out = mask_batch(_tokens(spec, 300), spec, np.random.default_rng(2))
    n_in, n_tg = (~out.enc_pad).sum(1), (~out.dec_pad).sum(1)
    assert out.enc_pad.shape == (300, 9) and out.dec_pad.shape == (300, 4)
    assert n_in.min() == 5 and n_in.max() == 9
    assert n_tg.min() == 2 and n_tg.max() == 4


def test_budgets_clamp_to_valid_length_and_targets_to_what_inputs_left() -> None:
    spec = _spec((10, 10), (1.0, 1.0), (1.0, 1.0), (30, 30), (30, 30))
    valid = np.array([[10, 10], [3, 0], [0, 7]])
    inp, tgt = sample_budgets(spec, np.random.default_rng(3), valid)
    assert (inp <= valid).all() and (inp + tgt <= valid).all()
    assert inp[1, 1] == tgt[1, 1] == 0 and inp[2, 0] == tgt[2, 0] == 0
    # 30 + 30 requested from 20 tokens: the first row is used up entirely
    assert (inp[0] + tgt[0]).tolist() == [10, 10]


def test_near_zero_alpha_starves_its_modality() -> None:
    valid = np.full((3000, 2), 200)
    starved = _spec((200, 200), (1e-3, 1.0), (1e-3, 1.0), (64, 64), (64, 64))
    inp, tgt = sample_budgets(starved, np.random.default_rng(4), valid)
    assert inp[:, 0].mean() < 0.02 * inp[:, 1].mean()
    assert tgt[:, 0].mean() < 0.02 * tgt[:, 1].mean()
    # the floor's leftover tokens go to fresh-draw winners, not in turn: a round-robin would feed the tiny
    # alpha about one token per sample here
    five = _spec((200,) * 5, (1e-3, 1.0, 1.0, 1.0, 1.0), (1.0,) * 5, (64, 64), (0, 0))
    inp, _ = sample_budgets(five, np.random.default_rng(4), np.full((3000, 5), 200))
    assert (inp.sum(1) == 64).all() and inp[:, 0].mean() < 0.2
    even = _spec((200, 200), (1.0, 1.0), (1.0, 1.0), (64, 64), (64, 64))
    inp, _ = sample_budgets(even, np.random.default_rng(4), valid)
    assert 28 < inp[:, 0].mean() < 36  # E = 32


def test_zero_alpha_gives_exactly_no_tokens() -> None:
    spec = _spec((30, 30, 30), (0.0, 0.01, 1.0), (1.0, 0.0, 0.0), (0, 40), (1, 20))
    inp, tgt = sample_budgets(spec, np.random.default_rng(5), np.full((5000, 3), 30))
    assert not inp[:, 0].any() and not tgt[:, 1:].any()
    assert (tgt[:, 0] == np.minimum(tgt.sum(1), 30 - inp[:, 0])).all()
    out = mask_batch(_tokens(spec, 64), spec, np.random.default_rng(5))
    assert not (out.enc_mod[~out.enc_pad] == 0).any()
    assert (out.dec_mod[~out.dec_pad] == 0).all()


def test_input_positions_are_uniform_over_valid_positions() -> None:
    spec = _spec((12,), (1.0,), (1.0,), (1, 1), (2, 2))
    b = 4000
    out = mask_batch(_tokens(spec, b), spec, np.random.default_rng(6), valid_lens={"m0": np.full(b, 8)})
    counts = np.bincount(out.enc_pos[:, 0], minlength=12)
    assert counts[8:].sum() == 0
    assert counts[:8].min() > 400 and counts[:8].max() < 600  # E = 500
    tcounts = np.bincount(out.dec_pos[~out.dec_pad], minlength=12)
    assert tcounts[8:].sum() == 0 and tcounts[:8].min() > 850  # E = 1000


def test_targets_take_the_rest_when_budgets_cover_the_modality() -> None:
    spec = _spec((6,), (1.0,), (1.0,), (2, 2), (10, 10))
    tokens = _tokens(spec, 50)
    out = mask_batch(tokens, spec, np.random.default_rng(7), valid_lens={"m0": np.full(50, 5)})
    for row in range(50):
        enc, dec = _chosen(out, "enc", row), _chosen(out, "dec", row)
        assert len(enc) == 2 and len(dec) == 3
        assert sorted(p for _, p in enc + dec) == [0, 1, 2, 3, 4]


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    spec = _spec((64, 39, 64), (1.5, 1.5, 0.5), (0.5, 0.5, 1.5), (24, 64), (10, 64))
    tokens = _tokens(spec, 16)
    a = mask_batch(tokens, spec, np.random.default_rng(11)).as_dict()
    b = mask_batch(tokens, spec, np.random.default_rng(11)).as_dict()
    c = mask_batch(tokens, spec, np.random.default_rng(12)).as_dict()
    assert tuple(a) == FIELDS
    assert all(np.array_equal(a[k], b[k]) for k in FIELDS)
    assert not np.array_equal(a["enc_pos"], c["enc_pos"])


@pytest.mark.parametrize("stem", ["m1", "m2", "m3", "m4"])
def test_from_config_on_shipped_configs(stem: str) -> None:
    cfg = load_config(stem, preset="tiny")
    spec = MaskingSpec.from_config(cfg)
    assert spec.modalities == tuple(cfg.modalities)
    assert spec.max_seq_lens == tuple(cfg.max_seq_lens)
    assert spec.input_alphas == tuple(cfg.input_alphas) and spec.target_alphas == tuple(cfg.target_alphas)
    assert (spec.num_input, spec.num_target) == (cfg.input_tokens_range[1], cfg.target_tokens_range[1])
    tokens = _tokens(spec, cfg.batch_size)
    out = mask_batch(tokens, spec, np.random.default_rng(0))
    assert out.enc_tokens.shape == (cfg.batch_size, spec.num_input)
    assert out.dec_tokens.shape == (cfg.batch_size, spec.num_target)
    valid = {n: np.full(cfg.batch_size, L) for n, L in zip(spec.modalities, spec.max_seq_lens, strict=True)}
    _check_packed(out, "enc", tokens, spec, valid)


def test_m4_tiny_spec_values() -> None:
    spec = MaskingSpec.from_config(load_config("m4", preset="tiny"))
    assert spec.modalities == ("tok_rgb", "coords", "tok_rgb_next", "coords_next")
    assert spec.max_seq_lens == (64, 39, 64, 39)
    assert spec.input_tokens_range == (24, 103) and spec.target_tokens_range == (10, 64)
    assert (spec.num_input, spec.num_target) == (103, 64)
    assert spec.forecast_share == 0.5 and spec.temporal == ("current", "current", "next", "next")


def test_whole_modality_batch_layout() -> None:
    spec = _spec((4, 3, 5), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (1, 2), (1, 2))
    tokens = {
        "m0": np.array([[1, 2, 3, 4], [5, 6, 7, 8]]),
        "m1": np.array([[10, 11, 12], [13, 14, 15]]),
        "m2": np.array([[20, 21, 22, 23, 24], [25, 26, 27, 28, 29]]),
    }
    # inputs given out of spec order: the layout still follows the spec
    out = whole_modality_batch(tokens, spec, inputs=["m2", "m0"], targets=["m1"], valid_lens={"m0": np.array([2, 4])})
    assert out.enc_tokens.tolist() == [[1, 2, 20, 21, 22, 23, 24, 0, 0], [5, 6, 7, 8, 25, 26, 27, 28, 29]]
    assert out.enc_mod.tolist() == [[0, 0, 2, 2, 2, 2, 2, 0, 0], [0, 0, 0, 0, 2, 2, 2, 2, 2]]
    assert out.enc_pos.tolist() == [[0, 1, 0, 1, 2, 3, 4, 0, 0], [0, 1, 2, 3, 0, 1, 2, 3, 4]]
    assert out.enc_pad.tolist() == [[False] * 7 + [True] * 2, [False] * 9]
    assert out.dec_tokens.tolist() == [[10, 11, 12], [13, 14, 15]]
    assert out.dec_mod.tolist() == [[1, 1, 1]] * 2 and out.dec_pos.tolist() == [[0, 1, 2]] * 2
    assert not out.dec_pad.any()


def test_whole_modality_batch_generation_targets_need_no_tokens() -> None:
    spec = _spec((4, 3), (1.0, 1.0), (1.0, 1.0), (1, 2), (1, 2))
    out = whole_modality_batch({"m0": np.ones((3, 4), dtype=np.int32)}, spec, inputs=["m0"], targets=["m1"])
    assert out.enc_tokens.tolist() == [[1, 1, 1, 1]] * 3
    assert out.dec_tokens.shape == (3, 3) and not out.dec_tokens.any() and not out.dec_pad.any()
    assert out.dec_mod.tolist() == [[1, 1, 1]] * 3


def test_whole_modality_batch_rejects_bad_tasks() -> None:
    spec = _spec((4, 3), (1.0, 1.0), (1.0, 1.0), (1, 2), (1, 2))
    tokens = _tokens(spec, 2)
    with pytest.raises(ValueError, match="both input and target"):
        whole_modality_batch(tokens, spec, inputs=["m0", "m1"], targets=["m1"])
    with pytest.raises(ValueError, match="not in the spec"):
        whole_modality_batch(tokens, spec, inputs=["m0"], targets=["captions"])
    with pytest.raises(ValueError, match="targets is empty"):
        whole_modality_batch(tokens, spec, inputs=["m0"], targets=[])
    with pytest.raises(ValueError, match="no 'm0'"):
        whole_modality_batch({"m1": tokens["m1"]}, spec, inputs=["m0"], targets=["m1"])


def test_mask_batch_rejects_bad_tokens() -> None:
    spec = _spec((4, 3), (1.0, 1.0), (1.0, 1.0), (1, 2), (1, 2))
    rng = np.random.default_rng(0)
    good = _tokens(spec, 2)
    with pytest.raises(ValueError, match="no 'm1'"):
        mask_batch({"m0": good["m0"]}, spec, rng)
    with pytest.raises(ValueError, match=r"shape \(B, L\)"):
        mask_batch({**good, "m1": good["m1"][0]}, spec, rng)
    with pytest.raises(ValueError, match="batch size 3"):
        mask_batch({**good, "m1": np.zeros((3, 3), dtype=np.int64)}, spec, rng)
    with pytest.raises(ValueError, match="more than max_seq_len 3"):
        mask_batch({**good, "m1": np.zeros((2, 5), dtype=np.int64)}, spec, rng)
    with pytest.raises(ValueError, match="integer ids"):
        mask_batch({**good, "m1": np.zeros((2, 3))}, spec, rng)
    with pytest.raises(ValueError, match=r"valid_lens\['m0'\] must lie in \[0, 4\]"):
        mask_batch(good, spec, rng, valid_lens={"m0": np.array([1, 5])})
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        mask_batch(good, spec, rng, valid_lens={"m0": np.array([1, 2, 3])})
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        sample_budgets(spec, rng, np.zeros((2, 3), dtype=np.int64))


def test_spec_rejects_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="input_alphas has 1 entries"):
        _spec((4, 3), (1.0,), (1.0, 1.0), (1, 2), (1, 2))
    with pytest.raises(ValueError, match="target_alphas is all 0"):
        _spec((4, 3), (1.0, 1.0), (0.0, 0.0), (1, 2), (1, 2))
    with pytest.raises(ValueError, match="input_tokens_range"):
        _spec((4, 3), (1.0, 1.0), (1.0, 1.0), (3, 2), (1, 2))
    with pytest.raises(ValueError, match="input_alphas must be finite"):
        _spec((4, 3), (-1.0, 1.0), (1.0, 1.0), (1, 2), (1, 2))
    spec = _spec([4, 3], [1, 1], [1, 1], [1, 2], [1, 2])
    assert spec.input_tokens_range == (1, 2) and isinstance(spec.input_alphas[0], float)


def test_forecast_samples_get_the_whole_present_and_ask_for_the_future() -> None:
    spec = MaskingSpec(modalities=("tok_rgb", "coords", "tok_rgb_next", "coords_next"), max_seq_lens=(16, 39, 16, 39),
                       input_alphas=(1.5, 1.5, 0.5, 0.5), target_alphas=(0.5, 0.5, 1.5, 1.5),
                       input_tokens_range=(8, 55), target_tokens_range=(4, 30), forecast_share=0.5)
    assert spec.temporal == ("current", "current", "next", "next")  # from the registry
    batch = mask_batch(_tokens(spec, 400), spec, np.random.default_rng(3))
    forecast = []
    for row in range(400):
        inputs, targets = _chosen(batch, "enc", row), _chosen(batch, "dec", row)
        whole_present = sorted(inputs) == [(m, p) for m, n in ((0, 16), (1, 39)) for p in range(n)]
        forecast.append(whole_present)
        if whole_present:  # every target is a next-frame token, the whole target budget split over them
            assert {m for m, _ in targets} <= {2, 3} and 0 < len(targets) <= 30  # clamped as in 4M
        assert not set(inputs) & set(targets)
    # About half the rows are forecasts (a plain 4M draw of all 55 current tokens is vanishingly rare).
    assert 0.4 < np.mean(forecast) < 0.6
    # The same seed gives the same batch.
    again = mask_batch(_tokens(spec, 400), spec, np.random.default_rng(3))
    assert all(np.array_equal(getattr(batch, f), getattr(again, f)) for f in FIELDS)
    with pytest.raises(ValueError, match="more than input_tokens_range's max"):
        MaskingSpec(**{**spec.__dict__, "input_tokens_range": (8, 40)})
    with pytest.raises(ValueError, match="needs current and next"):
        MaskingSpec(**{**spec.__dict__, "temporal": ("none",) * 4})
