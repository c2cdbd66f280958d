"""Typed config of a text-to-motion training (MotionSSM, PhysicsSSM): its own schema beside the 4M one.

The 4M schema is about token grids, vocabularies and Dirichlet budgets; none of that applies to a model that
regresses z-scored motion features from a caption, and folding both into one class would make every check
conditional. The two schemas share the loader (seed format, presets, `global_vars`, overrides, one-line
errors), `resources` and the MLflow views (`flatten`, `to_yaml`, `fingerprint`). A YAML file is a motion
config when it names a `model_kind`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from motionlab.config.schema import (
    PROVENANCE_FIELDS,
    ResourcesConfig,
    _invalid,
    dump_yaml,
    fingerprint_dump,
    flatten_dump,
)

MOTION_DISCRIMINATOR = "model_kind"  # the top-level key that marks a YAML file as a motion config
MOTION_MODEL_KINDS = ("MotionSSM", "PhysicsSSM")
MOTION_DATA_FINGERPRINT_FIELDS = ("data",)

_FROZEN = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class MotionModelSection(BaseModel):
    """The Mamba stack both models share (MotionSSMConfig's architecture fields)."""

    model_config = _FROZEN

    d_model: int = Field(256, gt=0)
    n_layers: int = Field(4, gt=0)
    d_state: int = Field(32, gt=0)
    d_conv: int = Field(4, gt=0)
    expand: int = Field(2, gt=0)
    max_text_len: int = Field(32, gt=0)  # words; longer captions keep their first words
    dropout: float = Field(0.1, ge=0, lt=1)
    backend: str | None = None  # selective-scan backend; None: $MOTIONLAB_SSM_BACKEND or the device's best

    @model_validator(mode="after")
    def _even(self) -> MotionModelSection:
        if self.d_model % 2:
            raise _invalid("d_model", f"{self.d_model} is odd, but the sinusoidal frame encodings need an even "
                           "width", f"use {self.d_model + 1} or {self.d_model - 1}")
        return self


class PhysicsSection(BaseModel):
    """PhysicsSSM's branch; read by PhysicsSSM only (lambda_physics sits at the top level, as a run param)."""

    model_config = _FROZEN

    physics_weights: dict[str, float] | None = None  # per-term weights; None: motionlab.physics.losses defaults
    physics_hidden: int | None = Field(None, gt=0)  # width of the state MLP; None: d_model
    gate_bias_init: float = 2.0  # sigmoid(2) = 0.88: start near the plain SSM
    recon_weight: float = Field(0.0, ge=0)


class MotionDataSection(BaseModel):
    """Which motions a training reads; everything here changes the samples (the `data` fingerprint)."""

    model_config = _FROZEN

    dataset: Literal["kit", "humanml3d"] = "kit"  # the feature layout (KIT-ML 251, HumanML3D 263)
    generated_motions: int = Field(64, gt=0)  # motions generated into the workspace when no --data is given
    min_length: int | None = Field(None, gt=0)  # frames; None: the dataset's own filter (24)
    max_length: int | None = Field(None, gt=0)  # frames, exclusive; None: the dataset's own (200)
    seed: int = 42  # batch order, caption draws, weight init

    @model_validator(mode="after")
    def _lengths(self) -> MotionDataSection:
        if self.min_length is not None and self.max_length is not None and self.min_length >= self.max_length:
            raise _invalid("min_length", f"{self.min_length} is not below max_length {self.max_length}, so no "
                           "motion would be kept", "lower data.min_length or raise data.max_length")
        return self


class MotionConfig(BaseModel):
    """One resolved text-to-motion experiment: what the motion runner and its workers receive."""

    model_config = _FROZEN

    # Provenance, set by the loader.
    name: str
    preset: str | None = None
    source: str
    overrides: list[str] = Field(default_factory=list)
    global_vars: dict[str, Any] = Field(default_factory=dict)

    model_kind: Literal["MotionSSM", "PhysicsSSM"]
    lambda_physics: float = Field(0.0, ge=0)  # loss = mse + lambda_physics x physics total (PhysicsSSM)

    optimizer: Literal["adamw"] = "adamw"
    scheduler: Literal["onecycle"] = "onecycle"
    lr: float = Field(gt=0)  # OneCycleLR's peak
    weight_decay: float = Field(ge=0)
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999])
    batch_size: int = Field(gt=0)  # global: split across the workers
    epochs: int = Field(gt=0)
    pct_start: float = Field(0.3, gt=0, lt=1)  # share of the schedule spent warming up
    div_factor: float = Field(25.0, gt=0)  # starting lr = lr / div_factor
    final_div_factor: float = Field(1e4, gt=0)  # final lr = starting lr / final_div_factor
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping
    eval_freq: float = Field(gt=0)  # epochs between evaluations on the val split
    save_ckpt_freq: float = Field(gt=0)  # epochs between checkpoints

    model: MotionModelSection = Field(default_factory=MotionModelSection)
    physics: PhysicsSection = Field(default_factory=PhysicsSection)
    data: MotionDataSection = Field(default_factory=MotionDataSection)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    @model_validator(mode="after")
    def _consistent(self) -> MotionConfig:
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise _invalid("betas", f"{self.betas} is not two numbers in [0, 1)", "write betas: [0.9, 0.999]")
        if self.model_kind == "MotionSSM" and self.lambda_physics > 0:
            raise _invalid("lambda_physics", f"{self.lambda_physics:g}, but MotionSSM has no physics loss",
                           "train PhysicsSSM (model_kind=PhysicsSSM, or --model PhysicsSSM) or set "
                           "lambda_physics=0")
        return self

    # -- views shared with the 4M schema ----------------------------------------------------------------

    def tracking_tags(self) -> dict[str, str]:
        """The MLflow tag that tells the two models apart in one experiment."""
        return {"model": self.model_kind}

    @property
    def run_label(self) -> str:
        return self.model_kind

    def flatten(self) -> dict[str, str]:
        """Dotted keys -> strings (MLflow params); `lambda_physics` stays a top-level param of both models."""
        return flatten_dump(self.model_dump(mode="json"))

    def fingerprint(self, section: str = "data") -> str:
        """"data": what decides the samples read; "all": every field that affects a run (not provenance)."""
        return fingerprint_dump(self.model_dump(mode="json"), MOTION_DATA_FINGERPRINT_FIELDS, section)

    def to_yaml(self) -> str:
        """The resolved config as YAML that the loader reads back to an equal config."""
        return dump_yaml(self.model_dump(mode="json", exclude=set(PROVENANCE_FIELDS)))
