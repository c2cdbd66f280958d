"""MaskGIT decoding and roll-outs: schedule, limits, reproducibility, exact recall of an overfitted mapping."""

from __future__ import annotations

import pytest
import torch

from motionlab.generation import decode_modality, rollout, unknown_schedule
from motionlab.generation.maskgit import _filter_logits
from motionlab.models import FourM, FourMConfig

# Untrained model with the four M4 modalities, small vocabularies.
FOUR = FourMConfig(
    modalities=("tok_rgb", "coords", "tok_rgb_next", "coords_next"),
    vocab_sizes=(32, 64, 32, 64),
    max_seq_lens=(4, 6, 4, 6),
    dim=32,
    enc_depth=1,
    dec_depth=1,
    head_dim=8,
)
# coords -> coords_next, trained on the shift a_k -> a_{k+1}.
SHIFT = FourMConfig(
    modalities=("coords", "coords_next"),
    vocab_sizes=(16, 16),
    max_seq_lens=(8, 8),
    dim=64,
    enc_depth=2,
    dec_depth=2,
    head_dim=16,
)
SHIFT_ROWS = torch.stack([(torch.arange(8) * 3 + k) % 16 for k in range(5)])  # (5, 8): a_0 .. a_4


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture()
def untrained() -> FourM:
    torch.manual_seed(0)
    return FourM(FOUR)


def shift_batch(a: torch.Tensor, b: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inputs: all of `a` plus the `known` slots of `b`; targets: the other slots of `b`. (R, 8) each."""
    R, L = a.shape
    pos = torch.arange(L).expand(R, -1)
    zeros = torch.zeros(R, L, dtype=torch.long)
    return {
        "enc_tokens": torch.cat([a, b], 1),
        "enc_mod": torch.cat([zeros, zeros + 1], 1),
        "enc_pos": torch.cat([pos, pos], 1),
        "enc_pad": torch.cat([torch.zeros(R, L, dtype=torch.bool), ~known], 1),
        "dec_tokens": b,
        "dec_mod": zeros + 1,
        "dec_pos": pos,
        "dec_pad": known,
    }


@pytest.fixture(scope="module")
def shift_model() -> FourM:
    """A tiny FourM overfitted to a_k -> a_{k+1} (k = 0..3) given any subset of a_{k+1} as extra inputs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = FourM(SHIFT)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    a, b = SHIFT_ROWS[:4].repeat(4, 1), SHIFT_ROWS[1:].repeat(4, 1)  # (16, 8): every row under 4 masks
    for _ in range(300):
        # Each row keeps a random fraction of its target known, as MaskGIT will show it at inference.
        known = torch.rand(16, 8, generator=g) < torch.rand(16, 1, generator=g)
        known[torch.arange(16), torch.randint(8, (16,), generator=g)] = False  # at least one target per row
        loss, _, _ = model.compute_loss(shift_batch(a, b, known))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.final_loss = float(loss.detach())  # type: ignore[attr-defined]
    torch.set_num_threads(before)
    return model.train()


def test_cosine_schedule() -> None:
    assert unknown_schedule(4, 8) == [7, 5, 3, 0]  # floor(8 cos(pi/8)), floor(8 cos(pi/4)), ...
    assert unknown_schedule(8, 39)[:3] == [38, 36, 32] and unknown_schedule(8, 39)[-1] == 0
    assert unknown_schedule(1, 5) == [0]
    assert unknown_schedule(8, 2) == [1, 0]  # more steps than tokens: one per step, then done


def test_filter_logits_top_k_and_top_p() -> None:
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    keep = lambda out: torch.isfinite(out).tolist()  # noqa: E731
    assert keep(_filter_logits(logits, 1, None)) == [True, False, False, False]
    assert keep(_filter_logits(logits, 3, None)) == [True, True, True, False]
    assert keep(_filter_logits(logits, None, 0.7)) == [True, True, False, False]  # 0.5 < 0.7 <= 0.8
    assert keep(_filter_logits(logits, None, 0.4)) == [True, False, False, False]
    assert keep(_filter_logits(logits, 2, 0.99)) == [True, True, False, False]


def test_each_step_shows_decoded_tokens_to_the_encoder(untrained: FourM) -> None:
    seen: list[dict[str, torch.Tensor]] = []
    untrained.register_forward_pre_hook(lambda _, args: seen.append({k: v.clone() for k, v in args[0].items()}))
    inputs = {"tok_rgb": torch.randint(32, (2, 4)), "coords": torch.randint(64, (2, 6))}
    out = decode_modality(untrained, inputs, "coords_next", steps=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 6) and out.dtype == torch.long
    assert [b["dec_pos"].shape[1] for b in seen] == [6, 5, 4, 2]  # unknown_schedule(4, 6) = [5, 4, 2, 0]
    for batch in seen:
        target_slots = batch["enc_mod"] == 3
        assert torch.equal(batch["enc_tokens"][:, :10], torch.cat([inputs["tok_rgb"], inputs["coords"]], 1))
        assert int(target_slots.sum(1).max()) == 6 - batch["dec_pos"].shape[1]
        # Decoded tokens are fed back at their positions and never change afterwards.
        for row in range(2):
            pos = batch["enc_pos"][row][target_slots[row]]
            assert torch.equal(batch["enc_tokens"][row][target_slots[row]], out[row, pos])
            assert set(pos.tolist()).isdisjoint(batch["dec_pos"][row].tolist())
            assert set(pos.tolist()) | set(batch["dec_pos"][row].tolist()) == set(range(6))


def test_limits_bound_every_position(untrained: FourM) -> None:
    limits = torch.tensor([7, 7, 3, 7, 7, 3])  # pose-like: every third position a 3-state visibility
    inputs = {"coords": torch.randint(64, (8, 6))}
    g = torch.Generator().manual_seed(2)
    out = decode_modality(untrained, inputs, "coords_next", steps=3, temperature=5.0, limits=limits, generator=g)
    assert out.shape == (8, 6)
    assert bool((out >= 0).all()) and bool((out < limits).all())
    assert len(out.unique()) > 3  # hot sampling actually spreads over the allowed ids
    with pytest.raises(ValueError, match="limits"):
        decode_modality(untrained, inputs, "coords_next", limits=torch.tensor([7, 7, 3]))


def test_same_seed_same_ids(untrained: FourM) -> None:
    inputs = {"tok_rgb": torch.randint(32, (3, 4))}

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return decode_modality(untrained, inputs, "coords", steps=4, temperature=2.0, top_p=0.95, generator=g)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_restores_training_mode(untrained: FourM) -> None:
    untrained.train()
    decode_modality(untrained, {"coords": torch.zeros(1, 6, dtype=torch.long)}, "coords_next", steps=2)
    assert untrained.training
    untrained.eval()
    decode_modality(untrained, {"coords": torch.zeros(1, 6, dtype=torch.long)}, "coords_next", steps=2)
    assert not untrained.training


def test_rejects_target_among_inputs(untrained: FourM) -> None:
    with pytest.raises(ValueError, match="both an input and the target"):
        decode_modality(untrained, {"coords": torch.zeros(1, 6, dtype=torch.long)}, "coords")


def test_rollout_feeds_predictions_back(untrained: FourM) -> None:
    inputs = {"tok_rgb": torch.randint(32, (2, 4)), "coords": torch.randint(64, (2, 6))}
    chain = {"coords_next": "coords", "tok_rgb_next": "tok_rgb"}
    kwargs = {"steps": 3, "temperature": 1.5, "top_k": 20}
    steps = rollout(untrained, inputs, chain, 2, generator=torch.Generator().manual_seed(3), **kwargs)
    assert len(steps) == 2 and all(list(s) == list(chain) for s in steps)
    assert all(s["coords_next"].shape == (2, 6) and s["tok_rgb_next"].shape == (2, 4) for s in steps)
    # The same calls by hand, with the generator in the same state.
    g = torch.Generator().manual_seed(3)
    first = {t: decode_modality(untrained, inputs, t, generator=g, **kwargs) for t in chain}
    fed = {"tok_rgb": first["tok_rgb_next"], "coords": first["coords_next"]}
    second = {t: decode_modality(untrained, fed, t, generator=g, **kwargs) for t in chain}
    for t in chain:
        assert torch.equal(steps[0][t], first[t]) and torch.equal(steps[1][t], second[t])
    assert not torch.equal(steps[0]["coords_next"], steps[1]["coords_next"])


def test_rollout_needs_equal_lengths() -> None:
    c = FourMConfig.from_dict({**FOUR.to_dict(), "max_seq_lens": [4, 6, 4, 12]})  # two next frames of pose
    model = FourM(c)
    with pytest.raises(ValueError, match="same length"):
        rollout(model, {"coords": torch.zeros(1, 6, dtype=torch.long)}, {"coords_next": "coords"}, 1)


def test_decodes_the_overfitted_mapping(shift_model: FourM) -> None:
    assert shift_model.final_loss < 0.05  # type: ignore[attr-defined]
    a, b = SHIFT_ROWS[:4], SHIFT_ROWS[1:]
    greedy = decode_modality(shift_model, {"coords": a}, "coords_next", steps=4, temperature=0.0)
    assert torch.equal(greedy, b)
    g = torch.Generator().manual_seed(0)
    sampled = decode_modality(shift_model, {"coords": a}, "coords_next", steps=8, top_k=1, generator=g)
    assert torch.equal(sampled, b)
    assert shift_model.training


def test_rollout_walks_the_overfitted_chain(shift_model: FourM) -> None:
    steps = rollout(shift_model, {"coords": SHIFT_ROWS[:1]}, {"coords_next": "coords"}, 4, steps=4, temperature=0.0)
    assert [s["coords_next"][0].tolist() for s in steps] == SHIFT_ROWS[1:].tolist()
