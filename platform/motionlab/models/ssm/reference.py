"""The selective scan written as its definition: one step at a time, in float64.

Every backend is tested against this function. It is deliberately naive (a Python loop over time, autograd
through every step), so that nothing in it can share a bug with the fast paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """mamba-ssm's `selective_scan_fn` semantics, computed step by step in float64, returned in u's dtype.

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L); D, delta_bias: (D,). Returns (B, D, L).
    """
    dtype = u.dtype
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # (B, D, N)
    ys = []
    for t in range(u.shape[2]):
        dt = delta[:, :, t, None]  # (B, D, 1)
        h = torch.exp(dt * A) * h + dt * u[:, :, t, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    if D is not None:
        y = y + u * D.double()[:, None]
    if z is not None:
        y = y * F.silu(z.double())
    return y.to(dtype)
