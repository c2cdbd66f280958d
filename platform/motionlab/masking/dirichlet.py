"""4M-style multimodal masking: per sample, a Dirichlet split of random input and target token budgets.

Every training step sees a different mix of which modalities are visible and which are predicted, so a
single encoder-decoder learns every any-to-any task at once. Per sample the input total and the target
total are drawn uniformly from their ranges, split across modalities with Dirichlet(alphas) (floor, then
the leftover tokens go one at a time to the winner of a fresh Dirichlet draw, so a modality with a tiny
alpha stays starved), and clamped to what the modality holds. Inputs and targets are disjoint.

A share of the samples (`forecast_share`, 0 by default) instead poses the forecasting task the evaluation
and the roll-outs ask for: every token of the current-frame modalities is input, and the target budget is
split over the next-frame modalities only. Plain 4M masking poses it rarely (with M4-tiny's budgets a
next-frame target has its current-frame twin visible a quarter of the time and never the whole current
frame), so a short run learns the marginals before it learns to carry the present forward.

The result is packed into fixed-length encoder and decoder rows (the range maxima), ordered by modality
then position and padded at the end, so every batch has the same shape and nothing recompiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from motionlab import modalities as registry

if TYPE_CHECKING:
    from motionlab.config.schema import ExperimentConfig

# Where a noise key sorts an invalid position: above every uniform draw in [0, 1), so it is never chosen.
_INVALID_KEY = 2.0


@dataclass(frozen=True)
class MaskingSpec:
    """The masking half of an experiment config, as plain tuples so workers can pickle it cheaply."""

    modalities: tuple[str, ...]
    max_seq_lens: tuple[int, ...]
    input_alphas: tuple[float, ...]
    target_alphas: tuple[float, ...]
    input_tokens_range: tuple[int, int]
    target_tokens_range: tuple[int, int]
    forecast_share: float = 0.0  # samples that get every current token in and next-frame targets out
    temporal: tuple[str, ...] = ()  # per modality: current | next | none; empty = from the registry

    def __post_init__(self) -> None:
        # Coerce lists (and numpy scalars) so equality and hashing behave, then fail early with the field name.
        set_ = object.__setattr__
        set_(self, "modalities", tuple(str(m) for m in self.modalities))
        set_(self, "max_seq_lens", tuple(int(n) for n in self.max_seq_lens))
        set_(self, "input_alphas", tuple(float(a) for a in self.input_alphas))
        set_(self, "target_alphas", tuple(float(a) for a in self.target_alphas))
        set_(self, "input_tokens_range", tuple(int(n) for n in self.input_tokens_range))
        set_(self, "target_tokens_range", tuple(int(n) for n in self.target_tokens_range))
        set_(self, "forecast_share", float(self.forecast_share))
        if not self.temporal:
            set_(self, "temporal", tuple(registry.REGISTRY[n].temporal if n in registry.REGISTRY else "none"
                                         for n in self.modalities))
        set_(self, "temporal", tuple(str(t) for t in self.temporal))
        m = len(self.modalities)
        if m == 0:
            raise ValueError("MaskingSpec.modalities is empty; give at least one modality")
        if len(set(self.modalities)) != m:
            raise ValueError(f"MaskingSpec.modalities lists a modality twice: {self.modalities}")
        for name in ("max_seq_lens", "input_alphas", "target_alphas"):
            values = getattr(self, name)
            if len(values) != m:
                raise ValueError(f"MaskingSpec.{name} has {len(values)} entries but there are {m} modalities")
        if any(n < 1 for n in self.max_seq_lens):
            raise ValueError(f"MaskingSpec.max_seq_lens must be >= 1, got {self.max_seq_lens}")
        for name in ("input_alphas", "target_alphas"):
            alphas = getattr(self, name)
            if any(not math.isfinite(a) or a < 0 for a in alphas):
                raise ValueError(f"MaskingSpec.{name} must be finite and >= 0, got {alphas}")
            if not any(a > 0 for a in alphas):
                raise ValueError(f"MaskingSpec.{name} is all 0, so no modality could receive tokens")
        for name in ("input_tokens_range", "target_tokens_range"):
            bounds = getattr(self, name)
            if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1]:
                raise ValueError(f"MaskingSpec.{name} must be [min, max] with 0 <= min <= max, got {bounds}")
        if len(self.temporal) != m:
            raise ValueError(f"MaskingSpec.temporal has {len(self.temporal)} entries but there are {m} modalities")
        if not 0.0 <= self.forecast_share <= 1.0:
            raise ValueError(f"MaskingSpec.forecast_share must lie in [0, 1], got {self.forecast_share}")
        if self.forecast_share > 0:
            current = sum(n for n, t in zip(self.max_seq_lens, self.temporal, strict=True) if t == "current")
            if "next" not in self.temporal or not current:
                raise ValueError("MaskingSpec.forecast_share > 0 needs current and next modalities, got "
                                 f"{dict(zip(self.modalities, self.temporal, strict=True))}")
            if current > self.input_tokens_range[1]:
                raise ValueError(f"MaskingSpec.forecast_share > 0 puts every current token ({current}) in, more "
                                 f"than input_tokens_range's max {self.input_tokens_range[1]}")

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> MaskingSpec:
        """The spec of a validated experiment config (the config already checked lengths and alphas)."""
        return cls(
            modalities=tuple(cfg.modalities),
            max_seq_lens=tuple(cfg.max_seq_lens),
            input_alphas=tuple(cfg.input_alphas),
            target_alphas=tuple(cfg.target_alphas),
            input_tokens_range=tuple(cfg.input_tokens_range),  # type: ignore[arg-type]
            target_tokens_range=tuple(cfg.target_tokens_range),  # type: ignore[arg-type]
            forecast_share=cfg.forecast_share,
        )

    @property
    def num_input(self) -> int:
        """Packed encoder length: the most input tokens a sample can draw."""
        return self.input_tokens_range[1]

    @property
    def num_target(self) -> int:
        """Packed decoder length: the most target tokens a sample can draw."""
        return self.target_tokens_range[1]


@dataclass
class MaskedBatch:
    """Packed encoder inputs and decoder targets; padding slots hold 0 everywhere and True in `*_pad`."""

    enc_tokens: np.ndarray  # (B, N_in) int64 token ids
    enc_mod: np.ndarray  # (B, N_in) int64 index into spec.modalities
    enc_pos: np.ndarray  # (B, N_in) int64 position inside the modality
    enc_pad: np.ndarray  # (B, N_in) bool, True = padding slot
    dec_tokens: np.ndarray  # (B, N_tgt) int64 target ids
    dec_mod: np.ndarray  # (B, N_tgt) int64
    dec_pos: np.ndarray  # (B, N_tgt) int64
    dec_pad: np.ndarray  # (B, N_tgt) bool

    def as_dict(self) -> dict[str, np.ndarray]:
        """Field name -> array, the shape a Ray Data batch or a collate function wants."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- budgets -----------------------------------------------------------------------------------------------


def _split(rng: np.random.Generator, alphas: Sequence[float], totals: np.ndarray) -> np.ndarray:
    """Split each total (B,) across modalities with Dirichlet(alphas) -> (B, M) int64 summing to the totals.

    Zero-alpha modalities are left out of the draw altogether (a Dirichlet component with alpha 0 is a point
    mass at 0), so they get exactly nothing without an epsilon floor.
    """
    alpha = np.asarray(alphas, dtype=np.float64)  # (M,)
    live = np.flatnonzero(alpha > 0)  # (K,)
    b, k = totals.shape[0], live.size
    out = np.zeros((b, alpha.size), dtype=np.int64)  # (B, M)
    if b == 0:
        return out
    if k == 1:
        out[:, live[0]] = totals
        return out
    a = alpha[live]
    share = np.floor(rng.dirichlet(a, size=b) * totals[:, None]).astype(np.int64)  # (B, K)
    # Flooring loses fewer than K tokens per sample; each goes to the argmax of a fresh draw, as 4M does,
    # which keeps near-zero-alpha modalities starved where a round-robin would feed them.
    left = totals - share.sum(axis=1)  # (B,) in [0, K]
    winners = rng.dirichlet(a, size=(b, k)).argmax(axis=-1)  # (B, K) one candidate winner per leftover
    used = np.arange(k)[None, :] < left[:, None]  # (B, K) only the first `left` draws count
    share += ((winners[..., None] == np.arange(k)) & used[..., None]).sum(axis=1)  # (B, K)
    out[:, live] = share
    return out


def sample_budgets(
    spec: MaskingSpec, rng: np.random.Generator, valid_lens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """valid_lens (B, M) tokens available per sample and modality -> input budgets (B, M), target budgets (B, M) int64.

    Totals are drawn uniformly (inclusive) from the ranges. A budget above what a modality holds is clamped,
    not moved elsewhere (as in 4M), so a sample may use fewer tokens than drawn; the target budget is clamped
    to what the input left over, since a token is never both input and target.
    """
    valid = np.asarray(valid_lens)
    m = len(spec.modalities)
    if valid.ndim != 2 or valid.shape[1] != m:
        raise ValueError(f"valid_lens must have shape (B, {m}) for modalities {spec.modalities}, got {valid.shape}")
    if valid.size and not np.issubdtype(valid.dtype, np.integer):
        raise ValueError(f"valid_lens must hold integers, got dtype {valid.dtype}")
    valid = valid.astype(np.int64, copy=False)
    if (valid < 0).any():
        raise ValueError("valid_lens must be >= 0")
    b = valid.shape[0]
    in_total = rng.integers(spec.input_tokens_range[0], spec.input_tokens_range[1], size=b, endpoint=True)  # (B,)
    tg_total = rng.integers(spec.target_tokens_range[0], spec.target_tokens_range[1], size=b, endpoint=True)  # (B,)
    in_budget = np.minimum(_split(rng, spec.input_alphas, in_total), valid)  # (B, M)
    tg_budget = np.minimum(_split(rng, spec.target_alphas, tg_total), valid - in_budget)  # (B, M)
    if spec.forecast_share > 0:
        forecast = rng.random(b) < spec.forecast_share  # (B,)
        # a forecasting sample asks for as much of the future as the target budget allows
        in_f, tg_f = _forecast_budgets(spec, rng, valid[forecast], np.full(int(forecast.sum()), spec.num_target))
        in_budget[forecast], tg_budget[forecast] = in_f, tg_f
    return in_budget, tg_budget


def _forecast_budgets(
    spec: MaskingSpec, rng: np.random.Generator, valid: np.ndarray, tg_total: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Forecasting samples: every current token in; the target total split over next modalities by target alphas.

    valid (F, M), tg_total (F,) -> input budgets (F, M), target budgets (F, M) int64. Next modalities whose
    target alphas are all 0 share the total uniformly instead.
    """
    current = np.array([t == "current" for t in spec.temporal])  # (M,)
    nxt = np.array([t == "next" for t in spec.temporal])  # (M,)
    in_budget = np.where(current[None, :], valid, 0)  # (F, M)
    alphas = np.where(nxt, spec.target_alphas, 0.0)
    if not (alphas > 0).any():
        alphas = nxt.astype(np.float64)
    tg_budget = np.minimum(_split(rng, alphas, tg_total), valid - in_budget)  # (F, M)
    return in_budget, tg_budget


# -- validation and packing --------------------------------------------------------------------------------


def _check_tokens(
    tokens: Mapping[str, np.ndarray],
    spec: MaskingSpec,
    names: Sequence[str],
    valid_lens: Mapping[str, np.ndarray] | None,
) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Batch size, int64 token arrays (B, L_m) and valid lengths (B,) for `names`, or a ValueError that says why.

    Keys of `tokens` / `valid_lens` outside `names` are ignored: a data batch may carry more columns.
    """
    arrays: dict[str, np.ndarray] = {}
    batch: int | None = None
    for name in names:
        if name not in tokens:
            raise ValueError(f"tokens has no '{name}' (needed: {', '.join(names)}; given: {', '.join(tokens)})")
        arr = np.asarray(tokens[name])
        if arr.ndim != 2:
            raise ValueError(f"tokens['{name}'] must have shape (B, L), got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"tokens['{name}'] must hold integer ids, got dtype {arr.dtype}")
        limit = spec.max_seq_lens[spec.modalities.index(name)]
        if arr.shape[1] > limit:
            raise ValueError(f"tokens['{name}'] has {arr.shape[1]} tokens per sample, more than max_seq_len {limit}")
        if batch is None:
            batch = arr.shape[0]
        elif arr.shape[0] != batch:
            raise ValueError(f"tokens['{name}'] has batch size {arr.shape[0]}, other modalities have {batch}")
        arrays[name] = arr.astype(np.int64, copy=False)
    b = batch or 0
    valid: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        length = arr.shape[1]
        if valid_lens is None or name not in valid_lens:
            valid[name] = np.full(b, length, dtype=np.int64)
            continue
        v = np.asarray(valid_lens[name])
        if v.shape != (b,):
            raise ValueError(f"valid_lens['{name}'] must have shape ({b},), got {v.shape}")
        if v.size and not np.issubdtype(v.dtype, np.integer):
            raise ValueError(f"valid_lens['{name}'] must hold integers, got dtype {v.dtype}")
        v = v.astype(np.int64, copy=False)
        if v.size and (v.min() < 0 or v.max() > length):
            raise ValueError(f"valid_lens['{name}'] must lie in [0, {length}], got [{v.min()}, {v.max()}]")
        valid[name] = v
    return b, arrays, valid


def _pack(
    chosen: np.ndarray, tok: np.ndarray, mod: np.ndarray, pos: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Move the chosen tokens of each row to the front of a (B, width) row, keeping their column order.

    chosen (B, T) bool, tok (B, T) int64, mod / pos (T,) int64 -> tokens, modality, position (B, width) int64
    and padding mask (B, width) bool. Columns are laid out modality by modality, position ascending, so the
    packed order is modality then position.
    """
    b = chosen.shape[0]
    counts = chosen.sum(axis=1)  # (B,)
    if counts.size and counts.max() > width:
        raise RuntimeError(f"{counts.max()} tokens chosen for {width} packed slots; the budgets are inconsistent")
    rows, cols = np.nonzero(chosen)  # (n,), row-major so each row's columns come ascending
    slots = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)  # (n,) slot within its row
    out_tok = np.zeros((b, width), dtype=np.int64)
    out_mod = np.zeros((b, width), dtype=np.int64)
    out_pos = np.zeros((b, width), dtype=np.int64)
    out_pad = np.ones((b, width), dtype=bool)
    out_tok[rows, slots] = tok[rows, cols]
    out_mod[rows, slots] = mod[cols]
    out_pos[rows, slots] = pos[cols]
    out_pad[rows, slots] = False
    return out_tok, out_mod, out_pos, out_pad


def _layout(lengths: Sequence[int], indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Modality index and position of every column of the concatenated modalities -> two (T,) int64."""
    mod = np.concatenate([np.full(n, i, dtype=np.int64) for n, i in zip(lengths, indices, strict=True)])
    pos = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    return mod, pos


# -- public entry points -----------------------------------------------------------------------------------


def mask_batch(
    tokens: dict[str, np.ndarray],
    spec: MaskingSpec,
    rng: np.random.Generator,
    valid_lens: dict[str, np.ndarray] | None = None,
) -> MaskedBatch:
    """tokens[name]: (B, L_m) int ids for every modality of spec; valid_lens[name]: (B,) how many leading tokens
    are real (text rows end in padding); default L_m.

    Input positions are a uniform random subset of each modality's valid positions, target positions a
    uniform random subset of the valid positions left. Packed to (B, spec.num_input) and (B, spec.num_target).
    Deterministic given the generator's state.
    """
    names = spec.modalities
    b, arrays, valid = _check_tokens(tokens, spec, names, valid_lens)
    in_budget, tg_budget = sample_budgets(spec, rng, np.stack([valid[n] for n in names], axis=1))  # (B, M) each
    in_parts: list[np.ndarray] = []
    tg_parts: list[np.ndarray] = []
    for m, name in enumerate(names):
        length = arrays[name].shape[1]
        if length == 0 or not (in_budget[:, m].any() or tg_budget[:, m].any()):
            # Nothing drawn from this modality in the whole batch: skip the sort (and its random draw).
            in_parts.append(np.zeros((b, length), dtype=bool))
            tg_parts.append(np.zeros((b, length), dtype=bool))
            continue
        keys = rng.random((b, length))  # (B, L) a random order of positions
        keys[np.arange(length)[None, :] >= valid[name][:, None]] = _INVALID_KEY
        order = np.argsort(keys, axis=1)  # (B, L) positions, first drawn first
        rank = np.empty_like(order)  # (B, L) when each position was drawn
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(length), (b, length)), axis=1)
        n_in = in_budget[:, m, None]  # (B, 1)
        in_parts.append(rank < n_in)
        tg_parts.append((rank >= n_in) & (rank < n_in + tg_budget[:, m, None]))
    tok = np.concatenate([arrays[n] for n in names], axis=1)  # (B, T)
    mod, pos = _layout([arrays[n].shape[1] for n in names], range(len(names)))
    enc = _pack(np.concatenate(in_parts, axis=1), tok, mod, pos, spec.num_input)
    dec = _pack(np.concatenate(tg_parts, axis=1), tok, mod, pos, spec.num_target)
    return MaskedBatch(*enc, *dec)


def whole_modality_batch(
    tokens: dict[str, np.ndarray],
    spec: MaskingSpec,
    inputs: Sequence[str],
    targets: Sequence[str],
    valid_lens: dict[str, np.ndarray] | None = None,
) -> MaskedBatch:
    """Deterministic task batch for evaluation/generation: every valid token of the `inputs` modalities is input,
    every token of the `targets` modalities is a target; packed lengths are the sums of those modalities'
    max_seq_lens (not the ranges).

    Modalities are laid out in spec order whatever the order of `inputs` / `targets`, as in `mask_batch`.
    `valid_lens` trims inputs only: a target covers all of its L_m positions, since at generation time the
    model must also fill the padding. A target modality missing from `tokens` (nothing known yet, as when
    generating) gets 0 ids over its max_seq_len positions.
    """
    for role, names in (("inputs", inputs), ("targets", targets)):
        if not names:
            raise ValueError(f"{role} is empty; name at least one modality")
        unknown = [n for n in names if n not in spec.modalities]
        if unknown:
            raise ValueError(f"{role} names {unknown}, not in the spec's modalities {spec.modalities}")
        if len(set(names)) != len(names):
            raise ValueError(f"{role} lists a modality twice: {list(names)}")
    both = set(inputs) & set(targets)
    if both:
        raise ValueError(f"{sorted(both)} is both input and target; a token is never both")
    in_names = [n for n in spec.modalities if n in inputs]
    tg_names = [n for n in spec.modalities if n in targets]
    b, in_arrays, valid = _check_tokens(tokens, spec, in_names, valid_lens)
    known = [n for n in tg_names if n in tokens]
    b_tg, tg_arrays, _ = _check_tokens(tokens, spec, known, None)
    if known and b_tg != b:
        raise ValueError(f"target tokens have batch size {b_tg}, input tokens have {b}")
    for n in tg_names:
        if n not in tg_arrays:
            tg_arrays[n] = np.zeros((b, spec.max_seq_lens[spec.modalities.index(n)]), dtype=np.int64)

    def lay(names: list[str], arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        lengths = [arrays[n].shape[1] for n in names]
        mod, pos = _layout(lengths, [spec.modalities.index(n) for n in names])
        width = sum(spec.max_seq_lens[spec.modalities.index(n)] for n in names)
        return np.concatenate([arrays[n] for n in names], axis=1), mod, pos, width  # (B, T), (T,), (T,)

    tok, mod, pos, width = lay(in_names, in_arrays)
    limit = np.concatenate(
        [np.broadcast_to(valid[n][:, None], in_arrays[n].shape) for n in in_names], axis=1
    )  # (B, T) valid length of each column's modality
    enc = _pack(pos[None, :] < limit, tok, mod, pos, width)
    tok, mod, pos, width = lay(tg_names, tg_arrays)
    dec = _pack(np.ones(tok.shape, dtype=bool), tok, mod, pos, width)
    return MaskedBatch(*enc, *dec)
