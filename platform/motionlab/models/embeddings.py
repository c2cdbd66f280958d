"""Where a FourM slot is and what its token is: position layouts by kind, token tables by tokenizer.

Every table here feeds a pre-norm residual stream at unit scale (per-element std about 1, as
`nn.Embedding`'s default, T5 and the `torch.nn.Transformer` reference use). At GPT-2's 0.02 the
slot and token signals are smaller than what the first attention and MLP blocks add to every slot
alike, so a decoder query (which carries nothing but its slot) loses where it is by its second block,
and the model can only learn the marginals (see `tests/test_fourm.py::test_copy_task`).

Positions (`posemb`):
- `sincos`: an image grid gets fixed 2-D sin-cos of (row, column) (apple/ml-4m's
  `build_2d_sincos_posemb`), the same for the current and the next frames; a pose gets one learned
  joint-field table (39 rows) shared by every pose modality; text gets fixed 1-D sin-cos. A learned
  frame embedding tells the frames apart (0 = the current frame, 1.. = the next frames).
- `learned`: one learned row per (modality, position), no sharing (the layout before tokenizer sharing).
A learned modality embedding tells current from next. One `SlotEmbedding` serves encoder and decoder.

Tokens (`share_embeddings`): `tokenizer` gives one table per tokenizer (tok_rgb and tok_rgb_next read
the same image codes), tied to that tokenizer's head; `modality` one table and one untied head per
modality; `all` one table for every modality, tied. With `pose_embedding: value` a pose coordinate id
also gets a smooth function of its bin centre, so neighbouring bins start (and, through the tied head,
are predicted) alike; visibility states keep plain rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from motionlab.modalities import POSE_TOKENS_PER_FRAME, POSE_TOKENS_PER_JOINT

if TYPE_CHECKING:
    from motionlab.models.fourm import FourMConfig

SINCOS_TEMPERATURE = 10_000.0
VIS_FIELD = POSE_TOKENS_PER_JOINT - 1  # the visibility state is the last token of a joint
SMALLEST_PERIOD_BINS = 4.0  # the finest wave of the coordinate-value features spans 4 bins
PLACE_STRIDE = 1 << 20  # place ids of grids of different sizes never collide


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """Fixed 1-D sin-cos embedding: (N,) float positions -> (N, dim), dim even."""
    if dim % 2:
        raise ValueError(f"1-D sin-cos needs an even dim, got {dim}")
    omega = 1.0 / SINCOS_TEMPERATURE ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = positions.double()[:, None] * omega[None, :]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(side: int, dim: int) -> Tensor:
    """Fixed 2-D sin-cos of (row, column) for a side x side grid, row-major: (side*side, dim), dim % 4 == 0."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos needs dim divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.cat([sincos_1d(cols.flatten(), dim // 2), sincos_1d(rows.flatten(), dim // 2)], dim=1)


def value_features(bins: int, dim: int) -> Tensor:
    """Sin-cos of each bin centre at periods from 2 x the range down to 4 bins: (bins, dim), dim even.

    Neighbouring bins get nearly the same features and distant bins different ones, which is what
    "near the current joint" needs from an embedding.
    """
    if dim % 2:
        raise ValueError(f"value features need an even dim, got {dim}")
    centres = torch.arange(bins, dtype=torch.float64) + 0.5  # (bins,)
    periods = torch.logspace(math.log10(2.0 * bins), math.log10(SMALLEST_PERIOD_BINS), dim // 2, dtype=torch.float64)
    angles = 2 * math.pi * centres[:, None] / periods[None, :]  # (bins, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


class SlotEmbedding(nn.Module):
    """(modality, position) -> position + frame + modality embedding: (B, N) int64 pair -> (B, N, D).

    Every (modality, position) pair owns one row of the precomputed index buffers (per-modality offsets),
    so a lookup is three gathers whatever the layouts.
    """

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        c, D = config, config.dim
        rows = sum(c.max_seq_lens)
        fixed = torch.zeros(rows, D)  # sin-cos part, 0 where a slot has none
        learned_row = torch.zeros(rows, dtype=torch.long)  # row of `learned`
        has_learned = torch.zeros(rows, 1)
        frame = torch.zeros(rows, dtype=torch.long)
        place = torch.empty(rows, dtype=torch.long)  # where a slot is, comparable across modalities
        n_learned, start = 0, 0
        joint_field = None  # rows of the pose joint-field table, shared by every pose modality
        for i, length in enumerate(c.max_seq_lens):
            sl = slice(start, start + length)
            per_frame = length // c.frames[i]
            pos = torch.arange(length)
            if c.posemb == "learned":
                learned_row[sl] = n_learned + pos
                has_learned[sl] = 1.0
                n_learned += length
            elif c.layouts[i] == "pose":
                if joint_field is None:
                    joint_field, n_learned = n_learned, n_learned + POSE_TOKENS_PER_FRAME
                learned_row[sl] = joint_field + pos % POSE_TOKENS_PER_FRAME
                has_learned[sl] = 1.0
            elif c.layouts[i] == "grid":
                fixed[sl] = sincos_2d(math.isqrt(per_frame), D).repeat(c.frames[i], 1)
            else:
                fixed[sl] = sincos_1d(pos, D)
            frame[sl] = (1 if c.temporal[i] == "next" else 0) + pos // per_frame
            # A grid cell of a side x side grid, or a joint field, is the same place in every frame and
            # modality of that layout; a sequence slot matches nothing (a negative id of its own).
            if c.layouts[i] == "grid":
                place[sl] = PLACE_STRIDE * (1 + per_frame) + pos % per_frame
            elif c.layouts[i] == "pose":
                place[sl] = pos % POSE_TOKENS_PER_FRAME
            else:
                place[sl] = -1 - (start + pos)
            start += length
        self.register_buffer("offsets", torch.tensor([0, *c.max_seq_lens[:-1]]).cumsum(0), persistent=False)
        self.register_buffer("fixed", fixed, persistent=False)  # (rows, D)
        self.register_buffer("learned_row", learned_row, persistent=False)  # (rows,)
        self.register_buffer("has_learned", has_learned, persistent=False)  # (rows, 1)
        self.register_buffer("frame_row", frame, persistent=False)  # (rows,)
        self.register_buffer("place", place, persistent=False)  # (rows,)
        self.learned = nn.Embedding(max(n_learned, 1), D)
        n_frames = 1 + max((1 if t == "next" else 0) + f - 1 for t, f in zip(c.temporal, c.frames, strict=True))
        self.frame = nn.Embedding(n_frames, D) if c.posemb == "sincos" else None
        self.mod = nn.Embedding(len(c.modalities), D)

    def place_of(self, mod: Tensor, pos: Tensor) -> Tensor:
        """(B, N) modality and position -> (B, N) place ids: equal ids are the same grid cell or joint field."""
        return self.place[self.offsets[mod] + pos]

    def forward(self, mod: Tensor, pos: Tensor) -> Tensor:
        # mod, pos: (B, N) int64 -> (B, N, D)
        row = self.offsets[mod] + pos
        out = self.fixed[row] + self.learned(self.learned_row[row]) * self.has_learned[row] + self.mod(mod)
        if self.frame is not None:
            out = out + self.frame(self.frame_row[row])
        return out


class TokenEmbedding(nn.Module):
    """Token ids -> vectors, and the output logits over the same vocabularies.

    Modalities that share a table (by tokenizer, or all of them) index it at offset 0; `modality` keeps
    one table per modality. Tied logits are `h @ E.T / sqrt(D)` (T5's scaling of a tied head), so a unit-scale
    table gives unit-scale logits at initialisation.
    """

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        c, D = config, config.dim
        self.dim = D
        groups = config.table_groups()  # modality -> table index
        self.register_buffer("table_of", torch.tensor(groups), persistent=False)  # (M,)
        sizes = [max(v for v, g in zip(c.vocab_sizes, groups, strict=True) if g == t) for t in range(max(groups) + 1)]
        self.tables = nn.ModuleList(nn.Embedding(v, D) for v in sizes)
        untied = c.share_embeddings == "modality"
        self.heads = nn.ModuleList(nn.Linear(D, v, bias=False) for v in c.vocab_sizes) if untied else None
        # Value-aware rows for the tables of pose tokenizers (`pose_embedding: value`).
        self.value = nn.ModuleDict()
        if c.pose_embedding == "value":
            for t in sorted({g for g, layout in zip(groups, c.layouts, strict=True) if layout == "pose"}):
                feats = value_features(sizes[t], D)
                self.register_buffer(f"value_feats_{t}", feats, persistent=False)  # (V_t, D)
                self.value[str(t)] = nn.Linear(D, D, bias=False)
        self.layouts = c.layouts
        self.vocab_sizes = c.vocab_sizes
        self.logit_scale = 1.0 / math.sqrt(D)  # T5's scaling of a tied head

    def init_weights(self, head_std: float) -> None:
        for table in self.tables:
            nn.init.normal_(table.weight, std=1.0)
        for t, proj in self.value.items():
            # Start the pose rows as the smooth value term alone: neighbouring bins alike, far bins apart.
            nn.init.zeros_(self.tables[int(t)].weight)
            nn.init.normal_(proj.weight, std=math.sqrt(2.0 / self.dim))  # features have rms 1/sqrt(2)
        if self.heads is not None:
            for head in self.heads:
                nn.init.normal_(head.weight, std=head_std)

    def _rows(self, table: int, coordinate: bool) -> Tensor:
        """The (V_t, D) embedding rows of one table; coordinate rows add the value term."""
        weight = self.tables[table].weight
        if coordinate and str(table) in self.value:
            weight = weight + self.value[str(table)](getattr(self, f"value_feats_{table}"))
        return weight

    def _coordinate(self, modality: int, pos: Tensor) -> Tensor:
        """True where a slot of `modality` holds a coordinate bin rather than a visibility state."""
        if self.layouts[modality] != "pose":
            return torch.zeros_like(pos, dtype=torch.bool)
        return pos % POSE_TOKENS_PER_JOINT != VIS_FIELD

    def forward(self, tokens: Tensor, mod: Tensor, pos: Tensor) -> Tensor:
        # tokens, mod, pos: (B, N) int64 -> (B, N, D)
        out = torch.zeros(*tokens.shape, self.dim, device=tokens.device, dtype=self.tables[0].weight.dtype)
        for m in range(len(self.layouts)):
            sel = mod == m  # (B, N)
            if not bool(sel.any()):
                continue
            t = int(self.table_of[m])
            ids, coord = tokens[sel], self._coordinate(m, pos[sel])  # (n,) each
            emb = self.tables[t](ids)  # (n, D)
            if str(t) in self.value and bool(coord.any()):
                # the value term of the looked-up ids only, not of the whole vocabulary
                feats = getattr(self, f"value_feats_{t}")[ids]  # (n, D)
                emb = emb + coord[:, None] * self.value[str(t)](feats)
            out[sel] = emb.to(out.dtype)
        return out

    def logits(self, hidden: Tensor, modality: int, pos: Tensor | None = None) -> Tensor:
        """(..., D) hidden states of `modality`'s slots at positions `pos` (...) -> (..., V_m) logits.

        Without `pos` every slot of a pose modality is scored as a coordinate.
        """
        if self.heads is not None:
            return self.heads[modality](hidden)
        t = int(self.table_of[modality])
        vocab = self.vocab_sizes[modality]
        scale = self.logit_scale
        plain = hidden @ self.tables[t].weight[:vocab].T * scale  # (..., V_m)
        if str(t) not in self.value or self.layouts[modality] != "pose":
            return plain
        smooth = hidden @ self._rows(t, True)[:vocab].T * scale
        if pos is None:
            return smooth
        return torch.where(self._coordinate(modality, pos)[..., None], smooth, plain)
