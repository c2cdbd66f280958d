"""The Mamba-1 mixer, with mamba-ssm's parameter names, shapes and initialisation.

`Mamba` is a drop-in twin of mamba-ssm's `Mamba` (and of transformers' `MambaMixer`): the same parameters
(`in_proj`, `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`, `out_proj`), so a state dict trained on a GPU with
mamba-ssm loads here on a laptop and back. Only the selective scan changes between machines; the depthwise
causal convolution, the projections and the gate are plain PyTorch ops, cheap next to the scan.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionlab.models.ssm.backends import selective_scan


class Mamba(nn.Module):
    """Selective state-space mixer: (B, L, d_model) -> (B, L, d_model); arguments as in mamba-ssm's `Mamba`.

    `backend` names the scan implementation (see `motionlab.models.ssm.backends`); None or 'auto' defers to
    $MOTIONLAB_SSM_BACKEND and then to the tensors' device.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        # dt_proj starts so that softplus(bias) is log-uniform in [dt_min, dt_max]: the initial time scales
        # span short and long memories.
        dt_init_std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise ValueError(f"Mamba: dt_init must be 'constant' or 'random', got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))  # inverse of softplus
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_dt)
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]

        # S4D-real initialisation: A = -(1, 2, ..., N) for every channel, stored as log(-A) to stay negative.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A).to(dtype or torch.float32))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device, dtype=dtype or torch.float32))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def forward(self, hidden_states: Tensor) -> Tensor:
        # hidden_states: (B, L, d_model) -> (B, L, d_model)
        length = hidden_states.shape[1]
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (B, 2 * d_inner, L)
        x, z = xz.chunk(2, dim=1)  # (B, d_inner, L) each
        x = F.silu(self.conv1d(x)[..., :length])  # causal: drop the right padding
        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, dt_rank + 2 * d_state)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (B, d_inner, L); its bias is added in the scan
        A = -torch.exp(self.A_log.float())  # (d_inner, d_state)
        y = selective_scan(x, delta, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=z,
                           delta_bias=self.dt_proj.bias.float(), delta_softplus=True, backend=self.backend)
        return self.out_proj(y.transpose(1, 2))  # (B, L, d_model)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, expand={self.expand}, "
                f"dt_rank={self.dt_rank}, backend={self.backend or 'auto'}")
