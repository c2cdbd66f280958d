"""A 4M-style multimodal masked encoder-decoder in one readable file.

The encoder reads a set of visible tokens drawn from any modalities; the decoder asks for another set
of tokens (the targets) by position and modality and predicts their ids. Semantics follow 4M:

- every slot, input or target, is located by one slot embedding shared by encoder and decoder: its
  position laid out by the modality's kind (2-D sin-cos for image grids, a joint-field table for poses,
  1-D sin-cos for text), its frame and its modality (`motionlab.models.embeddings`);
- token tables are keyed by tokenizer and tied to one head per tokenizer, so `tok_rgb` and
  `tok_rgb_next` read and write the same image codes;
- the decoder's queries are one learned mask token plus the slot embedding of the target, so the
  decoder learns *where* to predict, never *what* was there;
- decoder self-attention only connects queries of the same modality, so the prediction of one
  modality never depends on which tokens of another modality happened to be asked for;
- cross-attention reads a projection of the encoder output plus the encoder slot embeddings;
- the loss is the mean cross-entropy over every target token (`loss_weighting: token`), or the mean
  over modalities of each modality's mean (`modality`), which keeps a long modality from drowning a
  short one but gives each token of a modality the batch asks little of a weight many times its
  share: with M4-tiny's target alphas (current frame 0.5, next 1.5) that noise kept the model at the
  marginals for a whole run, where the token mean learnt to forecast (benchmarks/fourm_ablation.py).

Scales are set for the width, not copied from GPT-2: embeddings at unit scale, every linear layer at
std 1/sqrt(fan_in) (so each block adds about as much as it reads), the residual projections shrunk by
1/sqrt(2 x depth). GPT-2's constant 0.02 is about 1/sqrt(fan_in) at width 2,500; at width 128 it made
every block add a fiftieth of the stream, and with the embeddings at 0.02 too the blocks' common output
drowned where a decoder query was: the model learnt the marginals (`tests/test_fourm.py::test_copy_task`).

Cross-attention starts with a per-head bias `aligned_bias` towards the input slots at the query's place
(the same grid cell, the same joint field; `SlotEmbedding.place`): next-frame tokens are mostly the
current frame's tokens at the same place, and found from scratch that routing took longer than a tiny
run's whole budget (the bias is learnt; 0 starts without it).

Batches come from `motionlab.masking` as flat token lists with a modality index, a position inside the
modality and a padding flag per slot (the `enc_*` and `dec_*` fields), so the model never branches on a
modality's name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from motionlab.config.schema import ExperimentConfig

from motionlab import modalities as registry
from motionlab.models.embeddings import SlotEmbedding, TokenEmbedding

ENCODER_FIELDS = ("enc_tokens", "enc_mod", "enc_pos", "enc_pad")
DECODER_FIELDS = ("dec_mod", "dec_pos", "dec_pad")
POSEMBS = ("sincos", "learned")
SHARINGS = ("tokenizer", "modality", "all")
POSE_EMBEDDINGS = ("value", "table")
LOSS_WEIGHTINGS = ("token", "modality")
LAYOUTS = ("grid", "pose", "sequence")
TEMPORAL = ("current", "next", "none")
_LAYOUT_OF_KIND = {registry.Kind.IMAGE: "grid", registry.Kind.POSE: "pose", registry.Kind.TEXT: "sequence"}


@dataclass(frozen=True)
class FourMConfig:
    """Everything needed to rebuild a FourM, kept JSON-friendly so checkpoints carry it."""

    modalities: tuple[str, ...]
    vocab_sizes: tuple[int, ...]
    max_seq_lens: tuple[int, ...]
    dim: int
    enc_depth: int
    dec_depth: int
    head_dim: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    aligned_bias: float = 2.0  # initial cross-attention bias towards input slots at the query's place
    loss_weighting: str = "token"  # token | modality (see the module docstring)
    posemb: str = "sincos"  # sincos | learned (see motionlab.models.embeddings)
    share_embeddings: str = "tokenizer"  # tokenizer | modality | all
    pose_embedding: str = "value"  # value | table: pose coordinate ids with or without a smooth value term
    # Per modality; empty = from the registry by name (a name it lacks: its own tokenizer, a 1-D sequence).
    tokenizers: tuple[str, ...] = ()  # token-table key: modalities naming one tokenizer share a table
    layouts: tuple[str, ...] = ()  # grid | pose | sequence
    temporal: tuple[str, ...] = ()  # current | next | none
    frames: tuple[int, ...] = ()  # frames the modality's tokens span

    def __post_init__(self) -> None:
        # Tuples even when built from lists (JSON), so the config stays hashable and comparable.
        for name in ("modalities", "vocab_sizes", "max_seq_lens", "tokenizers", "layouts", "temporal", "frames"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        n = len(self.modalities)
        if n == 0:
            raise ValueError("FourMConfig.modalities is empty; list at least one modality")
        for name in ("vocab_sizes", "max_seq_lens"):
            values = getattr(self, name)
            if len(values) != n:
                raise ValueError(f"FourMConfig.{name} has {len(values)} entries but modalities has {n}")
            if any(v < 1 for v in values):
                raise ValueError(f"FourMConfig.{name} must be positive, got {values}")
        for name in ("dim", "enc_depth", "dec_depth", "head_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"FourMConfig.{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.head_dim:
            raise ValueError(f"FourMConfig.dim {self.dim} is not a multiple of head_dim {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"FourMConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"FourMConfig.mlp_ratio must be positive, got {self.mlp_ratio}")
        choices = (("posemb", POSEMBS), ("share_embeddings", SHARINGS), ("pose_embedding", POSE_EMBEDDINGS),
                   ("loss_weighting", LOSS_WEIGHTINGS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"FourMConfig.{name} is '{getattr(self, name)}'; use one of {', '.join(allowed)}")
        self._fill_layout()
        self._check_layout()

    def _fill_layout(self) -> None:
        """Per-modality layout fields left empty are taken from the registry (frames from the lengths)."""
        known = [registry.REGISTRY.get(name) for name in self.modalities]
        set_ = object.__setattr__
        if not self.tokenizers:
            names = zip(known, self.modalities, strict=True)
            set_(self, "tokenizers", tuple(m.tokenizer if m else name for m, name in names))
        if not self.layouts:
            set_(self, "layouts", tuple(self._layout_of(m, n) for m, n in zip(known, self.max_seq_lens, strict=True)))
        if not self.temporal:
            set_(self, "temporal", tuple(m.temporal if m else "none" for m in known))
        if not self.frames:
            set_(self, "frames", tuple(self._frames_of(i) for i in range(len(self.modalities))))

    @staticmethod
    def _layout_of(modality: registry.Modality | None, length: int) -> str:
        """The kind's layout; a length the layout cannot hold (hand-built test models) is a 1-D sequence.

        `from_experiment` passes layouts explicitly, and those are checked strictly.
        """
        layout = _LAYOUT_OF_KIND[modality.kind] if modality else "sequence"
        fits = {"grid": math.isqrt(length) ** 2 == length, "pose": length % registry.POSE_TOKENS_PER_FRAME == 0}
        return layout if fits.get(layout, True) else "sequence"

    def _frames_of(self, i: int) -> int:
        """A pose spans length / 39 frames; a next grid as many frames as it holds current grids of its tokenizer."""
        if self.layouts[i] == "pose":
            return max(self.max_seq_lens[i] // registry.POSE_TOKENS_PER_FRAME, 1)
        if self.layouts[i] == "grid" and self.temporal[i] == "next":
            current = [self.max_seq_lens[j] for j in range(len(self.modalities)) if self.temporal[j] == "current"
                       and self.layouts[j] == "grid" and self.tokenizers[j] == self.tokenizers[i]]
            if current and self.max_seq_lens[i] % current[0] == 0:
                return self.max_seq_lens[i] // current[0]
        return 1

    def _check_layout(self) -> None:
        n = len(self.modalities)
        for name in ("tokenizers", "layouts", "temporal", "frames"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FourMConfig.{name} has {len(getattr(self, name))} entries but modalities has {n}")
        for name, layout, temporal, frames, length in zip(
            self.modalities, self.layouts, self.temporal, self.frames, self.max_seq_lens, strict=True
        ):
            if layout not in LAYOUTS or temporal not in TEMPORAL:
                raise ValueError(f"FourMConfig: modality '{name}' has layout '{layout}' / temporal '{temporal}'; "
                                 f"use one of {LAYOUTS} / {TEMPORAL}")
            if frames < 1 or length % frames:
                raise ValueError(f"FourMConfig: modality '{name}' spans {frames} frames, which do not divide "
                                 f"its {length} tokens")
            per_frame = length // frames
            if layout == "grid" and math.isqrt(per_frame) ** 2 != per_frame:
                raise ValueError(f"FourMConfig: grid modality '{name}' has {per_frame} tokens a frame, not a square")
            if layout == "pose" and per_frame != registry.POSE_TOKENS_PER_FRAME:
                raise ValueError(f"FourMConfig: pose modality '{name}' has {per_frame} tokens a frame, not "
                                 f"{registry.POSE_TOKENS_PER_FRAME}")
        if self.posemb == "sincos" and self.dim % 4:
            raise ValueError(f"FourMConfig.dim {self.dim} must be a multiple of 4 for 2-D sin-cos positions")
        if self.share_embeddings == "tokenizer":
            sizes: dict[str, set[int]] = {}
            for tok, v in zip(self.tokenizers, self.vocab_sizes, strict=True):
                sizes.setdefault(tok, set()).add(v)
            for tok, vs in sizes.items():
                if len(vs) > 1:
                    raise ValueError(f"FourMConfig: modalities of tokenizer '{tok}' have vocab sizes {sorted(vs)}; "
                                     "one table needs one size (or share_embeddings='modality')")

    def table_groups(self) -> list[int]:
        """Modality index -> token-table index under `share_embeddings`."""
        if self.share_embeddings == "all":
            return [0] * len(self.modalities)
        keys = self.tokenizers if self.share_embeddings == "tokenizer" else self.modalities
        order = list(dict.fromkeys(keys))
        return [order.index(k) for k in keys]

    @property
    def num_heads(self) -> int:
        return self.dim // self.head_dim

    @property
    def mlp_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @classmethod
    def from_experiment(cls, cfg: ExperimentConfig) -> FourMConfig:
        """The model an experiment config describes, its layout read off the registry."""
        model = cfg.model
        known = [registry.get(name) for name in cfg.modalities]
        return cls(
            modalities=tuple(cfg.modalities),
            vocab_sizes=tuple(cfg.vocab_sizes),
            max_seq_lens=tuple(cfg.max_seq_lens),
            dim=model.dim,
            enc_depth=model.enc_depth,
            dec_depth=model.dec_depth,
            head_dim=model.head_dim,
            aligned_bias=model.aligned_bias,
            loss_weighting=model.loss_weighting,
            posemb=model.posemb,
            share_embeddings=model.share_embeddings,
            pose_embedding=model.pose_embedding,
            tokenizers=tuple(m.tokenizer for m in known),
            layouts=tuple(_LAYOUT_OF_KIND[m.kind] for m in known),
            temporal=tuple(m.temporal for m in known),
            frames=tuple(registry.frames_spanned(m, cfg.data.num_next_frames) for m in known),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, so a checkpoint can store it as JSON."""
        d = asdict(self)
        for name in ("modalities", "vocab_sizes", "max_seq_lens", "tokenizers", "layouts", "temporal", "frames"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FourMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"FourMConfig.from_dict: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


# -- building blocks ------------------------------------------------------------------------------------


def _guard_empty_rows(allowed: Tensor) -> Tensor:
    """Let a query row whose every key is masked attend to all keys instead.

    Such rows belong to padding (or to a sample with no inputs); softmax over an all -inf row is NaN and
    the NaN would leak into gradients. Their outputs are never read, so any finite value will do.
    """
    return allowed | ~allowed.any(dim=-1, keepdim=True)


class Attention(nn.Module):
    """Multi-head attention; self-attention when `context` is None, cross-attention otherwise."""

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.dropout = config.dropout
        self.q = nn.Linear(config.dim, config.dim)
        self.kv = nn.Linear(config.dim, 2 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)
        self.proj_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, context: Tensor | None = None, allowed: Tensor | None = None) -> Tensor:
        # x: (B, N, D), context: (B, M, D) or None (then M = N), allowed: broadcastable to (B, H, N, M), bool
        # (True = attend) or float (added to the scores)
        B, N, D = x.shape
        context = x if context is None else context
        q = self.q(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        kv = self.kv(context).view(B, context.shape[1], 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4)  # (B, H, M, hd) each
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, N, hd)
        y = y.transpose(1, 2).reshape(B, N, D)
        return self.proj_drop(self.proj(y))  # (B, N, D)


class MLP(nn.Module):
    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.dim, config.mlp_dim)
        self.proj = nn.Linear(config.mlp_dim, config.dim)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, N, D)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: self-attention over the visible tokens, then an MLP."""

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        # x: (B, N_in, D), allowed: (B, 1, 1, N_in)
        x = x + self.attn(self.norm1(x), allowed=allowed)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Pre-norm block: self-attention among same-modality queries, cross-attention to the encoder, MLP."""

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim)
        self.self_attn = Attention(config)
        self.query_norm = nn.LayerNorm(config.dim)
        self.context_norm = nn.LayerNorm(config.dim)
        self.cross_attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = MLP(config)

    def forward(self, y: Tensor, context: Tensor, self_allowed: Tensor, cross_allowed: Tensor) -> Tensor:
        # y: (B, N_tgt, D), context: (B, N_in, D), self_allowed: (B, 1, N_tgt, N_tgt) bool,
        # cross_allowed: (B, H, N_tgt, N_in) float, added to the scores (-inf = masked)
        y = y + self.self_attn(self.norm1(y), allowed=self_allowed)
        y = y + self.cross_attn(self.query_norm(y), self.context_norm(context), allowed=cross_allowed)
        return y + self.mlp(self.norm2(y))


# -- the model ------------------------------------------------------------------------------------------


class FourM(nn.Module):
    """Multimodal masked encoder-decoder: visible tokens in, hidden states for the asked-for targets out."""

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.tok_emb = TokenEmbedding(c)
        self.register_buffer("vocab_sizes", torch.tensor(c.vocab_sizes), persistent=False)  # (M,)
        self.register_buffer("seq_lens", torch.tensor(c.max_seq_lens), persistent=False)  # (M,)

        self.slot = SlotEmbedding(c)  # one position module for encoder and decoder
        self.mask_token = nn.Parameter(torch.zeros(c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.enc_depth))
        self.enc_norm = nn.LayerNorm(c.dim)
        self.context_proj = nn.Linear(c.dim, c.dim)
        self.decoder = nn.ModuleList(DecoderBlock(c) for _ in range(c.dec_depth))
        self.dec_norm = nn.LayerNorm(c.dim)
        self.aligned_bias = nn.Parameter(torch.full((c.num_heads,), float(c.aligned_bias)))  # (H,)
        self._init_weights()

    def _init_weights(self) -> None:
        """Scales by width (see the module docstring): linears 1/sqrt(fan_in), embeddings 1."""
        c = self.config
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = 1.0 / math.sqrt(module.in_features)
                if name.endswith("proj") and name.startswith(("encoder.", "decoder.")):
                    # residual projections: the stream's variance must not grow with depth
                    std /= math.sqrt(2 * (c.enc_depth if name.startswith("encoder.") else c.dec_depth))
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for table in (self.slot.learned, self.slot.mod, *([self.slot.frame] if self.slot.frame else [])):
            nn.init.normal_(table.weight, std=1.0)
        self.tok_emb.init_weights(head_std=1.0 / math.sqrt(c.dim))
        # The mask token is the same in every query and says nothing: small beside the slot embedding.
        nn.init.normal_(self.mask_token, mean=0.0, std=0.02)

    # -- forward ----------------------------------------------------------------------------------------

    def _check_slots(self, prefix: str, mod: Tensor, pos: Tensor, pad: Tensor, tokens: Tensor | None) -> None:
        """Fail naming the modality on an out-of-range id, rather than silently reading another modality's row."""
        c = self.config
        real = ~pad  # (B, N)
        if bool(((mod < 0) | (mod >= len(c.modalities)))[real].any()):
            raise ValueError(f"{prefix}_mod holds a modality index outside [0, {len(c.modalities)}) in a real slot")
        mod = mod.clamp(0, len(c.modalities) - 1)
        checks = [("pos", pos, self.seq_lens, c.max_seq_lens, "max_seq_len")]
        if tokens is not None:
            checks.append(("tokens", tokens, self.vocab_sizes, c.vocab_sizes, "vocab_size"))
        for field, values, bounds, sizes, what in checks:
            bad = ((values < 0) | (values >= bounds[mod])) & real  # (B, N)
            if bool(bad.any()):
                i, value = int(mod[bad][0]), int(values[bad][0])
                raise ValueError(
                    f"{prefix}_{field}: {value} in a slot of modality '{c.modalities[i]}' is outside "
                    f"[0, {sizes[i]}) (its {what})"
                )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Decoder hidden states, one per target slot: (B, N_tgt, D), already layer-normed for the heads."""
        missing = [k for k in (*ENCODER_FIELDS, *DECODER_FIELDS) if k not in batch]
        if missing:
            raise KeyError(f"FourM batch lacks {missing}; the masking module's batches carry every enc_/dec_ field")
        enc_tokens, enc_mod, enc_pos = (batch[k].long() for k in ENCODER_FIELDS[:3])  # (B, N_in) each
        enc_pad = batch["enc_pad"].bool()  # (B, N_in), True = padding
        dec_mod, dec_pos = batch["dec_mod"].long(), batch["dec_pos"].long()  # (B, N_tgt) each
        dec_pad = batch["dec_pad"].bool()  # (B, N_tgt)
        self._check_slots("enc", enc_mod, enc_pos, enc_pad, enc_tokens)
        self._check_slots("dec", dec_mod, dec_pos, dec_pad, None)
        # Padding slots are not checked; point them at row 0 so they index nothing out of range.
        enc_tokens, enc_mod, enc_pos = (t.masked_fill(enc_pad, 0) for t in (enc_tokens, enc_mod, enc_pos))
        dec_mod, dec_pos = dec_mod.masked_fill(dec_pad, 0), dec_pos.masked_fill(dec_pad, 0)

        # Encoder over the visible tokens; padding keys are masked out.
        enc_emb = self.slot(enc_mod, enc_pos)  # (B, N_in, D)
        x = self.drop(self.tok_emb(enc_tokens, enc_mod, enc_pos) + enc_emb)  # (B, N_in, D)
        key_allowed = _guard_empty_rows(~enc_pad[:, None, None, :])  # (B, 1, 1, N_in)
        for block in self.encoder:
            x = block(x, key_allowed)
        x = self.enc_norm(x)

        # Decoder: mask-token queries at the target slots, attending to same-modality queries only.
        context = self.context_proj(x) + enc_emb  # (B, N_in, D)
        y = self.drop(self.mask_token + self.slot(dec_mod, dec_pos))  # (B, N_tgt, D)
        same_mod = dec_mod[:, :, None] == dec_mod[:, None, :]  # (B, N_tgt, N_tgt)
        self_allowed = _guard_empty_rows((same_mod & ~dec_pad[:, None, :])[:, None])  # (B, 1, N_tgt, N_tgt)
        # Cross-attention bias towards inputs at the query's place; -inf on padding keys.
        dec_place, enc_place = self.slot.place_of(dec_mod, dec_pos), self.slot.place_of(enc_mod, enc_pos)  # (B, N)
        same_place = dec_place[:, :, None] == enc_place[:, None, :]  # (B, N_tgt, N_in)
        cross = same_place[:, None].float() * self.aligned_bias[None, :, None, None]  # (B, H, N_tgt, N_in)
        cross = cross.masked_fill(~key_allowed, float("-inf"))
        for block in self.decoder:
            y = block(y, context, self_allowed, cross)
        return self.dec_norm(y)  # (B, N_tgt, D)

    def modality_logits(self, hidden: Tensor, modality: int, pos: Tensor | None = None) -> Tensor:
        """Logits over modality `modality`'s vocabulary: (..., D) hidden, (...) positions -> (..., V_m).

        Positions tell a pose's coordinate slots from its visibility slots; without them every pose slot
        is scored as a coordinate.
        """
        return self.tok_emb.logits(hidden, modality, pos)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """(loss, per-modality CE, per-modality accuracy); the loss weighs tokens or modalities (`loss_weighting`).

        A modality with no non-padding target in this batch is left out of both dicts and of the loss, so
        a batch that happens to ask nothing of it neither reports a fake 0 nor dilutes the others.
        The dict values are detached scalars, for logging; only the total carries gradients.
        """
        hidden = self(batch)  # (B, N_tgt, D)
        targets = batch["dec_tokens"].long()  # (B, N_tgt)
        by_token = self.config.loss_weighting == "token"
        real = ~batch["dec_pad"].bool()  # (B, N_tgt)
        mod = batch["dec_mod"].long()  # (B, N_tgt)
        losses: dict[str, Tensor] = {}
        accuracies: dict[str, Tensor] = {}
        terms: list[Tensor] = []
        for i, name in enumerate(self.config.modalities):
            sel = real & (mod == i)  # (B, N_tgt)
            if not bool(sel.any()):
                continue
            logits = self.modality_logits(hidden[sel], i, batch["dec_pos"].long()[sel]).float()  # (n_i, V_i)
            target = targets[sel]  # (n_i,)
            ce = F.cross_entropy(logits, target)
            terms.append(ce * target.numel() if by_token else ce)
            losses[name] = ce.detach()
            accuracies[name] = (logits.argmax(dim=-1) == target).float().mean().detach()
        # No targets at all: a zero that still depends on the parameters, so backward() works.
        if not terms:
            loss = hidden.sum() * 0.0
        elif by_token:
            loss = torch.stack(terms).sum() / real.sum()
        else:
            loss = torch.stack(terms).mean()
        return loss, losses, accuracies

    # -- accounting -------------------------------------------------------------------------------------

    def num_params(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, n_in: int, n_tgt: int) -> float:
        """Training FLOPs (forward + backward) per target token for n_in inputs and n_tgt targets per sample.

        The "6 N" rule applied per matrix to the tokens that pass through it: a weight of n entries seen
        by t tokens costs 2 n t FLOPs forward and twice that backward. Encoder weights (and the decoder's
        cross-attention keys/values, and the context projection) see the n_in inputs, the other decoder
        weights and the output head (mean vocabulary) the n_tgt targets. Attention scores add
        4 n_q n_k D per layer forward (QK^T and AV). Embedding look-ups, norms, biases and softmax are
        left out; decoder self-attention is counted as if every query saw every other (an upper bound:
        it is restricted to same-modality queries). The total is divided by n_tgt, the tokens that get a loss.
        """
        if n_tgt < 1 or n_in < 0:
            raise ValueError(f"flops_per_token needs n_tgt >= 1 and n_in >= 0, got n_in={n_in}, n_tgt={n_tgt}")
        c = self.config
        D, H = c.dim, c.mlp_dim
        attn_w = 4 * D * D  # q, k, v, out projections
        mlp_w = 2 * D * H
        head_w = D * sum(c.vocab_sizes) / len(c.vocab_sizes)
        enc_macs = c.enc_depth * (attn_w + mlp_w) * n_in + D * D * n_in  # blocks + context projection
        dec_macs = c.dec_depth * ((attn_w + 2 * D * D + mlp_w) * n_tgt + 2 * D * D * n_in)
        head_macs = head_w * n_tgt
        attention = c.enc_depth * 4 * n_in * n_in * D + c.dec_depth * 4 * (n_tgt * n_tgt + n_tgt * n_in) * D
        forward = 2 * (enc_macs + dec_macs + head_macs) + attention
        return 3.0 * forward / n_tgt
