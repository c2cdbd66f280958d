"""A 4M-style multimodal masked encoder-decoder in one readable file.

The encoder reads a set of visible tokens drawn from any modalities; the decoder asks for another set
of tokens (the targets) by position and modality and predicts their ids. Semantics follow 4M:

- every slot, input or target, is located by a per-modality learned positional embedding plus a
  modality embedding (learned rather than sin-cos, because one table serves every kind of modality:
  image grids, pose rows and captions alike);
- the decoder's queries are one learned mask token plus the slot embedding of the target, so the
  decoder learns *where* to predict, never *what* was there;
- decoder self-attention only connects queries of the same modality, so the prediction of one
  modality never depends on which tokens of another modality happened to be asked for;
- cross-attention reads a projection of the encoder output plus the encoder slot embeddings;
- the loss is the mean over modalities of each modality's mean cross-entropy, so a long modality
  (a 16x16 image grid) does not drown a short one (a 39-token pose).

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

ENCODER_FIELDS = ("enc_tokens", "enc_mod", "enc_pos", "enc_pad")
DECODER_FIELDS = ("dec_mod", "dec_pos", "dec_pad")
INIT_STD = 0.02  # GPT-2 initialisation


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
    shared_vocab: bool = False  # one embedding table (max vocab rows) for every modality, tied to the heads

    def __post_init__(self) -> None:
        # Tuples even when built from lists (JSON), so the config stays hashable and comparable.
        for name in ("modalities", "vocab_sizes", "max_seq_lens"):
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

    @property
    def num_heads(self) -> int:
        return self.dim // self.head_dim

    @property
    def mlp_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @classmethod
    def from_experiment(cls, cfg: ExperimentConfig) -> FourMConfig:
        """The model an experiment config describes; optional knobs fall back to the defaults above."""
        model = cfg.model
        return cls(
            modalities=tuple(cfg.modalities),
            vocab_sizes=tuple(cfg.vocab_sizes),
            max_seq_lens=tuple(cfg.max_seq_lens),
            dim=model.dim,
            enc_depth=model.enc_depth,
            dec_depth=model.dec_depth,
            head_dim=model.head_dim,
            # Not (yet) fields of ModelConfig; read them if a config ever grows them.
            mlp_ratio=getattr(model, "mlp_ratio", cls.mlp_ratio),
            dropout=getattr(model, "dropout", cls.dropout),
            shared_vocab=getattr(model, "shared_vocab", cls.shared_vocab),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, so a checkpoint can store it as JSON."""
        d = asdict(self)
        for name in ("modalities", "vocab_sizes", "max_seq_lens"):
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
        # x: (B, N, D), context: (B, M, D) or None (then M = N), allowed: bool broadcastable to (B, 1, N, M)
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
        # y: (B, N_tgt, D), context: (B, N_in, D), self_allowed: (B, 1, N_tgt, N_tgt), cross_allowed: (B, 1, 1, N_in)
        y = y + self.self_attn(self.norm1(y), allowed=self_allowed)
        y = y + self.cross_attn(self.query_norm(y), self.context_norm(context), allowed=cross_allowed)
        return y + self.mlp(self.norm2(y))


class SlotEmbedding(nn.Module):
    """Where a slot is: a learned position inside its modality plus a learned modality embedding.

    All modalities' positions live in one table at per-modality offsets (the same as one table per
    modality, with one lookup instead of a loop).
    """

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        self.pos = nn.Embedding(sum(config.max_seq_lens), config.dim)
        self.mod = nn.Embedding(len(config.modalities), config.dim)
        offsets = torch.tensor([0, *config.max_seq_lens[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)  # (M,)

    def forward(self, mod: Tensor, pos: Tensor) -> Tensor:
        # mod, pos: (B, N) int64 -> (B, N, D)
        return self.pos(self.offsets[mod] + pos) + self.mod(mod)


# -- the model ------------------------------------------------------------------------------------------


class FourM(nn.Module):
    """Multimodal masked encoder-decoder: visible tokens in, hidden states for the asked-for targets out."""

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        # Token ids of every modality share one table at per-modality offsets, equivalent to one
        # nn.Embedding per modality; with shared_vocab every modality indexes the same max(vocab) rows.
        if c.shared_vocab:
            self.tok_emb = nn.Embedding(max(c.vocab_sizes), c.dim)
            vocab_offsets = torch.zeros(len(c.modalities), dtype=torch.long)
        else:
            self.tok_emb = nn.Embedding(sum(c.vocab_sizes), c.dim)
            vocab_offsets = torch.tensor([0, *c.vocab_sizes[:-1]]).cumsum(0)
        self.register_buffer("vocab_offsets", vocab_offsets, persistent=False)  # (M,)
        self.register_buffer("vocab_sizes", torch.tensor(c.vocab_sizes), persistent=False)  # (M,)
        self.register_buffer("seq_lens", torch.tensor(c.max_seq_lens), persistent=False)  # (M,)

        self.enc_slot = SlotEmbedding(c)
        self.dec_slot = SlotEmbedding(c)
        self.mask_token = nn.Parameter(torch.zeros(c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.enc_depth))
        self.enc_norm = nn.LayerNorm(c.dim)
        self.context_proj = nn.Linear(c.dim, c.dim)
        self.decoder = nn.ModuleList(DecoderBlock(c) for _ in range(c.dec_depth))
        self.dec_norm = nn.LayerNorm(c.dim)
        # With shared_vocab the heads are the (transposed) shared embedding, sliced to each vocabulary.
        self.heads = None if c.shared_vocab else nn.ModuleList(nn.Linear(c.dim, v, bias=False) for v in c.vocab_sizes)
        self.apply(self._init_weights)
        # GPT-2: shrink the residual projections so the residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") and name != "context_proj.weight":
                depth = c.enc_depth if name.startswith("encoder.") else c.dec_depth
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * depth))
        nn.init.normal_(self.mask_token, mean=0.0, std=INIT_STD)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

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
        enc_emb = self.enc_slot(enc_mod, enc_pos)  # (B, N_in, D)
        x = self.drop(self.tok_emb(enc_tokens + self.vocab_offsets[enc_mod]) + enc_emb)  # (B, N_in, D)
        key_allowed = _guard_empty_rows(~enc_pad[:, None, None, :])  # (B, 1, 1, N_in)
        for block in self.encoder:
            x = block(x, key_allowed)
        x = self.enc_norm(x)

        # Decoder: mask-token queries at the target slots, attending to same-modality queries only.
        context = self.context_proj(x) + enc_emb  # (B, N_in, D)
        y = self.drop(self.mask_token + self.dec_slot(dec_mod, dec_pos))  # (B, N_tgt, D)
        same_mod = dec_mod[:, :, None] == dec_mod[:, None, :]  # (B, N_tgt, N_tgt)
        self_allowed = _guard_empty_rows((same_mod & ~dec_pad[:, None, :])[:, None])  # (B, 1, N_tgt, N_tgt)
        for block in self.decoder:
            y = block(y, context, self_allowed, key_allowed)
        return self.dec_norm(y)  # (B, N_tgt, D)

    def modality_logits(self, hidden: Tensor, modality: int) -> Tensor:
        """Logits over modality `modality`'s vocabulary: (..., D) -> (..., V_m)."""
        if self.heads is None:
            weight = self.tok_emb.weight[: self.config.vocab_sizes[modality]]  # (V_m, D), tied
            return F.linear(hidden, weight)
        return self.heads[modality](hidden)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """(loss, per-modality CE, per-modality accuracy), the loss being the mean over the modalities present.

        A modality with no non-padding target in this batch is left out of both dicts and of the mean, so
        a batch that happens to ask nothing of it neither reports a fake 0 nor dilutes the others.
        The dict values are detached scalars, for logging; only the total carries gradients.
        """
        hidden = self(batch)  # (B, N_tgt, D)
        targets = batch["dec_tokens"].long()  # (B, N_tgt)
        real = ~batch["dec_pad"].bool()  # (B, N_tgt)
        mod = batch["dec_mod"].long()  # (B, N_tgt)
        losses: dict[str, Tensor] = {}
        accuracies: dict[str, Tensor] = {}
        terms: list[Tensor] = []
        for i, name in enumerate(self.config.modalities):
            sel = real & (mod == i)  # (B, N_tgt)
            if not bool(sel.any()):
                continue
            logits = self.modality_logits(hidden[sel], i).float()  # (n_i, V_i)
            target = targets[sel]  # (n_i,)
            ce = F.cross_entropy(logits, target)
            terms.append(ce)
            losses[name] = ce.detach()
            accuracies[name] = (logits.argmax(dim=-1) == target).float().mean().detach()
        # No targets at all: a zero that still depends on the parameters, so backward() works.
        loss = torch.stack(terms).mean() if terms else hidden.sum() * 0.0
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
