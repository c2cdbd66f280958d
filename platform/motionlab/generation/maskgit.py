"""MaskGIT-style iterative decoding of one modality with a FourM, and roll-outs that feed predictions back.

A masked model is trained to predict any subset of a modality from any other subset, so a whole row is
generated in a few parallel steps instead of one token at a time: every step predicts all still-unknown
positions, keeps the most confident samples and shows them to the encoder as inputs for the next step.
The number still unknown follows a cosine schedule (few tokens first, while the model knows least,
many at the end), reaching 0 at the last step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from motionlab.models.fourm import FourM


@contextmanager
def _inference(model: FourM) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd for the duration, the caller's training mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def unknown_schedule(steps: int, length: int) -> list[int]:
    """Positions still unknown after each of `steps` steps: floor(L cos(pi/2 * s/steps)), ending at 0.

    Each step reveals at least one position, so when steps > L decoding simply ends early instead of
    running steps that reveal nothing.
    """
    counts, unknown = [], length
    for step in range(1, steps + 1):
        scheduled = 0 if step == steps else math.floor(length * math.cos(math.pi / 2 * step / steps))
        unknown = max(0, min(scheduled, unknown - 1))
        counts.append(unknown)
        if unknown == 0:
            break
    return counts


def _filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Top-k, then nucleus (top-p) filtering: dropped ids get -inf. logits: (..., V) -> (..., V)."""
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
        probs = sorted_logits.softmax(dim=-1)
        # Drop an id when the ids more likely than it already cover top_p; the most likely id always stays.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _check_inputs(model: FourM, inputs: dict[str, Tensor], target: str) -> int:
    """Batch size of `inputs` after checking the rows against the model's modalities; errors say the fix."""
    c = model.config
    if target not in c.modalities:
        raise KeyError(f"target modality '{target}' is not one of the model's modalities {list(c.modalities)}")
    if target in inputs:
        raise ValueError(f"'{target}' is both an input and the target; drop it from inputs to generate it")
    if not inputs:
        raise ValueError("inputs is empty; give at least one modality's token rows to condition on")
    sizes = set()
    for name, row in inputs.items():
        if name not in c.modalities:
            raise KeyError(f"input modality '{name}' is not one of the model's modalities {list(c.modalities)}")
        length = c.max_seq_lens[c.modalities.index(name)]
        if row.dim() != 2 or row.shape[1] > length:
            raise ValueError(f"inputs['{name}'] has shape {tuple(row.shape)}; expected (B, L) with L <= {length}")
        sizes.add(row.shape[0])
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def decode_modality(
    model: FourM,
    inputs: dict[str, Tensor],
    target: str,
    *,
    steps: int = 8,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    limits: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generate modality `target` conditioned on `inputs` in `steps` MaskGIT steps.

    inputs[name]: (B, L_name) full token rows of the given modalities (every token is input);
    returns (B, L_target) int64 ids. limits: (L_target,) int64 exclusive upper bound on the id at each
    position (e.g. pose rows: coordinate bins < 8192, every third (visibility) position < 3), so a sample
    is always decodable by the modality's tokenizer; logits at ids >= limit are -inf. Anything
    `torch.as_tensor` reads will do (e.g. the numpy array of `generation.limits.token_limits`).
    temperature 0 picks the most likely id (greedy); a seeded `generator` (on the model's device) makes
    the result reproducible. Confidence is the sampled id's probability under the filtered distribution.
    """
    c = model.config
    B = _check_inputs(model, inputs, target)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    t = c.modalities.index(target)
    L, V = c.max_seq_lens[t], c.vocab_sizes[t]
    device = next(model.parameters()).device
    positions = torch.arange(L, device=device)  # (L,)
    if limits is not None:
        limits = torch.as_tensor(limits, dtype=torch.long, device=device)
        if limits.shape != (L,):
            raise ValueError(f"limits has shape {tuple(limits.shape)}; expected ({L},), one bound per '{target}' slot")
        if int(limits.min()) < 1:
            raise ValueError("limits must be >= 1 at every position (a position with no valid id cannot be sampled)")
        banned = torch.arange(V, device=device)[None, :] >= limits[:, None]  # (L, V)

    # The given inputs, flattened once: (B, N_cond) each.
    cond_tokens = torch.cat([row.to(device).long() for row in inputs.values()], dim=1)
    cond_mod = torch.cat(
        [torch.full((B, row.shape[1]), c.modalities.index(name), device=device) for name, row in inputs.items()],
        dim=1,
    )
    cond_pos = torch.cat([torch.arange(row.shape[1], device=device).expand(B, -1) for row in inputs.values()], dim=1)

    ids = torch.zeros(B, L, dtype=torch.long, device=device)  # (B, L) decoded so far
    known = torch.zeros(B, L, dtype=torch.bool, device=device)  # (B, L)
    n_unknown = L
    with _inference(model):
        for remaining in unknown_schedule(steps, L):
            # Every row has the same number of known positions, so no padding is needed anywhere.
            unknown_pos = positions.expand(B, -1)[~known].view(B, n_unknown)  # (B, U)
            known_pos = positions.expand(B, -1)[known].view(B, L - n_unknown)  # (B, K)
            enc_tokens = torch.cat([cond_tokens, ids.gather(1, known_pos)], dim=1)  # (B, N_cond + K)
            batch = {
                "enc_tokens": enc_tokens,
                "enc_mod": torch.cat([cond_mod, torch.full_like(known_pos, t)], dim=1),
                "enc_pos": torch.cat([cond_pos, known_pos], dim=1),
                "enc_pad": torch.zeros_like(enc_tokens, dtype=torch.bool),
                "dec_tokens": torch.zeros_like(unknown_pos),
                "dec_mod": torch.full_like(unknown_pos, t),
                "dec_pos": unknown_pos,
                "dec_pad": torch.zeros_like(unknown_pos, dtype=torch.bool),
            }
            logits = model.modality_logits(model(batch), t, unknown_pos).float()  # (B, U, V)
            if limits is not None:
                logits = logits.masked_fill(banned[unknown_pos], float("-inf"))
            if temperature == 0:
                sampled = logits.argmax(dim=-1)  # (B, U)
                confidence = logits.softmax(dim=-1).gather(-1, sampled[..., None])[..., 0]  # (B, U)
            else:
                logits = _filter_logits(logits / temperature, top_k, top_p)
                probs = logits.softmax(dim=-1)  # (B, U, V)
                sampled = torch.multinomial(probs.view(-1, V), 1, generator=generator).view(B, n_unknown)
                confidence = probs.gather(-1, sampled[..., None])[..., 0]  # (B, U)

            # Reveal the most confident samples so that `remaining` positions stay unknown.
            reveal = torch.topk(confidence, n_unknown - remaining, dim=-1).indices  # (B, n_reveal)
            reveal_pos = unknown_pos.gather(1, reveal)  # (B, n_reveal)
            ids.scatter_(1, reveal_pos, sampled.gather(1, reveal))
            known.scatter_(1, reveal_pos, True)
            n_unknown = remaining
    return ids  # (B, L)


def rollout(
    model: FourM, inputs: dict[str, Tensor], chain: dict[str, str], n_steps: int, **decode_kwargs: Any
) -> list[dict[str, Tensor]]:
    """Predict `n_steps` into the future by feeding each step's predictions back as the next step's inputs.

    chain maps a predicted modality to the input it replaces, e.g. {"coords_next": "coords",
    "tok_rgb_next": "tok_rgb"}; each step decodes every key of chain (in order) from the current inputs,
    then the predictions replace those inputs. Returns each step's predictions {target: (B, L_target)}.
    decode_kwargs go to `decode_modality` (steps, temperature, top_k, top_p, limits, generator); `limits`
    may also be a dict {target: (L_target,)} when the chain predicts several modalities.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    lengths = dict(zip(model.config.modalities, model.config.max_seq_lens, strict=True))
    for predicted, replaced in chain.items():
        if replaced not in inputs:
            raise KeyError(f"chain feeds '{predicted}' back as '{replaced}', but '{replaced}' is not in inputs")
        if lengths.get(predicted) != lengths.get(replaced):
            raise ValueError(
                f"chain feeds '{predicted}' ({lengths.get(predicted)} tokens) back as '{replaced}' "
                f"({lengths.get(replaced)} tokens); a prediction can only replace an input of the same length "
                "(e.g. data.num_next_frames=1)"
            )
    limits = decode_kwargs.pop("limits", None)
    current = dict(inputs)
    history: list[dict[str, Tensor]] = []
    for _ in range(n_steps):
        predictions = {}
        for predicted in chain:
            bound = limits.get(predicted) if isinstance(limits, dict) else limits
            predictions[predicted] = decode_modality(model, current, predicted, limits=bound, **decode_kwargs)
        history.append(predictions)
        current.update({chain[predicted]: ids for predicted, ids in predictions.items()})
    return history
