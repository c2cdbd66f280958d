"""FourM: shapes, masking semantics of the loss, exact loss values, overfitting, configs and accounting."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from motionlab.config import load_config
from motionlab.models import FourM, FourMConfig

TINY = FourMConfig(
    modalities=("tok_rgb", "coords", "captions"),
    vocab_sizes=(16, 12, 10),
    max_seq_lens=(8, 6, 5),
    dim=32,
    enc_depth=1,
    dec_depth=2,
    head_dim=8,
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def make_batch(
    cfg: FourMConfig, n_in: list[int], n_tgt: list[int], seed: int = 0, target_mods: tuple[int, ...] | None = None
) -> dict[str, torch.Tensor]:
    """Rows of random disjoint input/target slots, padded (zeros, pad=True) to the longest row."""
    g = torch.Generator().manual_seed(seed)
    slots = [(m, p) for m, length in enumerate(cfg.max_seq_lens) for p in range(length)]
    rows_in, rows_tgt = [], []
    for k_in, k_tgt in zip(n_in, n_tgt, strict=True):
        order = [slots[i] for i in torch.randperm(len(slots), generator=g).tolist()]
        inputs = order[:k_in]
        rest = [s for s in order[k_in:] if target_mods is None or s[0] in target_mods]
        rows_in.append(inputs)
        rows_tgt.append(rest[:k_tgt])

    def pack(rows: list[list[tuple[int, int]]], prefix: str) -> dict[str, torch.Tensor]:
        n = max(len(r) for r in rows)
        out = {f"{prefix}_{k}": torch.zeros(len(rows), n, dtype=torch.long) for k in ("tokens", "mod", "pos")}
        out[f"{prefix}_pad"] = torch.ones(len(rows), n, dtype=torch.bool)
        for b, row in enumerate(rows):
            for j, (m, p) in enumerate(row):
                out[f"{prefix}_tokens"][b, j] = int(torch.randint(cfg.vocab_sizes[m], (1,), generator=g))
                out[f"{prefix}_mod"][b, j] = m
                out[f"{prefix}_pos"][b, j] = p
                out[f"{prefix}_pad"][b, j] = False
        return out

    return {**pack(rows_in, "enc"), **pack(rows_tgt, "dec")}


def add_padding(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    """The same batch with `extra` padding slots interleaved at the front of both token sets."""
    out = {}
    for prefix in ("enc", "dec"):
        B = batch[f"{prefix}_pad"].shape[0]
        for key in ("tokens", "mod", "pos"):
            out[f"{prefix}_{key}"] = torch.cat([torch.zeros(B, extra, dtype=torch.long), batch[f"{prefix}_{key}"]], 1)
        out[f"{prefix}_pad"] = torch.cat([torch.ones(B, extra, dtype=torch.bool), batch[f"{prefix}_pad"]], 1)
    return out


def expected_params(c: FourMConfig) -> int:
    """Parameter count from the architecture, written out independently of the module code."""
    D, H, M = c.dim, c.mlp_dim, len(c.modalities)
    ln = 2 * D
    attn = 4 * D * D + 4 * D  # q, kv (2D), proj with biases
    mlp = D * H + H + H * D + D
    enc_block = 2 * ln + attn + mlp
    dec_block = 4 * ln + 2 * attn + mlp
    slots = 2 * (sum(c.max_seq_lens) * D + M * D)  # encoder and decoder slot embeddings
    tokens = (max(c.vocab_sizes) if c.shared_vocab else sum(c.vocab_sizes)) * D
    heads = 0 if c.shared_vocab else sum(c.vocab_sizes) * D
    return tokens + slots + D + c.enc_depth * enc_block + ln + (D * D + D) + c.dec_depth * dec_block + ln + heads


@pytest.fixture()
def model() -> FourM:
    torch.manual_seed(0)
    return FourM(TINY).eval()


def test_shapes(model: FourM) -> None:
    batch = make_batch(TINY, [5, 9], [7, 3])
    hidden = model(batch)
    assert hidden.shape == (2, 7, TINY.dim)
    for i, v in enumerate(TINY.vocab_sizes):
        assert model.modality_logits(hidden, i).shape == (2, 7, v)
    loss, losses, accs = model.compute_loss(batch)
    assert loss.shape == () and torch.isfinite(loss)
    assert set(losses) == set(accs) <= set(TINY.modalities)
    assert model.num_params() == expected_params(TINY)


def test_padding_does_not_change_loss(model: FourM) -> None:
    batch = make_batch(TINY, [6, 10, 4], [5, 2, 8], seed=1)
    loss, losses, accs = model.compute_loss(batch)
    loss_p, losses_p, accs_p = model.compute_loss(add_padding(batch, 3))
    torch.testing.assert_close(loss_p, loss, atol=1e-6, rtol=1e-5)
    assert losses.keys() == losses_p.keys()
    for name in losses:
        torch.testing.assert_close(losses_p[name], losses[name], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(accs_p[name], accs[name])
    # The hidden states of real slots are the same too.
    h, h_p = model(batch), model(add_padding(batch, 3))
    torch.testing.assert_close(h_p[:, 3:][~batch["dec_pad"]], h[~batch["dec_pad"]], atol=1e-6, rtol=1e-5)


def test_rows_without_inputs_or_targets_stay_finite(model: FourM) -> None:
    batch = make_batch(TINY, [0, 5], [4, 0], seed=2)  # row 0: no inputs; row 1: no targets
    model.train()
    loss, losses, _ = model.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # Nothing to predict at all: a zero loss that still backpropagates.
    empty = make_batch(TINY, [3, 3], [0, 0], seed=2)
    loss, losses, accs = model.compute_loss(empty)
    assert float(loss.detach()) == 0.0 and losses == {} and accs == {}
    loss.backward()
    # No inputs anywhere (unconditional generation): zero keys to attend to, still finite.
    blind = make_batch(TINY, [0, 0], [4, 6], seed=2)
    assert blind["enc_tokens"].shape == (2, 0) and torch.isfinite(model.compute_loss(blind)[0])


def test_absent_modality_is_left_out(model: FourM) -> None:
    batch = make_batch(TINY, [6, 6], [6, 6], seed=3, target_mods=(0, 1))  # no caption targets
    loss, losses, accs = model.compute_loss(batch)
    assert set(losses) == set(accs) == {"tok_rgb", "coords"}
    torch.testing.assert_close(loss, (losses["tok_rgb"] + losses["coords"]) / 2)


@torch.no_grad()
def test_loss_is_the_mean_of_per_modality_ce(model: FourM) -> None:
    batch = make_batch(TINY, [5, 7], [9, 6], seed=4)
    loss, losses, accs = model.compute_loss(batch)
    hidden = model(batch)
    logp = {i: F.log_softmax(model.modality_logits(hidden, i), dim=-1) for i in range(3)}
    per_mod, acc = {}, {}
    for i, name in enumerate(TINY.modalities):
        nll, hits, count = 0.0, 0, 0
        for b in range(2):
            for j in range(hidden.shape[1]):
                if batch["dec_pad"][b, j] or batch["dec_mod"][b, j] != i:
                    continue
                target = int(batch["dec_tokens"][b, j])
                nll -= float(logp[i][b, j, target])
                hits += int(logp[i][b, j].argmax()) == target
                count += 1
        if count:
            per_mod[name], acc[name] = nll / count, hits / count
    assert losses.keys() == per_mod.keys()
    for name in per_mod:
        assert float(losses[name]) == pytest.approx(per_mod[name], rel=1e-5)
        assert float(accs[name]) == pytest.approx(acc[name])
    assert float(loss) == pytest.approx(sum(per_mod.values()) / len(per_mod), rel=1e-5)


@torch.no_grad()
def test_zero_heads_give_log_vocab(model: FourM) -> None:
    """With all-zero heads every logit is 0, so each modality's CE is exactly log(V_m)."""
    for head in model.heads:
        torch.nn.init.zeros_(head.weight)
    batch = make_batch(TINY, [4, 4, 4], [10, 10, 10], seed=5)
    loss, losses, _ = model.compute_loss(batch)
    assert len(losses) == 3
    for name, value in losses.items():
        assert float(value) == pytest.approx(math.log(TINY.vocab_sizes[TINY.modalities.index(name)]), rel=1e-6)
    assert float(loss) == pytest.approx(sum(math.log(v) for v in TINY.vocab_sizes) / 3, rel=1e-6)


def test_decoder_self_attention_stays_within_a_modality(model: FourM) -> None:
    """Removing the coords queries must not change the tok_rgb predictions (4M's decoder separation)."""
    batch = make_batch(TINY, [5], [12], seed=6, target_mods=(0, 1))
    keep = batch["dec_mod"][0] == 0
    only_rgb = {k: (v[:, keep] if k.startswith("dec_") else v) for k, v in batch.items()}
    torch.testing.assert_close(model(only_rgb)[0], model(batch)[0, keep], atol=1e-6, rtol=1e-5)


def test_out_of_range_token_names_the_modality(model: FourM) -> None:
    batch = make_batch(TINY, [4], [3], seed=7)
    batch["enc_mod"][0, 0] = 2
    batch["enc_tokens"][0, 0] = 10  # captions have 10 ids
    batch["enc_pos"][0, 0] = 0
    with pytest.raises(ValueError, match="captions"):
        model(batch)


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = FourM(TINY)
    batch = make_batch(TINY, [6, 8, 5, 7], [8, 6, 9, 7], seed=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    initial = float(model.compute_loss(batch)[0].detach())
    for _ in range(150):
        loss, _, _ = model.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final, _, accs = model.compute_loss(batch)
    # Untrained: about the mean log-vocab (2.5); trained: under a tenth of that, every target right.
    assert initial == pytest.approx(sum(math.log(v) for v in TINY.vocab_sizes) / 3, rel=0.1)
    assert float(final.detach()) < 0.1 * initial
    assert all(float(a) == 1.0 for a in accs.values())


def test_from_experiment_tiny_m4_runs() -> None:
    cfg = load_config("m4", preset="tiny")
    c = FourMConfig.from_experiment(cfg)
    assert c.modalities == ("tok_rgb", "coords", "tok_rgb_next", "coords_next")
    assert c.vocab_sizes == (1024,) * 4 and c.max_seq_lens == (64, 39, 64, 39)
    assert (c.dim, c.enc_depth, c.dec_depth, c.head_dim, c.num_heads) == (128, 2, 2, 32, 4)
    torch.manual_seed(0)
    model = FourM(c)
    assert model.num_params() == expected_params(c)
    assert 1.9e6 < model.num_params() < 2.2e6  # 2 x 4096 x 128 vocab rows + 2 + 2 blocks of 0.2-0.26M
    with torch.no_grad():
        loss, losses, _ = model.compute_loss(make_batch(c, [40, 64], [30, 20], seed=9))
    assert float(loss) == pytest.approx(math.log(1024), rel=0.05)  # GPT init: near-uniform predictions
    assert set(losses) <= set(c.modalities)


def test_full_m2_param_count_is_plausible() -> None:
    c = FourMConfig.from_experiment(load_config("m2"))
    assert c.max_seq_lens == (256, 39, 256, 1536, 234) and c.vocab_sizes == (65536,) * 5
    with torch.device("meta"):  # ~380M parameters: count them without allocating 1.5 GB
        model = FourM(c)
    n = model.num_params()
    assert n == expected_params(c)
    # 5 x 65536 x 512 embedding rows and as many head rows (~336M) + 12 blocks (~44M) + slot embeddings.
    assert 370e6 < n < 395e6
    # The shared-vocabulary variant keeps one 65536-row table instead of ten.
    assert expected_params(FourMConfig.from_dict({**c.to_dict(), "shared_vocab": True})) < 90e6


def test_shared_vocab_ties_heads_to_embedding() -> None:
    c = FourMConfig.from_dict({**TINY.to_dict(), "shared_vocab": True})
    torch.manual_seed(0)
    model = FourM(c).eval()
    assert model.heads is None
    assert model.tok_emb.weight.shape == (max(c.vocab_sizes), c.dim)
    assert model.num_params() == expected_params(c)
    assert FourM(TINY).num_params() - model.num_params() == (2 * sum(c.vocab_sizes) - max(c.vocab_sizes)) * c.dim
    batch = make_batch(c, [6, 6], [8, 8], seed=10)
    hidden = model(batch)
    for i, v in enumerate(c.vocab_sizes):
        torch.testing.assert_close(model.modality_logits(hidden, i), hidden @ model.tok_emb.weight[:v].T)
    # Gradients from the loss reach the shared table through the tied heads as well as the inputs.
    loss, _, _ = model.compute_loss(batch)
    loss.backward()
    rows_only_in_heads = torch.ones(max(c.vocab_sizes), dtype=torch.bool)
    rows_only_in_heads[batch["enc_tokens"][~batch["enc_pad"]]] = False
    assert model.tok_emb.weight.grad[rows_only_in_heads].abs().sum() > 0


def test_config_round_trip_and_checkpoint() -> None:
    d = json.loads(json.dumps(TINY.to_dict()))
    assert FourMConfig.from_dict(d) == TINY
    with pytest.raises(ValueError, match="unknown keys"):
        FourMConfig.from_dict({**d, "depth": 3})
    with pytest.raises(ValueError, match="head_dim"):
        FourMConfig.from_dict({**d, "dim": 30})
    torch.manual_seed(0)
    a = FourM(TINY).eval()
    b = FourM(FourMConfig.from_dict(d)).eval()
    b.load_state_dict(a.state_dict())
    batch = make_batch(TINY, [5], [5], seed=11)
    torch.testing.assert_close(a(batch), b(batch))


def test_flops_per_token_counts_weights_and_attention(model: FourM) -> None:
    c = TINY
    weights = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.startswith("heads")
    )
    head = sum(h.weight.numel() for h in model.heads) / len(model.heads)
    # One input and one target per sample: every weight sees one token, each attention layer one score.
    attention = c.enc_depth * 4 * c.dim + c.dec_depth * 8 * c.dim
    assert model.flops_per_token(1, 1) == pytest.approx(6 * (weights + head) + 3 * attention, rel=1e-12)
    # More inputs per target cost more per target token; the estimate is ~6N for short sequences.
    assert model.flops_per_token(20, 10) > model.flops_per_token(10, 10) > 0
    with pytest.raises(ValueError):
        model.flops_per_token(5, 0)
