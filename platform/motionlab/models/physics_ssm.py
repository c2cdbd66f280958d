"""PhysicsSSM: MotionSSM with a physics branch that reads a draft of the motion and corrects it through a gate.

    text, lengths --backbone--> ssm_out (B, T, d) --decode--> draft (B, T, D)
    draft --de-normalise, recover_joints, physics_state--> state (B, T, 64) --MLP--> constraints (B, T, d)
    gate = sigmoid(W [ssm_out; constraints])        out = gate * ssm_out + (1 - gate) * constraints
    out --decode--> motion (B, T, D)

Why the physics state comes from the model's own draft: at inference there is no ground-truth motion to take
it from, and deriving it from the ground truth during training would both leak the target into the prediction
and train the gate on inputs it never sees at test time. So training and generation run the same two passes:
predict a draft with the shared decoder, derive its physics state (pelvis height and rates, root and
centre-of-mass motion, soft foot contacts, ...), and blend. Gradients flow through the whole chain, the
draft's joints included, so the branch learns what to trust in the draft.

The motion projector is a small autoencoder between features and the d_model latent: its decoder produces
both the draft and the final motion (so a gate near 1 gives back the plain SSM's answer), and its encoder maps
ground-truth motion into that latent for an optional reconstruction term (`recon_weight`) that keeps the
latent space motion-shaped.

The physics loss (foot sliding, ground penetration, jerk: `motionlab.physics.losses`) is computed on the
final motion's joints in metres and seconds, per sample on its real frames only, and averaged over samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from motionlab.datasets.motion_features import recover_joints
from motionlab.models.motion import (
    MotionModelBase,
    MotionSSMBackbone,
    MotionSSMConfig,
    check_batch,
    init_weights,
    masked_mse,
    mlp,
)
from motionlab.physics.losses import DEFAULT_WEIGHTS, physics_loss, to_metres
from motionlab.physics.state import PHYSICS_STATE_DIM, physics_state


@dataclass(frozen=True)
class PhysicsSSMConfig(MotionSSMConfig):
    """MotionSSMConfig plus the physics branch and the physics loss."""

    lambda_physics: float = 0.1  # loss = mse + lambda_physics * physics 'total'
    physics_weights: dict[str, float] | None = None  # per-term weights; None: motionlab.physics.losses defaults
    physics_hidden: int | None = None  # width of the state MLP; None: d_model
    gate_bias_init: float = 2.0  # sigmoid(2) = 0.88: start close to the plain SSM, learn how much physics to mix
    recon_weight: float = 0.0  # weight of the projector's reconstruction of ground-truth motion

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lambda_physics < 0 or self.recon_weight < 0:
            raise ValueError(f"PhysicsSSMConfig: lambda_physics ({self.lambda_physics}) and recon_weight "
                             f"({self.recon_weight}) must be >= 0")
        if self.physics_weights is not None:
            object.__setattr__(self, "physics_weights", {str(k): float(v) for k, v in self.physics_weights.items()})
            unknown = sorted(set(self.physics_weights) - set(DEFAULT_WEIGHTS))
            if unknown:
                raise ValueError(f"PhysicsSSMConfig.physics_weights: unknown terms {unknown}; "
                                 f"use {sorted(DEFAULT_WEIGHTS)}")
        if self.physics_hidden is not None and self.physics_hidden < 1:
            raise ValueError(f"PhysicsSSMConfig.physics_hidden must be positive, got {self.physics_hidden}")


@dataclass
class PhysicsOutput:
    """Every stage of a PhysicsSSM pass, so tests and analyses can look inside the blend."""

    features: Tensor  # (B, T, D) final motion, z-scored
    draft: Tensor  # (B, T, D) first-pass motion the physics state is derived from
    state: Tensor  # (B, T, 64) physics state of the draft
    ssm_out: Tensor  # (B, T, d)
    constraints: Tensor  # (B, T, d)
    gate: Tensor  # (B, T, d) in (0, 1)
    blended: Tensor  # (B, T, d)


class MotionProjector(nn.Module):
    """Features <-> d_model latent: encoder MLP D -> d, decoder MLP d -> D."""

    def __init__(self, feature_dim: int, d_model: int) -> None:
        super().__init__()
        self.encoder = mlp(feature_dim, d_model, d_model)
        self.decoder = mlp(d_model, d_model, feature_dim)
        self.apply(init_weights)

    def encode(self, features: Tensor) -> Tensor:
        return self.encoder(features)  # (B, T, D) -> (B, T, d)

    def decode(self, latent: Tensor) -> Tensor:
        return self.decoder(latent)  # (B, T, d) -> (B, T, D)


class PhysicsSSM(MotionModelBase):
    """Text-to-motion SSM whose output is blended with constraints derived from its own draft's physics."""

    model_kind: ClassVar[str] = "PhysicsSSM"
    config_class: ClassVar[type[MotionSSMConfig]] = PhysicsSSMConfig
    cfg: PhysicsSSMConfig

    def __init__(self, cfg: PhysicsSSMConfig, mean: Tensor | np.ndarray | None = None,
                 std: Tensor | np.ndarray | None = None) -> None:
        super().__init__(cfg, mean, std)
        d = cfg.d_model
        self.backbone = MotionSSMBackbone(cfg)
        self.projector = MotionProjector(cfg.feature_dim, d)
        # the state mixes units (m, m/s, rad/s, flags); a LayerNorm puts them on one scale before the MLP
        self.physics_mlp = nn.Sequential(nn.LayerNorm(PHYSICS_STATE_DIM),
                                         mlp(PHYSICS_STATE_DIM, cfg.physics_hidden or d, d))
        self.gate_proj = nn.Linear(2 * d, d)
        self.physics_mlp.apply(init_weights)
        self.gate_proj.apply(init_weights)
        nn.init.constant_(self.gate_proj.bias, cfg.gate_bias_init)

    def joints(self, features: Tensor) -> Tensor:
        """(B, T, D) z-scored features -> (B, T, J, 3) joint positions in dataset units."""
        return recover_joints(self.denormalize(features), self.spec.num_joints)

    def physics_state_of(self, features: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, D) z-scored motion, (B,) lengths -> (B, T, 64); frames past a length get zeros.

        The state takes central differences, so it is computed on each sample's real frames only (grouped by
        length): frames past a length never leak into the last real frame's velocities.
        """
        joints = self.joints(features)  # (B, T, J, 3)
        b, t = features.shape[:2]
        state = features.new_zeros(b, t, PHYSICS_STATE_DIM)
        for n in torch.unique(lengths).tolist():
            rows = (lengths == n).nonzero(as_tuple=True)[0]
            state[rows, :n] = physics_state(joints[rows, :n], self.spec)
        return state  # (B, T, 64)

    def forward(self, text_tokens: Tensor, lengths: Tensor, num_frames: int | None = None) -> PhysicsOutput:
        # text (B, L), lengths (B,) -> PhysicsOutput with (B, T, D) features
        ssm_out = self.backbone(text_tokens, lengths, num_frames)  # (B, T, d)
        draft = self.projector.decode(ssm_out)  # (B, T, D)
        state = self.physics_state_of(draft, lengths)  # (B, T, 64)
        constraints = self.physics_mlp(state)  # (B, T, d)
        gate = torch.sigmoid(self.gate_proj(torch.cat([ssm_out, constraints], -1)))  # (B, T, d)
        blended = gate * ssm_out + (1 - gate) * constraints
        return PhysicsOutput(self.projector.decode(blended), draft, state, ssm_out, constraints, gate, blended)

    def predict(self, text_tokens: Tensor, lengths: Tensor, num_frames: int | None = None) -> Tensor:
        return self.forward(text_tokens, lengths, num_frames).features  # (B, T, D)

    def physics_terms(self, features: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """Physics loss terms of (B, T, D) z-scored motions, each sample on its real frames, averaged over samples."""
        joints_m = to_metres(self.joints(features), self.spec)  # (B, T, J, 3) metres
        per_sample = [physics_loss(joints_m[i, :n], self.spec.fps, self.spec, self.cfg.physics_weights)
                      for i, n in enumerate(lengths.tolist())]
        return {k: torch.stack([s[k] for s in per_sample]).mean() for k in per_sample[0]}

    def compute_loss(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{'loss', 'mse', 'physics/<term>', 'physics/total'[, 'recon']}: loss = mse + lambda x physics total.

        With lambda_physics = 0 the loss is exactly the MSE; the physics terms are still reported (without
        gradients) so runs with and without the physics loss can be compared on them.
        """
        text, feats, lengths, mask = check_batch(batch, self.cfg.feature_dim)
        pred = self.predict(text, lengths, feats.shape[1])  # (B, T, D)
        mse = masked_mse(pred, feats, mask)
        out: dict[str, Tensor] = {"mse": mse.detach()}
        loss = mse
        lam = self.cfg.lambda_physics
        with torch.set_grad_enabled(torch.is_grad_enabled() and lam > 0):
            terms = self.physics_terms(pred, lengths)
        if lam > 0:
            loss = loss + lam * terms["total"]
        out.update({f"physics/{k}": v.detach() for k, v in terms.items()})
        if self.cfg.recon_weight > 0:
            recon = masked_mse(self.projector.decode(self.projector.encode(feats)), feats, mask)
            loss = loss + self.cfg.recon_weight * recon
            out["recon"] = recon.detach()
        out["loss"] = loss
        return out
