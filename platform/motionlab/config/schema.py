"""Typed experiment configuration: every module downstream receives these frozen objects, never raw YAML.

The checks here are the ones that would otherwise surface hours into a run as a shape error or a
silently wrong vocabulary: a token grid that disagrees with `max_seq_lens`, a vocabulary smaller than
its tokenizer's codebook, a per-modality list one entry short. Each check names the key and the fix in
one line. Modality-dependent checks ask the registry for the modality's kind, never its name, so a new
modality needs no edit here.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from motionlab import modalities
from motionlab.modalities import Kind

# Cosmos DI tokenizers quantise with FSQ levels (8, 8, 8, 5, 5, 5): 64000 codes whatever the patch size.
COSMOS_CODEBOOK_SIZE = 64_000
COSMOS_DOWNSAMPLE = 16  # DI16x16: one token per 16 x 16 pixels
DTYPES = ("fp32", "bf16", "fp16")
SPLIT_NAMES = ("train", "eval", "test")
# Set by the loader, not by the YAML: they say where a config came from, not what it does.
PROVENANCE_FIELDS = frozenset({"name", "preset", "source", "overrides"})
# Everything that decides the contents of the tokenised dataset (the `data` fingerprint).
DATA_FINGERPRINT_FIELDS = ("data", "modalities", "vocab_sizes", "max_seq_lens")
PER_MODALITY_FIELDS = ("vocab_sizes", "max_seq_lens", "input_alphas", "target_alphas")
ERROR_TYPE = "motionlab_config"
_SPLIT_TOLERANCE = 1e-6

_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class ConfigError(ValueError):
    """A config problem as `<file>: <key>: <problem>; fix: <how>`, one line so logs stay greppable.

    Build it from the four parts, or from one message already in that shape (stages past the loader
    that find a config value unusable, e.g. a tokenizer path that does not exist); the parts are then
    recovered from the message where it follows the shape.
    """

    def __init__(
        self, file: str, key: str | None = None, problem: str | None = None, fix: str | None = None
    ) -> None:
        if key is None and problem is None and fix is None:
            message = _one_line(file)
            head, _, fix = message.partition("; fix: ")
            parts = head.split(": ", 2)
            file, key, problem = parts if len(parts) == 3 else ("", "", head)
        else:
            message = ""
        self.file = _one_line(file)
        self.key = _one_line(key or "")
        self.problem = _one_line(problem or "")
        self.fix = _one_line(fix or "")
        super().__init__(message or f"{self.file}: {self.key}: {self.problem}; fix: {self.fix}")


def _invalid(key: str, problem: str, fix: str) -> PydanticCustomError:
    """A validation failure that keeps key, problem and fix apart, so the loader can prefix the file."""
    return PydanticCustomError(
        ERROR_TYPE, "{key}: {problem}; fix: {fix}", {"key": key, "problem": problem, "fix": fix}
    )


class ModelConfig(BaseModel):
    """Shape of the 4M encoder-decoder."""

    model_config = _FROZEN

    dim: int = Field(gt=0)
    enc_depth: int = Field(gt=0)
    dec_depth: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    # Embeddings (motionlab.models.embeddings): positions laid out by kind (sincos) or one learned row per
    # modality position (learned); token tables one per tokenizer, per modality or one for all; pose
    # coordinate ids with a smooth term of their bin centre (value) or plain rows (table).
    posemb: Literal["sincos", "learned"] = "sincos"
    share_embeddings: Literal["tokenizer", "modality", "all"] = "tokenizer"
    pose_embedding: Literal["value", "table"] = "value"
    aligned_bias: float = 2.0  # initial cross-attention bias towards inputs at the query's place; 0: none
    loss_weighting: Literal["token", "modality"] = "token"  # mean over target tokens, or over modalities

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> ModelConfig:
        # Attention splits `dim` into dim / head_dim heads; a remainder would fail at model build time.
        if self.dim % self.head_dim:
            lower = self.dim // self.head_dim * self.head_dim
            upper = lower + self.head_dim
            raise _invalid(
                "dim",
                f"{self.dim} is not a multiple of head_dim {self.head_dim}",
                f"set model.dim to a multiple of {self.head_dim} (e.g. {lower or upper} or {upper}) "
                "or change model.head_dim",
            )
        if self.posemb == "sincos" and self.dim % 4:
            raise _invalid(
                "dim",
                f"{self.dim} is not a multiple of 4, which 2-D sin-cos positions (row and column, sin and cos) need",
                "set model.dim to a multiple of 4 or model.posemb=learned",
            )
        return self

    @property
    def num_heads(self) -> int:
        return self.dim // self.head_dim


class DataConfig(BaseModel):
    """How raw video and labels become tokens; every field here changes the tokenised dataset."""

    model_config = _FROZEN

    image_size: int = Field(256, gt=0)  # px, square centre crop
    image_downsample: int = Field(16, gt=0)  # px per token side
    image_tokenizer: Literal["fsq", "cosmos"] = "fsq"
    image_tokenizer_path: str | None = None  # None: the FSQ trained in the workspace
    fsq_levels: list[int] = Field(default_factory=lambda: [8, 8, 8, 5, 5, 5])
    captioner: Literal["template", "blip"] = "template"
    captioner_path: str | None = None
    text_tokenizer_path: str | None = None  # None: train a BPE on the captions
    text_vocab_size: int = Field(8192, gt=0)
    pose_bins: int = Field(8192, ge=2)
    ssim_threshold: float = Field(0.89, gt=0, le=1)
    num_next_frames: int = Field(1, ge=1)
    split_ratios: list[float] = Field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_by: Literal["ratio", "official"] = "ratio"
    seed: int = 42

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.image_size % self.image_downsample:
            side = self.image_size // self.image_downsample
            raise _invalid(
                "image_size",
                f"{self.image_size} px is not divisible by image_downsample {self.image_downsample} "
                "px per token, so frames do not tile into a token grid",
                f"use a multiple of {self.image_downsample} (e.g. {max(side, 1) * self.image_downsample}) "
                "or change data.image_downsample",
            )
        if self.image_tokenizer == "cosmos" and self.image_downsample != COSMOS_DOWNSAMPLE:
            raise _invalid(
                "image_downsample",
                f"{self.image_downsample} px per token, but the cosmos tokenizer (DI16x16) has "
                f"{COSMOS_DOWNSAMPLE} px per token",
                f"set data.image_downsample={COSMOS_DOWNSAMPLE} with data.image_tokenizer=cosmos",
            )
        if not self.fsq_levels:
            raise _invalid(
                "fsq_levels", "is empty", "give one level per FSQ dimension, e.g. [8, 8, 8, 5, 5, 5]"
            )
        for i, level in enumerate(self.fsq_levels):
            if level < 2:
                raise _invalid(
                    f"fsq_levels[{i}]",
                    f"{level} levels quantise to a single value",
                    "use at least 2 levels per dimension, e.g. [8, 8, 8, 5, 5, 5]",
                )
        if len(self.split_ratios) != len(SPLIT_NAMES):
            raise _invalid(
                "split_ratios",
                f"has {_entries(len(self.split_ratios))}",
                f"give three ratios ({', '.join(SPLIT_NAMES)}), e.g. [0.7, 0.15, 0.15]",
            )
        for name, ratio in zip(SPLIT_NAMES, self.split_ratios, strict=True):
            if ratio < 0:
                raise _invalid(
                    "split_ratios",
                    f"the {name} ratio is negative ({ratio})",
                    "use ratios >= 0 that sum to 1, e.g. [0.7, 0.15, 0.15]",
                )
        total = sum(self.split_ratios)
        if abs(total - 1.0) > _SPLIT_TOLERANCE:
            raise _invalid(
                "split_ratios",
                f"{self.split_ratios} sums to {total:g}, not 1",
                "make the train, eval and test ratios sum to 1, e.g. [0.7, 0.15, 0.15]",
            )
        return self

    @property
    def image_codes(self) -> int:
        """Distinct codes the image tokenizer emits; an image vocabulary must hold at least this many."""
        if self.image_tokenizer == "cosmos":
            return COSMOS_CODEBOOK_SIZE
        return math.prod(self.fsq_levels)

    def tokenizer_codes(self, kind: Kind) -> int | None:
        """Smallest vocabulary a modality of this kind needs; None where the kind sets no floor."""
        codes = {Kind.IMAGE: self.image_codes, Kind.POSE: self.pose_bins, Kind.TEXT: self.text_vocab_size}
        return codes.get(kind)


class ResourcesConfig(BaseModel):
    """What Ray reserves: workers for Ray Train, actors for the stateful models in Ray Data."""

    model_config = _FROZEN

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    gpus_per_worker: float = Field(1.0, ge=0)  # reserved only when use_gpu is true
    cpus_per_worker: float = Field(1.0, gt=0)
    pipeline_actors: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _gpu_consistent(self) -> ResourcesConfig:
        if self.use_gpu and self.gpus_per_worker == 0:
            raise _invalid(
                "gpus_per_worker",
                "is 0 while use_gpu is true, so no worker would get a GPU",
                "set resources.gpus_per_worker above 0 (fractions share a GPU) or resources.use_gpu=false",
            )
        return self


class ExperimentConfig(BaseModel):
    """One resolved, validated experiment: what a train loop, a pipeline or a sweep trial receives."""

    model_config = _FROZEN

    # Provenance, set by the loader.
    name: str  # file stem, e.g. "m4"
    preset: str | None = None
    source: str  # path of the YAML it came from
    overrides: list[str] = Field(default_factory=list)  # CLI `key=value` overrides, in the order applied
    global_vars: dict[str, Any] = Field(default_factory=dict)  # resolved, kept for provenance

    variant: Literal["M1", "M2", "M3", "M4"]
    modalities: list[str]
    vocab_sizes: list[int]
    max_seq_lens: list[int]
    input_alphas: list[float]
    target_alphas: list[float]
    input_tokens_range: list[int]
    target_tokens_range: list[int]
    # Share of samples masked as the forecasting task: every current token in, next-frame targets out
    # (motionlab.masking); 0 keeps pure 4M masking.
    forecast_share: float = Field(0.0, ge=0, le=1)
    # Seed of the weights, batch order and training masks; None = data.seed. Changing it keeps the dataset.
    seed: int | None = None

    batch_size: int = Field(gt=0)
    total_tokens: float = Field(gt=0)  # millions
    warmup_tokens: float = Field(ge=0)  # millions
    num_tokens_per_sample: int = Field(gt=0)
    lr: float = Field(gt=0)
    min_lr: float = Field(ge=0)
    weight_decay: float = Field(ge=0)
    clip_grad: float = Field(ge=0)  # 0 disables clipping
    dtype: Literal["fp32", "bf16", "fp16"]
    eval_freq: float = Field(gt=0)  # millions of tokens
    save_ckpt_freq: float = Field(gt=0)  # millions of tokens

    model: ModelConfig
    data: DataConfig
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        self._check_modalities()
        self._check_per_modality_lists()
        self._check_ranges()
        self._check_lengths()
        self._check_vocabularies()
        self._check_shared_tables()
        self._check_schedule()
        return self

    # -- checks, in the order a reader would fix them ------------------------------------------------

    def _label(self, field: str, i: int) -> str:
        return f"{field}[{i}] ({self.modalities[i]})"

    def _check_modalities(self) -> None:
        if not self.modalities:
            raise _invalid("modalities", "is empty", "list at least one modality, e.g. [tok_rgb, coords]")
        seen: set[str] = set()
        for i, name in enumerate(self.modalities):
            try:
                modalities.get(name)
            except KeyError:
                known = ", ".join(modalities.REGISTRY)
                raise _invalid(
                    f"modalities[{i}]",
                    f"unknown modality '{name}'",
                    f"use one of {known} (or add an entry to motionlab.modalities.REGISTRY)",
                ) from None
            if name in seen:
                raise _invalid(f"modalities[{i}]", f"'{name}' is listed twice", "list each modality once")
            seen.add(name)

    def _check_per_modality_lists(self) -> None:
        n = len(self.modalities)
        for field in PER_MODALITY_FIELDS:
            values = getattr(self, field)
            if len(values) != n:
                raise _invalid(
                    field,
                    f"has {_entries(len(values))} but modalities has {n} ({', '.join(self.modalities)})",
                    f"give exactly {n} values, one per modality in the order of modalities",
                )
        for field in ("vocab_sizes", "max_seq_lens"):
            for i, value in enumerate(getattr(self, field)):
                if value < 1:
                    raise _invalid(self._label(field, i), f"{value} is not positive", "use a value >= 1")
        for field in ("input_alphas", "target_alphas"):
            alphas = getattr(self, field)
            for i, alpha in enumerate(alphas):
                if alpha < 0:
                    raise _invalid(
                        self._label(field, i),
                        f"{alpha:g} is below 0 (Dirichlet weights cannot be negative)",
                        "use 0 to leave the modality out, or a positive weight",
                    )
            if not any(alpha > 0 for alpha in alphas):
                raise _invalid(
                    field,
                    "every alpha is 0, so no modality can receive tokens",
                    "give at least one modality a positive alpha",
                )

    def _check_ranges(self) -> None:
        for field in ("input_tokens_range", "target_tokens_range"):
            bounds = getattr(self, field)
            if len(bounds) != 2:
                raise _invalid(field, f"has {_entries(len(bounds))}", "write it as [min, max], e.g. [1, 128]")
            low, high = bounds
            if low < 0:
                raise _invalid(field, f"min {low} is below 0", f"use a min >= 0, e.g. [0, {max(high, 0)}]")
            if low > high:
                raise _invalid(
                    field, f"min {low} > max {high}", f"swap them or lower the min, e.g. [{high}, {low}]"
                )
        available = sum(self.max_seq_lens)
        if self.forecast_share > 0:
            temporal = [modalities.get(n).temporal for n in self.modalities]
            current = sum(n for n, t in zip(self.max_seq_lens, temporal, strict=True) if t == "current")
            if "next" not in temporal:
                raise _invalid(
                    "forecast_share",
                    f"{self.forecast_share:g} asks for forecasting samples, but no modality is a next-frame one",
                    "set forecast_share=0, or add tok_rgb_next / coords_next to modalities",
                )
            if current > self.input_tokens_range[1]:
                raise _invalid(
                    "forecast_share",
                    f"forecasting samples put every current-frame token in ({current}), but input_tokens_range's "
                    f"max is {self.input_tokens_range[1]}",
                    f"raise input_tokens_range's max to at least {current}, or set forecast_share=0",
                )
        needed = self.input_tokens_range[0] + self.target_tokens_range[0]
        if needed > available:
            raise _invalid(
                "input_tokens_range",
                f"the minimum input ({self.input_tokens_range[0]}) plus minimum target "
                f"({self.target_tokens_range[0]}) is {needed} tokens, but a sample holds only {available}",
                "lower the minima of input_tokens_range and target_tokens_range so their sum fits the sample",
            )

    def _check_lengths(self) -> None:
        d = self.data
        for i, name in enumerate(self.modalities):
            modality = modalities.get(name)
            expected = modalities.expected_length(
                modality, d.image_size, d.image_downsample, d.num_next_frames
            )
            if expected is None or expected == self.max_seq_lens[i]:
                continue
            frames = modalities.frames_spanned(modality, d.num_next_frames)
            if modality.kind is Kind.IMAGE:
                side = d.image_size // d.image_downsample
                grid = f"{side}x{side}"
                if frames == 1:
                    why = f"a {d.image_size} px frame at {d.image_downsample} px per token gives {grid}"
                else:
                    why = (
                        f"{frames} frames of {d.image_size} px at {d.image_downsample} px per token give "
                        f"{frames} x {grid}"
                    )
                knobs = ["data.image_size", "data.image_downsample"]
            else:
                per_frame = modalities.POSE_TOKENS_PER_FRAME
                why = (
                    f"a pose is {modalities.POSE_JOINTS} joints x {modalities.POSE_TOKENS_PER_JOINT} "
                    "(x bin, y bin, visibility)"
                    if frames == 1
                    else f"{frames} frames of {per_frame} pose tokens give {frames} x {per_frame}"
                )
                knobs = []
            if modality.temporal == "next":
                knobs.append("data.num_next_frames")
            also = f" (or change {' / '.join(knobs)})" if knobs else ""
            raise _invalid(
                self._label("max_seq_lens", i),
                f"configured {self.max_seq_lens[i]} but {why} = {expected} tokens",
                f"set max_seq_lens[{i}] to {expected}{also}",
            )

    def _check_vocabularies(self) -> None:
        d = self.data
        fsq = f" (fsq_levels {d.fsq_levels})" if d.image_tokenizer == "fsq" else ""
        holds = {
            Kind.IMAGE: (f"codes of the {d.image_tokenizer} image tokenizer{fsq}", "a smaller codebook"),
            Kind.POSE: ("bins of data.pose_bins", "fewer data.pose_bins"),
            Kind.TEXT: ("BPE tokens of data.text_vocab_size", "a smaller data.text_vocab_size"),
        }
        for i, name in enumerate(self.modalities):
            kind = modalities.get(name).kind
            needed = d.tokenizer_codes(kind)
            if needed is None or self.vocab_sizes[i] >= needed:
                continue
            what, smaller = holds[kind]
            raise _invalid(
                self._label("vocab_sizes", i),
                f"{self.vocab_sizes[i]} is smaller than the {needed} {what}",
                f"set vocab_sizes[{i}] to at least {needed}, or use {smaller}",
            )

    def _check_shared_tables(self) -> None:
        # One token table per tokenizer needs one vocabulary size for the modalities that share it.
        if self.model.share_embeddings != "tokenizer":
            return
        first: dict[str, int] = {}
        for i, name in enumerate(self.modalities):
            tokenizer = modalities.get(name).tokenizer
            j = first.setdefault(tokenizer, i)
            if self.vocab_sizes[i] != self.vocab_sizes[j]:
                raise _invalid(
                    self._label("vocab_sizes", i),
                    f"{self.vocab_sizes[i]} differs from {self._label('vocab_sizes', j)} = {self.vocab_sizes[j]}, "
                    f"but both hold '{tokenizer}' tokenizer ids and model.share_embeddings=tokenizer gives them "
                    "one table",
                    f"set vocab_sizes[{i}] to {self.vocab_sizes[j]}, or model.share_embeddings=modality",
                )

    def _check_schedule(self) -> None:
        if self.min_lr > self.lr:
            raise _invalid(
                "min_lr",
                f"{self.min_lr:g} is above lr {self.lr:g}, so the decay would rise",
                f"set min_lr <= lr, e.g. min_lr={self.lr / 100:g}",
            )
        if self.warmup_tokens > self.total_tokens:
            raise _invalid(
                "warmup_tokens",
                f"{self.warmup_tokens:g}M is more than total_tokens {self.total_tokens:g}M",
                "make warmup_tokens a fraction of total_tokens (e.g. a tenth)",
            )

    # -- views for the rest of the platform --------------------------------------------------------------

    @property
    def train_seed(self) -> int:
        """The seed a training draws its weights, batch order and masks from."""
        return self.data.seed if self.seed is None else self.seed

    def modality_index(self, name: str) -> int:
        """Position of a modality in every per-modality list (vocab_sizes, max_seq_lens, alphas)."""
        try:
            return self.modalities.index(name)
        except ValueError:
            raise KeyError(
                f"modality '{name}' is not in this config ({', '.join(self.modalities)})"
            ) from None

    def lengths(self) -> dict[str, int]:
        """Modality -> max_seq_len, so callers never zip the parallel lists themselves."""
        return dict(zip(self.modalities, self.max_seq_lens, strict=True))

    def vocab(self) -> dict[str, int]:
        """Modality -> vocabulary size."""
        return dict(zip(self.modalities, self.vocab_sizes, strict=True))

    def flatten(self) -> dict[str, str]:
        """Dotted keys -> strings, the shape MLflow params want; lists and nulls are written as JSON."""
        return flatten_dump(self.model_dump(mode="json"))

    def tracking_tags(self) -> dict[str, str]:
        """What tells this run apart in the MLflow table: the 4M variant."""
        return {"variant": self.variant}

    @property
    def run_label(self) -> str:
        """The start of a default run name (variant, then preset and time)."""
        return self.variant

    def fingerprint(self, section: str = "data") -> str:
        """Short content hash used to name and reuse artefacts.

        "data" covers exactly what determines the tokenised dataset, so a changed learning rate reuses
        the shards while a changed image size does not. "all" covers every field that affects a run;
        provenance (name, preset, source, overrides, global_vars) is left out so the same resolved
        values hash the same wherever they came from.
        """
        return fingerprint_dump(self.model_dump(mode="json"), DATA_FINGERPRINT_FIELDS, section)

    def to_yaml(self) -> str:
        """The resolved config as YAML that `load_config(path)` reads back to an equal config.

        Provenance fields are left out: the loader sets them from the file it reads.
        """
        return dump_yaml(self.model_dump(mode="json", exclude=set(PROVENANCE_FIELDS)))


def fingerprint_dump(dumped: dict[str, Any], data_fields: tuple[str, ...], section: str) -> str:
    """16 hex digits of a JSON-mode dump: "data" hashes `data_fields`, "all" every field but provenance
    (shared by every config schema)."""
    if section == "data":
        payload = {key: dumped[key] for key in data_fields}
    elif section == "all":
        payload = {key: v for key, v in dumped.items() if key not in PROVENANCE_FIELDS | {"global_vars"}}
    else:
        raise ValueError(f"unknown fingerprint section '{section}'; use 'data' or 'all'")
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flatten_dump(dumped: dict[str, Any]) -> dict[str, str]:
    """A JSON-mode dump -> {dotted key: string}; lists and nulls as JSON (shared by every config schema)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value if isinstance(value, str) else json.dumps(value)

    walk("", dumped)
    return flat


def dump_yaml(body: dict[str, Any]) -> str:
    """YAML in the layout of the hand-written files, which the loader reads back to an equal config."""
    return yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=110)


class _Dumper(yaml.SafeDumper):
    """Sections as blocks, lists of scalars on one line: the layout of the hand-written files."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)
