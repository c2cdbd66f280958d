"""MotionSSM and PhysicsSSM: shapes for KIT-ML and HumanML3D, the physics gate, the loss terms, padding, the
word vocabulary, the optimisation defaults, and that each tiny model overfits four generated KIT motions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from motionlab.datasets.motion import KIT, MotionSplit, read_motion_dataset
from motionlab.datasets.motion_features import SPECS, recover_joints
from motionlab.datasets.synth_kit import synth_kit_ml
from motionlab.models.motion import (
    MotionSSMConfig,
    TextToMotionSSM,
    collate_motion,
    left_align,
    length_mask,
    make_optimizer,
    make_scheduler,
    motion_model_class,
    steps_total,
)
from motionlab.models.physics_ssm import PhysicsSSM, PhysicsSSMConfig
from motionlab.models.text_vocab import PAD_ID, UNK_ID, WordVocab
from motionlab.physics.losses import DEFAULT_WEIGHTS
from motionlab.physics.state import PHYSICS_STATE_DIM, physics_state

pytestmark = pytest.mark.usefixtures("torch_one_thread")

KINDS = {"MotionSSM": (TextToMotionSSM, MotionSSMConfig), "PhysicsSSM": (PhysicsSSM, PhysicsSSMConfig)}
VOCAB = 24  # random-token tests


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[MotionSplit, WordVocab]:
    """8 generated KIT-ML motions (their train split) and the vocabulary of its captions."""
    root = tmp_path_factory.mktemp("kit") / "kit"
    synth_kit_ml(root, motions=8, seed=0)
    split = read_motion_dataset(root, KIT, "train")
    assert len(split) >= 4
    return split, WordVocab.build(c.text for s in split.samples for c in s.captions)


def tiny_model(kind: str, dataset: str = "kit", seed: int = 0, **overrides):
    cls, cfg_cls = KINDS[kind]
    torch.manual_seed(seed)
    return cls.from_config(cfg_cls.tiny(VOCAB, dataset=dataset, **overrides))


def random_batch(dim: int, lengths: list[int], seed: int = 0, text_len: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(2, VOCAB, (len(lengths), text_len), generator=g)
    text[0, 4:] = PAD_ID  # captions of different lengths
    return {"text_tokens": text, "features": torch.randn(len(lengths), max(lengths), dim, generator=g) * 0.5,
            "lengths": torch.tensor(lengths)}


# -- vocabulary --------------------------------------------------------------------------------------------


def test_vocab_round_trip(tmp_path: Path) -> None:
    vocab = WordVocab.build(["A person walks forward.", "a person jumps", "Someone walks, slowly!"])
    assert vocab.tokens[:2] == ["<pad>", "<unk>"] and (PAD_ID, UNK_ID) == (0, 1)
    assert vocab.tokens[2:5] == ["a", "person", "walks"]  # most frequent first, ties alphabetical
    assert len(vocab) == 2 + 7  # a person walks forward jumps someone slowly
    loaded = WordVocab.load(vocab.save(tmp_path / "vocab.json"))
    assert loaded == vocab and loaded.tokens == vocab.tokens
    ids = loaded.encode(["a person walks slowly", "someone dances wildly today"], max_len=3)
    assert ids.dtype == torch.long and ids.shape == (2, 3)
    assert loaded.decode(ids[0].tolist()) == "a person walks"  # truncated to max_len
    assert ids[1].tolist() == [vocab.index["someone"], UNK_ID, UNK_ID]  # unseen words -> <unk>
    assert loaded.encode(["a"], max_len=4)[0].tolist() == [vocab.index["a"], PAD_ID, PAD_ID, PAD_ID]
    assert loaded.encode_one("...") == [UNK_ID]  # never an empty prefix
    assert len(WordVocab.build(["a a b c"], max_size=3)) == 3
    (tmp_path / "bad.json").write_text(json.dumps({"tokens": ["x"]}))
    with pytest.raises(ValueError, match="bad.json"):
        WordVocab.load(tmp_path / "bad.json")


def test_left_align_puts_words_last() -> None:
    tokens = torch.tensor([[5, 6, 0, 0], [7, 8, 9, 4]])
    assert left_align(tokens, 6).tolist() == [[0, 0, 0, 0, 5, 6], [0, 0, 7, 8, 9, 4]]
    with pytest.raises(ValueError, match="max_text_len=3"):
        left_align(tokens, 3)


# -- shapes and generation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["kit", "humanml3d"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_shapes(kind: str, dataset: str) -> None:
    dim = SPECS[dataset].feature_dim
    assert dim == {"kit": 251, "humanml3d": 263}[dataset]
    model = tiny_model(kind, dataset)
    assert model.model_kind == kind and model.cfg.feature_dim == dim
    batch = random_batch(dim, [9, 5, 7])
    out = model.generate(batch["text_tokens"], batch["lengths"])
    assert out.shape == (3, 9, dim) and torch.isfinite(out).all()
    assert (out[1, 5:] == 0).all() and (out[2, 7:] == 0).all()  # past each length: the mean pose
    assert (out[1, :5].abs().sum(-1) > 0).all()
    losses = model.compute_loss(batch)
    expected = {"loss", "mse"} | ({"physics/sliding", "physics/penetration", "physics/jerk", "physics/total"}
                                  if kind == "PhysicsSSM" else set())
    assert set(losses) == expected
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match=rf"expected \(B, T, {dim}\)"):
        model.compute_loss({**batch, "features": batch["features"][..., :-1]})


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_sample_is_generated_alike_alone_or_in_a_padded_batch(kind: str) -> None:
    """Causal queries and a fixed-width left-aligned caption: padding of other samples never reaches a sample."""
    model = tiny_model(kind)
    batch = random_batch(KIT.feature_dim, [6, 11, 8])
    together = model.generate(batch["text_tokens"], batch["lengths"])  # (3, 11, D)
    alone = model.generate(batch["text_tokens"][:1, :4], batch["lengths"][:1])  # its own 4 words, 6 frames
    assert alone.shape == (1, 6, KIT.feature_dim)
    torch.testing.assert_close(alone[0], together[0, :6], atol=1e-5, rtol=1e-4)


def test_generate_is_deterministic_and_keeps_the_training_mode() -> None:
    model = tiny_model("MotionSSM", dropout=0.3)
    batch = random_batch(KIT.feature_dim, [6, 4])
    model.train()
    a = model.generate(batch["text_tokens"], batch["lengths"])
    b = model.generate(batch["text_tokens"], batch["lengths"])
    assert torch.equal(a, b) and model.training  # dropout off inside, mode restored
    assert not a.requires_grad


# -- physics branch -------------------------------------------------------------------------------------------


def test_gate_lies_in_0_1_and_blend_between_ssm_and_constraints() -> None:
    model = tiny_model("PhysicsSSM", gate_bias_init=0.0)  # a centred gate: both sides visibly mixed
    batch = random_batch(KIT.feature_dim, [8, 6])
    with torch.no_grad():
        out = model(batch["text_tokens"], batch["lengths"])
    d = model.cfg.d_model
    assert out.gate.shape == out.ssm_out.shape == out.constraints.shape == (2, 8, d)
    assert out.gate.min() > 0 and out.gate.max() < 1
    assert out.gate.std() > 0.01  # the gate depends on its input, not only on its bias
    lo, hi = torch.minimum(out.ssm_out, out.constraints), torch.maximum(out.ssm_out, out.constraints)
    assert (out.blended >= lo - 1e-6).all() and (out.blended <= hi + 1e-6).all()
    torch.testing.assert_close(out.blended, out.gate * out.ssm_out + (1 - out.gate) * out.constraints)
    assert (out.ssm_out - out.constraints).abs().mean() > 1e-3  # the bounds are not trivially equal
    torch.testing.assert_close(out.features, model.projector.decode(out.blended))
    # the default gate bias starts close to the plain SSM
    assert tiny_model("PhysicsSSM").gate_proj.bias.sigmoid().min() > 0.85


def test_physics_state_is_derived_from_the_draft_in_dataset_units() -> None:
    """The state is physics_state(recover_joints(draft * std + mean)) on real frames: the stats buffers matter."""
    g = torch.Generator().manual_seed(1)
    mean, std = torch.randn(KIT.feature_dim, generator=g) * 10, torch.rand(KIT.feature_dim, generator=g) + 0.5
    torch.manual_seed(0)
    model = PhysicsSSM.from_config(PhysicsSSMConfig.tiny(VOCAB), mean=mean.numpy(), std=std)
    assert torch.equal(model.mean, mean) and torch.equal(model.std, std)
    batch = random_batch(KIT.feature_dim, [7, 10])
    with torch.no_grad():
        out = model(batch["text_tokens"], batch["lengths"])
    assert out.state.shape == (2, 10, PHYSICS_STATE_DIM)
    for i, n in enumerate([7, 10]):
        joints = recover_joints(out.draft[i, :n] * std + mean, KIT.num_joints)
        torch.testing.assert_close(out.state[i, :n], physics_state(joints[None], KIT)[0])
    assert (out.state[0, 7:] == 0).all()
    with pytest.raises(ValueError, match="Std.npy"):
        PhysicsSSM.from_config(PhysicsSSMConfig.tiny(VOCAB), std=np.zeros(KIT.feature_dim))


def test_lambda_zero_is_exactly_mse_and_a_positive_lambda_adds_the_physics_terms() -> None:
    base = tiny_model("PhysicsSSM", lambda_physics=0.0)
    batch = random_batch(KIT.feature_dim, [9, 6, 8])
    zero = base.compute_loss(batch)
    assert torch.equal(zero["loss"], zero["mse"])
    assert zero["physics/total"] > 0  # reported, though not trained on

    lam = 0.5
    weighted = PhysicsSSM.from_config(PhysicsSSMConfig.tiny(VOCAB, lambda_physics=lam))
    weighted.load_state_dict(base.state_dict())
    pos = weighted.compute_loss(batch)
    assert torch.equal(pos["mse"], zero["mse"])
    torch.testing.assert_close(pos["loss"], pos["mse"] + lam * pos["physics/total"])
    assert pos["loss"] > pos["mse"] + 1e-4
    terms = ("sliding", "penetration", "jerk")
    torch.testing.assert_close(pos["physics/total"], sum(DEFAULT_WEIGHTS[k] * pos[f"physics/{k}"] for k in terms))

    # only jerk, weighted 1: total is the jerk term
    jerk_only = PhysicsSSM.from_config(PhysicsSSMConfig.tiny(
        VOCAB, lambda_physics=lam, physics_weights={"sliding": 0.0, "penetration": 0.0, "jerk": 1.0}))
    jerk_only.load_state_dict(base.state_dict())
    j = jerk_only.compute_loss(batch)
    torch.testing.assert_close(j["physics/total"], j["physics/jerk"])
    with pytest.raises(ValueError, match="unknown terms"):
        PhysicsSSMConfig.tiny(VOCAB, physics_weights={"slide": 1.0})


@pytest.mark.parametrize("lambda_physics", [0.0, 0.5])
def test_gradients_flow_through_the_physics_branch(lambda_physics: float) -> None:
    model = tiny_model("PhysicsSSM", lambda_physics=lambda_physics)
    model.compute_loss(random_batch(KIT.feature_dim, [8, 5]))["loss"].backward()
    d = model.cfg.d_model
    gate_w = model.gate_proj.weight.grad
    assert gate_w is not None and torch.isfinite(gate_w).all()
    assert gate_w[:, :d].abs().sum() > 0 and gate_w[:, d:].abs().sum() > 0  # both the SSM and physics halves
    first = model.physics_mlp[1][0].weight.grad  # the state MLP's first layer
    assert first is not None and first.abs().sum() > 0
    assert model.backbone.layers[0].mixer.in_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_padded_frames_change_neither_loss_nor_gradients(kind: str) -> None:
    model = tiny_model(kind, **({"recon_weight": 1.0} if kind == "PhysicsSSM" else {}))
    batch = random_batch(KIT.feature_dim, [10, 6, 8])
    noisy = {**batch, "features": batch["features"].clone()}
    noisy["features"][1, 6:] = 1e4 * torch.randn(4, KIT.feature_dim)
    noisy["features"][2, 8:] = float("nan")

    def run(b: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        model.zero_grad()
        losses = model.compute_loss(b)
        losses["loss"].backward()
        return losses, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    (clean, g_clean), (dirty, g_dirty) = run(batch), run(noisy)
    assert set(clean) == set(dirty)
    if kind == "PhysicsSSM":
        assert "recon" in clean
    for key in clean:
        assert torch.equal(clean[key], dirty[key]), key
    assert all(torch.equal(a, b) for a, b in zip(g_clean, g_dirty, strict=True))
    # a real frame does change it
    moved = {**batch, "features": batch["features"].clone()}
    moved["features"][1, 5] += 1.0
    assert model.compute_loss(moved)["mse"] > clean["mse"]


# -- overfitting ---------------------------------------------------------------------------------------------

OVERFIT_STEPS = 200
OVERFIT_LR = 6e-3  # constant: the tiny model on one batch tolerates a high rate
OVERFIT_FACTOR = 10.0  # measured 15x to 17x for seeds 0 and 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_tiny_model_overfits_four_generated_kit_motions(kind: str, kit: tuple[MotionSplit, WordVocab]) -> None:
    """200 AdamW steps bring the masked MSE on 4 generated motions (39-80 frames) down at least 10x."""
    split, vocab = kit
    cls, cfg_cls = KINDS[kind]
    cfg = cfg_cls.tiny(len(vocab), lr=OVERFIT_LR)
    torch.manual_seed(0)
    model = cls.from_config(cfg, mean=split.stats.mean, std=split.stats.std)
    batch = collate_motion(split.samples[:4], vocab, cfg.max_text_len)
    assert batch["features"].shape == (4, int(batch["lengths"].max()), KIT.feature_dim)
    assert (batch["features"][length_mask(batch["lengths"], batch["features"].shape[1])].abs().sum(-1) > 0).all()
    opt = make_optimizer(model, cfg)
    first = last = None
    for _ in range(OVERFIT_STEPS):
        losses = model.compute_loss(batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = losses if first is None else first
        last = losses
    assert first is not None and last is not None
    assert last["mse"] < first["mse"] / OVERFIT_FACTOR, (first["mse"], last["mse"])
    assert last["loss"] < first["loss"] / OVERFIT_FACTOR
    if kind == "PhysicsSSM":
        assert torch.isfinite(last["physics/total"])


# -- configuration and optimisation ------------------------------------------------------------------------


def test_default_config_and_optimisation() -> None:
    cfg = MotionSSMConfig(vocab_size=1000)
    assert (cfg.d_model, cfg.n_layers, cfg.d_state) == (256, 4, 32)
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (5e-5, 0.01, 16, 250)
    tiny = MotionSSMConfig.tiny(1000)
    assert (tiny.d_model, tiny.n_layers, tiny.d_state) == (32, 2, 8)
    model = TextToMotionSSM.from_config(cfg)
    assert 2_000_000 < model.num_params() < 3_000_000
    assert PhysicsSSM.from_config(PhysicsSSMConfig(vocab_size=1000)).num_params() > model.num_params()

    opt = make_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.param_groups[1]["weight_decay"] == 0.0
    mixer = model.backbone.layers[0].mixer
    assert id(mixer.in_proj.weight) in decayed
    assert id(mixer.A_log) not in decayed and id(model.backbone.text_embed.weight) not in decayed
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))

    total = steps_total(cfg, num_samples=100)
    assert total == 250 * 7
    sched = make_scheduler(opt, cfg, total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(5e-5 / 25)
    assert max(lrs) == pytest.approx(5e-5) and int(np.argmax(lrs)) == pytest.approx(0.3 * total, abs=2)
    assert lrs[-1] < 1e-8


def test_config_round_trip_and_model_kinds() -> None:
    cfg = PhysicsSSMConfig.tiny(50, dataset="humanml3d", lambda_physics=0.25, physics_weights={"jerk": 0.1})
    data = json.loads(json.dumps(cfg.to_dict()))
    assert PhysicsSSMConfig.from_dict(data) == cfg
    model = motion_model_class("PhysicsSSM").from_config(data)
    assert isinstance(model, PhysicsSSM) and model.cfg == cfg and model.cfg.feature_dim == 263
    plain = motion_model_class("MotionSSM").from_config(cfg)  # the physics fields are dropped
    assert isinstance(plain, TextToMotionSSM) and type(plain.cfg) is MotionSSMConfig and plain.cfg.d_model == 32
    with pytest.raises(ValueError, match="unknown keys"):
        MotionSSMConfig.from_dict({**MotionSSMConfig.tiny(50).to_dict(), "layers": 3})
    with pytest.raises(ValueError, match="unknown motion model kind"):
        motion_model_class("Diffusion")
    with pytest.raises(ValueError, match="dataset"):
        MotionSSMConfig(vocab_size=50, dataset="amass")
