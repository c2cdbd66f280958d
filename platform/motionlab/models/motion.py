"""MotionSSM: text-to-motion with a stack of Mamba layers, in one readable file.

A caption and a target length T go in; a (T, D) motion in the dataset's z-scored feature layout comes out
(D = 251 for KIT-ML, 263 for HumanML3D), non-autoregressively, in one scan.

Why a text prefix followed by T motion queries: a Mamba layer is causal, so step t only sees steps <= t.
Putting the whole caption *before* the motion positions lets every motion frame read the entire caption
through the recurrent state, and the causal scan over the queries then acts as a temporal model that
carries what it has laid out so far from frame to frame. Taking the outputs at the motion positions only
gives the motion. Two consequences follow from causality and are relied on:

- motion frames after a sample's length come *after* its real frames, so they never change them: a batch
  padded to its longest motion predicts each sample exactly as that sample alone would;
- the text is left-padded to a fixed `max_text_len`, so the real words always sit right before the motion
  queries and the number of leading pad steps does not depend on the batch.

A query cannot see the end of its own motion (later steps are invisible), so each query is told the target
length explicitly: it is an MLP of sinusoidal encodings of its frame index t, the length T and the frames
left T - 1 - t. `PhysicsSSM` (`motionlab.models.physics_ssm`) reuses this backbone and adds a physics branch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionlab.datasets.motion_features import SPECS, MotionDatasetSpec
from motionlab.models.ssm import Mamba
from motionlab.models.text_vocab import PAD_ID, WordVocab

INIT_STD = 0.02  # GPT-2 initialisation for the layers around the Mamba blocks (which keep their own)
SINUSOID_BASE = 10000.0


@dataclass(frozen=True)
class MotionSSMConfig:
    """Everything needed to rebuild a MotionSSM and train it; JSON-friendly so checkpoints carry it.

    The optimisation defaults are the ones the team trained the text-to-motion SSMs with (AdamW, OneCycleLR
    peaking at `lr`); they live here so the trainer reads them instead of hard-coding them.
    """

    vocab_size: int
    dataset: str = "kit"  # a key of motionlab.datasets.motion_features.SPECS: fixes D, joints, fps
    d_model: int = 256
    n_layers: int = 4
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    max_text_len: int = 32  # words; longer captions keep their first words
    dropout: float = 0.1
    backend: str | None = None  # selective-scan backend; None defers to $MOTIONLAB_SSM_BACKEND / the device
    # optimisation
    lr: float = 5e-5  # OneCycleLR's peak
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 16
    epochs: int = 250
    pct_start: float = 0.3  # share of the schedule spent warming up to `lr`
    div_factor: float = 25.0  # starting lr = lr / div_factor
    final_div_factor: float = 1e4  # final lr = starting lr / final_div_factor
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        name = type(self).__name__
        if self.dataset not in SPECS:
            raise ValueError(f"{name}.dataset is {self.dataset!r}; use one of {sorted(SPECS)}")
        for key in ("vocab_size", "d_model", "n_layers", "d_state", "d_conv", "expand", "max_text_len",
                    "batch_size", "epochs"):
            if getattr(self, key) < 1:
                raise ValueError(f"{name}.{key} must be positive, got {getattr(self, key)}")
        if self.vocab_size < 2:
            raise ValueError(f"{name}.vocab_size must hold <pad> and <unk> (>= 2), got {self.vocab_size}")
        if self.d_model % 2:
            raise ValueError(f"{name}.d_model must be even (sinusoidal encodings), got {self.d_model}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"{name}.pct_start must be in (0, 1), got {self.pct_start}")

    @property
    def spec(self) -> MotionDatasetSpec:
        return SPECS[self.dataset]

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    @classmethod
    def tiny(cls, vocab_size: int, dataset: str = "kit", **overrides: Any) -> Self:
        """A CPU-sized model for tests and laptop demos: 2 layers of width 32, d_state 8, no dropout."""
        base: dict[str, Any] = {"d_model": 32, "n_layers": 2, "d_state": 8, "max_text_len": 16, "dropout": 0.0,
                                "lr": 3e-3, "batch_size": 4, "epochs": 20}
        return cls(vocab_size=vocab_size, dataset=dataset, **{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


# -- helpers ------------------------------------------------------------------------------------------------


def length_mask(lengths: Tensor, num_frames: int) -> Tensor:
    """(B,) lengths -> (B, T) bool, True on real frames."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


def sinusoid(positions: Tensor, dim: int) -> Tensor:
    """(...) positions (any real numbers) -> (..., dim) sin/cos features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(SINUSOID_BASE) * torch.arange(half, device=positions.device,
                                                              dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs  # (..., half)
    return torch.cat([angles.sin(), angles.cos()], -1)


def left_align(tokens: Tensor, width: int) -> Tensor:
    """(B, L) ids with <pad> anywhere -> (B, width) with the real ids, in order, at the right end.

    So the caption's last word sits right before the first motion query whatever the caption's length.
    """
    b, length = tokens.shape
    if length > width:
        raise ValueError(f"text tokens have {length} columns but the model reads at most max_text_len={width}; "
                         f"encode captions with max_len={width} (WordVocab.encode)")
    real = tokens != PAD_ID
    order = torch.argsort(real.to(torch.int8), dim=1, stable=True)  # pads first, real ids keep their order
    aligned = torch.gather(tokens, 1, order)
    return F.pad(aligned, (width - length, 0), value=PAD_ID)  # (B, width)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over real frames only: pred, target (B, T, D), mask (B, T) -> ()."""
    sq = torch.where(mask[..., None], (pred - target) ** 2, 0.0)  # (B, T, D)
    return sq.sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)


def check_batch(batch: Mapping[str, Tensor], feature_dim: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The batch fields the motion models read, checked: text (B, L), features (B, T, D), lengths (B,), mask (B, T).

    Frames past each length are zeroed here, so whatever a collator left there (even NaN) reaches no loss and
    no gradient.
    """
    missing = [k for k in ("text_tokens", "features", "lengths") if k not in batch]
    if missing:
        raise KeyError(f"motion batch lacks {missing}; build it with motionlab.models.motion.collate_motion")
    text, feats, lengths = batch["text_tokens"], batch["features"], batch["lengths"]
    if feats.dim() != 3 or feats.shape[-1] != feature_dim:
        raise ValueError(f"batch 'features' has shape {tuple(feats.shape)}, expected (B, T, {feature_dim}); "
                         "is the model configured for the dataset the batch comes from?")
    if text.shape[0] != feats.shape[0] or lengths.shape != (feats.shape[0],):
        raise ValueError(f"batch sizes disagree: text_tokens {tuple(text.shape)}, features {tuple(feats.shape)}, "
                         f"lengths {tuple(lengths.shape)}")
    _check_lengths(lengths, feats.shape[1])
    mask = length_mask(lengths, feats.shape[1])
    return text, feats.masked_fill(~mask[..., None], 0.0), lengths, mask


def _check_lengths(lengths: Tensor, num_frames: int | None = None) -> None:
    if lengths.numel() and int(lengths.min()) < 1:
        raise ValueError(f"motion lengths must be >= 1 frame, got {lengths.tolist()}")
    if num_frames is not None and lengths.numel() and int(lengths.max()) > num_frames:
        raise ValueError(f"a motion length ({int(lengths.max())}) exceeds the batch's {num_frames} frames")


def collate_motion(
    samples: Sequence[Any],
    vocab: WordVocab,
    max_text_len: int,
    generator: np.random.Generator | None = None,
) -> dict[str, Tensor]:
    """MotionSamples -> a batch: text_tokens (B, max_text_len), features (B, T_max, D) zero-padded, lengths (B,).

    Each sample has several captions; one is drawn per call (with `generator`), or the first without one, so
    an epoch sees each motion with a different description.
    """
    if not samples:
        raise ValueError("collate_motion got no samples")
    captions = []
    for s in samples:
        k = int(generator.integers(len(s.captions))) if generator is not None else 0
        captions.append(s.captions[k].text)
    lengths = torch.tensor([s.features.shape[0] for s in samples], dtype=torch.long)
    dim = samples[0].features.shape[1]
    feats = torch.zeros(len(samples), int(lengths.max()), dim)
    for row, s in zip(feats, samples, strict=True):
        row[: s.features.shape[0]] = torch.as_tensor(np.array(s.features, dtype=np.float32))  # may be read-only
    return {"text_tokens": vocab.encode(captions, max_text_len), "features": feats, "lengths": lengths}


def init_weights(module: nn.Module) -> None:
    """GPT-2 initialisation for Linear and Embedding layers (apply it before adding Mamba blocks)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=INIT_STD)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


# -- the backbone ---------------------------------------------------------------------------------------------


class MambaLayer(nn.Module):
    """Pre-norm residual block: x + dropout(Mamba(RMSNorm(x))), as in mamba-ssm's Block."""

    def __init__(self, cfg: MotionSSMConfig) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model)
        self.mixer = Mamba(cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                           backend=cfg.backend)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(self.mixer(self.norm(x)))  # (B, L, d) -> (B, L, d)


class MotionSSMBackbone(nn.Module):
    """Caption + lengths -> one d_model vector per motion frame; the part MotionSSM and PhysicsSSM share."""

    def __init__(self, cfg: MotionSSMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.text_embed = nn.Embedding(cfg.vocab_size, d, padding_idx=PAD_ID)
        self.type_embed = nn.Embedding(2, d)  # 0: text, 1: motion query
        self.query = mlp(3 * d, d, d)  # [pe(t); pe(T); pe(T - 1 - t)] -> query
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(init_weights)
        self.layers = nn.ModuleList(MambaLayer(cfg) for _ in range(cfg.n_layers))  # keep Mamba's own init
        self.norm_f = nn.RMSNorm(d)

    def queries(self, lengths: Tensor, num_frames: int) -> Tensor:
        """(B,) lengths -> (B, T, d) motion queries that know their frame, the length and the frames left."""
        d = self.cfg.d_model
        t = torch.arange(num_frames, device=lengths.device, dtype=torch.float32)[None, :]  # (1, T)
        total = lengths.to(torch.float32)[:, None].expand(-1, num_frames)  # (B, T)
        pe = torch.cat([sinusoid(t.expand_as(total), d), sinusoid(total, d), sinusoid(total - 1 - t, d)], -1)
        return self.query(pe) + self.type_embed.weight[1]

    def forward(self, text_tokens: Tensor, lengths: Tensor, num_frames: int | None = None) -> Tensor:
        # text_tokens (B, L) right- or left-padded ids, lengths (B,) -> (B, T, d_model), T = num_frames or max
        num_frames = int(lengths.max()) if num_frames is None else num_frames
        _check_lengths(lengths, num_frames)
        text = left_align(text_tokens, self.cfg.max_text_len)  # (B, Lt)
        real = (text != PAD_ID)[..., None]
        # pad steps are exact zeros, and always max_text_len - n of them, so the model's answer for a caption
        # does not depend on the other captions in the batch
        x_text = (self.text_embed(text) + self.type_embed.weight[0]) * real  # (B, Lt, d)
        x = torch.cat([x_text, self.queries(lengths, num_frames)], 1)  # (B, Lt + T, d)
        x = self.drop(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm_f(x[:, text.shape[1]:])  # (B, T, d)


# -- the model ------------------------------------------------------------------------------------------------


class MotionModelBase(nn.Module):
    """What both text-to-motion SSMs share: the config, the dataset's Mean/Std and the generation contract."""

    model_kind: ClassVar[str] = ""
    config_class: ClassVar[type[MotionSSMConfig]] = MotionSSMConfig

    def __init__(self, cfg: MotionSSMConfig, mean: Tensor | np.ndarray | None = None,
                 std: Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.feature_dim
        # The z-scoring statistics travel with the weights: generations are de-normalised with them, and
        # PhysicsSSM needs positions in dataset units to derive its physics state.
        self.register_buffer("mean", self._stat(mean, torch.zeros(dim), "mean"))
        self.register_buffer("std", self._stat(std, torch.ones(dim), "std"))

    def _stat(self, value: Tensor | np.ndarray | None, default: Tensor, name: str) -> Tensor:
        if value is None:
            return default
        # a copy: arrays from Ray's object store are read-only, and the buffer must own its memory
        out = (value.detach().float().clone() if isinstance(value, Tensor)
               else torch.from_numpy(np.array(value, dtype=np.float32)))
        if out.shape != default.shape:
            raise ValueError(f"{type(self).__name__}: {name} has shape {tuple(out.shape)} but {self.cfg.dataset} "
                             f"features have ({default.numel()},); pass the dataset's Mean.npy / Std.npy")
        if name == "std" and bool((out <= 0).any()):
            raise ValueError(f"{type(self).__name__}: std has entries <= 0; recompute Std.npy on the training split")
        return out

    @classmethod
    def from_config(cls, cfg: MotionSSMConfig | Mapping[str, Any], mean: Tensor | np.ndarray | None = None,
                    std: Tensor | np.ndarray | None = None) -> Self:
        """The model a config (object or its dict from a checkpoint) describes, with the dataset's statistics."""
        if type(cfg) is not cls.config_class:
            if isinstance(cfg, MotionSSMConfig):  # the other kind's config: keep the fields this kind has
                known = {f.name for f in fields(cls.config_class)}
                cfg = {k: v for k, v in cfg.to_dict().items() if k in known}
            cfg = cls.config_class.from_dict(dict(cfg))
        return cls(cfg, mean=mean, std=std)

    @property
    def spec(self) -> MotionDatasetSpec:
        return self.cfg.spec

    def denormalize(self, features: Tensor) -> Tensor:
        """(..., D) z-scored features -> dataset units, the layout `recover_joints` reads."""
        return features * self.std + self.mean

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def predict(self, text_tokens: Tensor, lengths: Tensor, num_frames: int | None = None) -> Tensor:
        """(B, L) captions, (B,) lengths -> (B, T, D) z-scored motion, with gradients (what the loss reads)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, text_tokens: Tensor, lengths: Tensor) -> Tensor:
        """Captions (B, L) and target lengths (B,) -> (B, max(lengths), D) z-scored motions.

        Frames past a sample's length are set to 0 (the dataset's mean pose); `length_mask(lengths, T)` marks the
        real ones. Runs in eval mode (no dropout) and restores the previous mode.
        """
        was_training = self.training
        self.eval()
        try:
            lengths = lengths.to(self.mean.device)
            out = self.predict(text_tokens.to(self.mean.device), lengths)  # (B, T, D)
            return out * length_mask(lengths, out.shape[1])[..., None]
        finally:
            self.train(was_training)


class TextToMotionSSM(MotionModelBase):
    """MotionSSM: the backbone and an MLP head to the feature dimension; trained with masked MSE."""

    model_kind: ClassVar[str] = "MotionSSM"

    def __init__(self, cfg: MotionSSMConfig, mean: Tensor | np.ndarray | None = None,
                 std: Tensor | np.ndarray | None = None) -> None:
        super().__init__(cfg, mean, std)
        self.backbone = MotionSSMBackbone(cfg)
        self.head = mlp(cfg.d_model, cfg.d_model, cfg.feature_dim)
        self.head.apply(init_weights)

    def predict(self, text_tokens: Tensor, lengths: Tensor, num_frames: int | None = None) -> Tensor:
        # text (B, L), lengths (B,) -> (B, T, D) z-scored features (padded frames unconstrained)
        return self.head(self.backbone(text_tokens, lengths, num_frames))

    def forward(self, text_tokens: Tensor, lengths: Tensor, num_frames: int | None = None) -> Tensor:
        return self.predict(text_tokens, lengths, num_frames)  # (B, T, D)

    def compute_loss(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """MSE over the real frames of z-scored features: {'loss', 'mse'}."""
        text, feats, lengths, mask = check_batch(batch, self.cfg.feature_dim)
        pred = self.predict(text, lengths, feats.shape[1])  # (B, T, D)
        mse = masked_mse(pred, feats, mask)
        return {"loss": mse, "mse": mse.detach()}


# -- optimisation -----------------------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, cfg: MotionSSMConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases, norms, embeddings and Mamba's A_log / D are left alone
    (decaying A_log would pull every state's time scale towards 1 step)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = (p.dim() < 2 or getattr(p, "_no_weight_decay", False) or name.endswith("embed.weight"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def make_scheduler(opt: torch.optim.Optimizer, cfg: MotionSSMConfig,
                   steps_total: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """OneCycleLR peaking at cfg.lr; step it once per optimizer step, `steps_total` times in all."""
    if steps_total < 1:
        raise ValueError(f"make_scheduler: steps_total must be >= 1, got {steps_total}")
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=steps_total, pct_start=cfg.pct_start, div_factor=cfg.div_factor,
        final_div_factor=cfg.final_div_factor, anneal_strategy="cos")


def steps_total(cfg: MotionSSMConfig, num_samples: int) -> int:
    """Optimizer steps of a whole run: epochs x ceil(samples / batch)."""
    return cfg.epochs * max(1, math.ceil(num_samples / cfg.batch_size))


MODEL_KINDS = ("MotionSSM", "PhysicsSSM")


def motion_model_class(kind: str) -> type[MotionModelBase]:
    """The class behind a `model_kind` name (PhysicsSSM is imported on demand: it needs motionlab.physics)."""
    if kind == "MotionSSM":
        return TextToMotionSSM
    if kind == "PhysicsSSM":
        from motionlab.models.physics_ssm import PhysicsSSM

        return PhysicsSSM
    raise ValueError(f"unknown motion model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")
