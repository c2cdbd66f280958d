"""The selective scan behind one function, with the implementation chosen per call from the tensors' device.

Backends (all with mamba-ssm's `selective_scan_fn` signature and semantics):

- `mamba_ssm`: mamba-ssm's CUDA kernels, for CUDA tensors; imported only when first needed, because mamba-ssm
  cannot even be imported on a machine without CUDA (it is the optional `[gpu]` extra);
- `cpp`: the project's fused CPU scan (`csrc/selective_scan.cpp`), compiled on first use; O(B*D*N) state in the
  forward, chunked recomputation in the backward;
- `torch`: a pure-PyTorch scan on any device, stepping through time in chunks under activation checkpointing so
  its memory stays bounded too; the fallback when the C++ build is impossible or mamba-ssm is missing;
- `reference`: the float64 step-by-step definition (`reference.py`); slow, for debugging only.

`auto` (the default) picks mamba_ssm on CUDA when installed, else cpp on CPU when it builds, else torch. A
backend named in code wins; otherwise `$MOTIONLAB_SSM_BACKEND` does, so a run can be switched without edits.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from motionlab.models.ssm.cpu_extension import extension_error, load_extension
from motionlab.models.ssm.reference import selective_scan_reference

log = logging.getLogger(__name__)

ENV_VAR = "MOTIONLAB_SSM_BACKEND"
BACKENDS = ("auto", "mamba_ssm", "cpp", "torch", "reference")
TORCH_CHUNK = 16  # steps per checkpointed segment of the pure-PyTorch scan: memory ~ chunk x B x D x N

_mamba_ssm: dict[str, Any] = {}


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: the argument unless it is None or 'auto', else $MOTIONLAB_SSM_BACKEND, else 'auto'."""
    if backend not in (None, "auto"):
        name, source = str(backend), "the backend argument"
    else:
        name, source = os.environ.get(ENV_VAR, "") or "auto", f"${ENV_VAR}"
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {name!r} from {source}; choose one of {', '.join(BACKENDS)}")
    return name


def mamba_ssm_scan() -> Any | None:
    """mamba-ssm's `selective_scan_fn`, or None when mamba-ssm (the `[gpu]` extra) cannot be imported here."""
    if "fn" not in _mamba_ssm:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception as exc:  # ImportError, or an import-time CUDA error on a machine without a GPU
            _mamba_ssm["fn"], _mamba_ssm["error"] = None, f"{type(exc).__name__}: {exc}"
        else:
            _mamba_ssm["fn"] = selective_scan_fn
    return _mamba_ssm["fn"]


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """The concrete backend that will run for tensors on `device` (never 'auto')."""
    name = requested_backend(backend)
    if name == "auto":
        if device.type == "cuda":
            if mamba_ssm_scan() is not None:
                return "mamba_ssm"
            if not _mamba_ssm.get("warned"):
                _mamba_ssm["warned"] = True
                log.warning("motionlab: mamba-ssm is not importable (%s); CUDA tensors use the slower pure-PyTorch "
                            "scan. Install the GPU extra: pip install 'motionlab[gpu]'.", _mamba_ssm.get("error"))
            return "torch"
        if device.type == "cpu" and load_extension() is not None:
            return "cpp"
        return "torch"
    if name == "mamba_ssm":
        if device.type != "cuda":
            raise ValueError(f"selective-scan backend 'mamba_ssm' needs CUDA tensors, got {device}; use 'cpp' or "
                             f"'torch' on the CPU (or unset ${ENV_VAR})")
        if mamba_ssm_scan() is None:
            raise RuntimeError(f"selective-scan backend 'mamba_ssm' requested but mamba-ssm cannot be imported "
                               f"({_mamba_ssm.get('error')}); pip install 'motionlab[gpu]'")
    if name == "cpp":
        if device.type != "cpu":
            raise ValueError(f"selective-scan backend 'cpp' runs on CPU tensors, got {device}; use 'mamba_ssm' or "
                             f"'torch' (or unset ${ENV_VAR})")
        if load_extension() is None:
            raise RuntimeError(f"selective-scan backend 'cpp' requested but the extension cannot be built "
                               f"({extension_error()}); install g++ and ninja, or choose 'torch'")
    return name


def _check_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
                  delta_bias: Tensor | None) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, channels, length), got shape {tuple(u.shape)}")
    b, d, length = u.shape
    n = A.shape[-1]
    expected = {"delta": (delta, (b, d, length)), "A": (A, (d, n)), "B": (B, (b, n, length)),
                "C": (C, (b, n, length)), "D": (D, (d,)), "z": (z, (b, d, length)), "delta_bias": (delta_bias, (d,))}
    for name, (t, shape) in expected.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"selective_scan: {name} has shape {tuple(t.shape)}, expected {shape} from u "
                             f"{tuple(u.shape)} and A {tuple(A.shape)}")


class _CppScan(torch.autograd.Function):
    """Autograd wrapper of the compiled scan: the forward keeps only every 64th state, the backward recomputes."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool, save_states: bool) -> Tensor:
        # save_states comes from the caller: inside forward grad mode is always off, and needs_input_grad
        # stays True under torch.no_grad()
        out, ckpt = load_extension().forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        ctx.delta_softplus = delta_softplus
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gout: Tensor) -> tuple[Tensor | None, ...]:
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        grads = load_extension().backward(u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, ckpt, gout)
        gu, gdelta, gA, gB, gC, gD, gz, gbias = grads
        return (gu, gdelta, gA, gB, gC, gD if D is not None else None, gz if z is not None else None,
                gbias if delta_bias is not None else None, None, None)


def _torch_chunk(h: Tensor, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    # h: (B, D, N) state before the chunk; u, dt: (B, D, K); A: (D, N); B, C: (B, N, K)
    # -> (state after the chunk (B, D, N), outputs (B, D, K))
    # One (B, D, N) tensor per step, never a (B, D, K, N) one, and unbind rather than indexing: the backward of
    # an index allocates a zero tensor the size of its source at every step.
    ys = []
    for u_k, dt_k, B_k, C_k in zip(u.unbind(2), dt.unbind(2), B.unbind(2), C.unbind(2), strict=True):
        dA = torch.exp(dt_k.unsqueeze(-1) * A)  # (B, D, N)
        h = torch.addcmul((dt_k * u_k).unsqueeze(-1) * B_k.unsqueeze(1), dA, h)
        ys.append(torch.bmm(h, C_k.unsqueeze(-1)))  # (B, D, 1)
    return h, torch.cat(ys, dim=-1)


def _scan_torch(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
                delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    # all (B, D, L) except A (D, N), B and C (B, N, L), D and delta_bias (D,); returns (B, D, L)
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for s in range(0, u.shape[2], TORCH_CHUNK):
        part = slice(s, s + TORCH_CHUNK)
        args = (h, u[..., part], delta[..., part], A, B[..., part], C[..., part])
        # checkpointing keeps one (B, D, N) state per chunk instead of every step's intermediates
        h, y = checkpoint(_torch_chunk, *args, use_reentrant=False) if grad else _torch_chunk(*args)
        ys.append(y)
    y = torch.cat(ys, dim=-1)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    backend: str | None = None,
) -> Tensor:
    """Mamba-1 selective scan with mamba-ssm's `selective_scan_fn` signature, on the backend chosen for u's device.

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L); D, delta_bias: (D,). Returns (B, D, L) in u's dtype.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u.device)
    if name == "mamba_ssm":
        fn = mamba_ssm_scan()
        return fn(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    if name == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    # The owned scans compute in float32 (float64 when any input is), like mamba-ssm's float32 state.
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    cast = [None if t is None else t.to(dtype) for t in (u, delta, A, B, C, D, z, delta_bias)]
    if name == "cpp":
        save_states = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in cast)
        out = _CppScan.apply(*cast, delta_softplus, save_states)
    else:
        out = _scan_torch(*cast, delta_softplus)
    return out.to(u.dtype)
