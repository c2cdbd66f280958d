"""Experiment configs: the shipped files carry the reported values, and every mistake fails in one line."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from motionlab import modalities
from motionlab.config import (
    ConfigError,
    ExperimentConfig,
    config_dir,
    load_config,
    show_config,
)

STEMS = ("m1", "m2", "m3", "m4")
PROVENANCE = {"name", "preset", "source", "overrides"}


def _content(cfg: ExperimentConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude=PROVENANCE)


def _expect_error(
    name_or_path: str | Path,
    *,
    key: str,
    fix: str,
    problem: str = "",
    preset: str | None = None,
    overrides: tuple[str, ...] = (),
) -> str:
    """Load, expect a ConfigError, and check it is one line naming the file, the key and the fix."""
    with pytest.raises(ConfigError) as info:
        load_config(name_or_path, preset=preset, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message
    file_label = Path(str(name_or_path)).name
    assert message.startswith(f"{file_label}: "), message
    head, _, fix_text = message.partition("; fix: ")
    assert fix_text, message
    assert f": {key}" in head, message
    assert problem in head, message
    assert fix in fix_text, message
    assert info.value.key.startswith(key)
    return message


@pytest.fixture
def base() -> dict[str, Any]:
    """M3's resolved values as a plain dict: a valid starting point that each error test breaks once."""
    return yaml.safe_load(load_config("m3").to_yaml())


def _write(tmp_path: Path, data: dict[str, Any], name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- the shipped configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", [None, "tiny"])
@pytest.mark.parametrize("stem", STEMS)
def test_every_config_loads_with_consistent_grids(stem: str, preset: str | None) -> None:
    cfg = load_config(stem, preset=preset)
    assert cfg.name == stem
    assert cfg.preset == preset
    assert cfg.variant == stem.upper()
    assert Path(cfg.source) == (config_dir() / f"{stem}.yaml").resolve()
    n = len(cfg.modalities)
    for field in ("vocab_sizes", "max_seq_lens", "input_alphas", "target_alphas"):
        assert len(getattr(cfg, field)) == n
    d = cfg.data
    assert d.image_size % d.image_downsample == 0
    for name, length in cfg.lengths().items():
        modality = modalities.get(name)
        expected = modalities.expected_length(modality, d.image_size, d.image_downsample, d.num_next_frames)
        assert expected in (None, length)
        needed = d.tokenizer_codes(modality.kind)
        assert cfg.vocab()[name] >= needed
    for low, high in (cfg.input_tokens_range, cfg.target_tokens_range):
        assert 0 <= low <= high
    assert cfg.input_tokens_range[0] + cfg.target_tokens_range[0] <= sum(cfg.max_seq_lens)


def test_m1_values() -> None:
    cfg = load_config("m1")
    assert cfg.modalities == ["tok_rgb", "coords", "captions"]
    assert cfg.vocab_sizes == [65536, 8192, 65536]
    assert cfg.max_seq_lens == [256, 39, 64]
    assert cfg.input_alphas == [1.0, 1.0, 1.0] and cfg.target_alphas == [1.0, 1.0, 1.0]
    assert (cfg.total_tokens, cfg.warmup_tokens, cfg.num_tokens_per_sample) == (5000, 500, 192)
    assert (cfg.lr, cfg.min_lr, cfg.weight_decay, cfg.clip_grad, cfg.dtype) == (6e-4, 1e-6, 0.05, 1.0, "fp32")
    assert cfg.data.split_ratios == [0.7, 0.15, 0.15]
    assert cfg.input_tokens_range == [1, 128] and cfg.target_tokens_range == [1, 64]
    assert cfg.input_tokens_range[1] + cfg.target_tokens_range[1] == cfg.num_tokens_per_sample
    assert cfg.batch_size == 128
    assert (cfg.model.dim, cfg.model.enc_depth, cfg.model.dec_depth, cfg.model.head_dim) == (512, 6, 6, 64)
    assert cfg.data.num_next_frames == 1 and cfg.data.ssim_threshold == 0.89
    assert (cfg.data.image_size, cfg.data.image_downsample, cfg.data.image_tokenizer) == (256, 16, "fsq")
    assert (cfg.data.captioner, cfg.data.text_vocab_size, cfg.data.pose_bins) == ("template", 8192, 8192)
    assert (cfg.resources.num_workers, cfg.resources.use_gpu) == (1, False)


def test_m2_values() -> None:
    cfg = load_config("m2")
    assert cfg.modalities == ["tok_rgb", "coords", "captions", "tok_rgb_next", "coords_next"]
    assert cfg.vocab_sizes == [65536] * 5
    assert cfg.max_seq_lens == [256, 39, 256, 1536, 234]
    assert cfg.data.num_next_frames == 6
    assert cfg.input_alphas == [2, 2, 3, 0.5, 0.5]
    assert cfg.target_alphas == [1, 1, 1.5, 0.3, 0.3]
    assert cfg.input_tokens_range == [1, 128] and cfg.target_tokens_range == [8, 128]
    assert (cfg.batch_size, cfg.num_tokens_per_sample) == (128, 256)
    assert (cfg.total_tokens, cfg.warmup_tokens) == (5000, 500)
    assert (cfg.lr, cfg.min_lr) == (6e-4, 1e-6)
    assert (cfg.model.dim, cfg.model.enc_depth, cfg.model.dec_depth, cfg.model.head_dim) == (512, 6, 6, 64)


def test_m3_values() -> None:
    cfg = load_config("m3")
    assert cfg.modalities == ["tok_rgb", "coords", "tok_rgb_next", "coords_next"]
    assert cfg.vocab_sizes == [65536] * 4
    assert cfg.max_seq_lens == [256, 39, 256, 39]
    assert cfg.input_alphas == [1.0] * 4 and cfg.target_alphas == [1.0] * 4
    assert cfg.input_tokens_range == [32, 128] and cfg.target_tokens_range == [32, 128]
    assert (cfg.total_tokens, cfg.warmup_tokens, cfg.num_tokens_per_sample, cfg.lr) == (5000, 500, 256, 6e-4)
    assert cfg.data.split_ratios == [0.8, 0.1, 0.1]
    assert (cfg.data.ssim_threshold, cfg.data.num_next_frames) == (0.89, 1)


def test_m4_values() -> None:
    cfg = load_config("m4")
    m3 = load_config("m3")
    assert cfg.modalities == m3.modalities and cfg.max_seq_lens == m3.max_seq_lens
    assert cfg.input_alphas == [1.5, 1.5, 0.5, 0.5]
    assert cfg.target_alphas == [0.5, 0.5, 1.5, 1.5]
    assert cfg.input_tokens_range == [96, 256] and cfg.target_tokens_range == [39, 256]
    assert (cfg.total_tokens, cfg.warmup_tokens) == (3000, 500)
    assert (cfg.lr, cfg.min_lr, cfg.batch_size) == (0.002, 1e-7, 96)
    assert (cfg.model.dim, cfg.model.enc_depth, cfg.model.dec_depth, cfg.model.head_dim) == (640, 8, 8, 64)
    assert cfg.model.num_heads == 10
    assert cfg.data.split_ratios == m3.data.split_ratios
    assert cfg.data.ssim_threshold == m3.data.ssim_threshold


@pytest.mark.parametrize("stem", STEMS)
def test_files_use_global_vars_interpolation(stem: str) -> None:
    raw = yaml.safe_load((config_dir() / f"{stem}.yaml").read_text())
    assert raw["data"]["image_size"] == "${global_vars.image_size}"
    assert raw["max_seq_lens"][0] == "${global_vars.tokens_per_frame}"
    cfg = load_config(stem)
    assert cfg.global_vars["image_size"] == cfg.data.image_size == 256
    assert cfg.global_vars["tokens_per_frame"] == cfg.max_seq_lens[0] == 16 * 16
    assert cfg.global_vars["vocab_size"] == cfg.vocab_sizes[0]


@pytest.mark.parametrize("stem", STEMS)
def test_tiny_preset_is_small_and_consistent(stem: str) -> None:
    cfg = load_config(stem, preset="tiny")
    assert (cfg.data.image_size, cfg.data.image_downsample) == (64, 8)
    assert cfg.data.fsq_levels == [8, 5, 5, 5] and cfg.data.image_codes == 1000
    assert (cfg.data.pose_bins, cfg.data.text_vocab_size) == (1024, 1024)
    assert (cfg.model.dim, cfg.model.enc_depth, cfg.model.dec_depth, cfg.model.head_dim) == (128, 2, 2, 32)
    assert cfg.batch_size == 16
    assert (cfg.total_tokens, cfg.warmup_tokens, cfg.eval_freq, cfg.save_ckpt_freq) == (1, 0.1, 0.1, 0.5)
    assert all(v == 1024 for v in cfg.vocab_sizes)
    for name, length in cfg.lengths().items():
        kind = modalities.get(name).kind
        frames = modalities.frames_spanned(modalities.get(name), cfg.data.num_next_frames)
        if kind is modalities.Kind.IMAGE:
            assert length == 64 * frames
        elif kind is modalities.Kind.POSE:
            assert length == 39 * frames
        else:
            assert length == 32
    # Preset values replace the base ones; the base keeps its own.
    assert load_config(stem).model.dim != cfg.model.dim


def test_m2_tiny_keeps_six_future_frames() -> None:
    cfg = load_config("m2", preset="tiny")
    assert cfg.max_seq_lens == [64, 39, 32, 6 * 64, 6 * 39]


# -- overrides ------------------------------------------------------------------------------------------


def test_scalar_and_nested_overrides() -> None:
    cfg = load_config("m3", overrides=["model.dim=256", "lr=1e-3", "input_alphas=[1,1,1,1]", "dtype=bf16"])
    assert cfg.model.dim == 256
    assert cfg.lr == 0.001 and isinstance(cfg.lr, float)
    assert cfg.input_alphas == [1.0, 1.0, 1.0, 1.0]
    assert cfg.dtype == "bf16"
    assert cfg.overrides == ["model.dim=256", "lr=1e-3", "input_alphas=[1,1,1,1]", "dtype=bf16"]


def test_overrides_apply_after_the_preset() -> None:
    overrides = ["model.dim=96", "data.seed=7", "resources.use_gpu=true"]
    cfg = load_config("m4", preset="tiny", overrides=overrides)
    assert (cfg.model.dim, cfg.model.enc_depth) == (96, 2)
    assert cfg.data.seed == 7
    assert cfg.resources.use_gpu is True


@pytest.mark.parametrize("key", ["global_vars.image_size", "data.image_size"])
def test_image_size_override_carries_through_interpolation(key: str) -> None:
    cfg = load_config("m2", overrides=[f"{key}=128"])
    assert cfg.data.image_size == 128
    assert cfg.global_vars["tokens_per_frame"] == 8 * 8
    assert cfg.lengths() == {
        "tok_rgb": 64,
        "coords": 39,
        "captions": 256,
        "tok_rgb_next": 6 * 64,
        "coords_next": 234,
    }


def test_global_vars_override_follows_into_every_reference() -> None:
    cfg = load_config("m4", overrides=["global_vars.vocab_size=70000", "global_vars.image_downsample=8"])
    assert cfg.vocab_sizes == [70000] * 4
    assert cfg.data.image_downsample == 8
    assert cfg.max_seq_lens == [32 * 32, 39, 32 * 32, 39]


def test_num_next_frames_override_resizes_next_modalities() -> None:
    cfg = load_config("m2", preset="tiny", overrides=["data.num_next_frames=1"])
    assert cfg.lengths()["tok_rgb_next"] == 64 and cfg.lengths()["coords_next"] == 39


def test_list_item_override() -> None:
    cfg = load_config("m1", overrides=["input_alphas[2]=4"])
    assert cfg.input_alphas == [1.0, 1.0, 4.0]


# -- identity, serialisation, fingerprints --------------------------------------------------------------


@pytest.mark.parametrize("preset", [None, "tiny"])
def test_load_by_path_equals_load_by_stem(preset: str | None) -> None:
    path = config_dir() / "m4.yaml"
    by_stem = load_config("m4", preset=preset)
    assert load_config(path, preset=preset) == by_stem
    assert load_config(str(path), preset=preset) == by_stem


def test_config_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.yaml").write_text(load_config("m1").to_yaml())
    monkeypatch.setenv("MOTIONLAB_CONFIG_DIR", str(tmp_path))
    assert config_dir() == tmp_path
    assert load_config("mine").max_seq_lens == [256, 39, 64]


COSMOS_OVERRIDES = (
    "lr=3e-4", "data.image_tokenizer=cosmos", "global_vars.image_downsample=16", "global_vars.vocab_size=64000"
)


@pytest.mark.parametrize(
    ("stem", "preset", "overrides"),
    [("m1", None, ()), ("m2", "tiny", ()), ("m4", "tiny", COSMOS_OVERRIDES)],
)
def test_to_yaml_round_trip(
    tmp_path: Path, stem: str, preset: str | None, overrides: tuple[str, ...]
) -> None:
    cfg = load_config(stem, preset=preset, overrides=overrides)
    path = tmp_path / f"{stem}.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert _content(again) == _content(cfg)
    assert again.name == stem and again.preset is None
    assert again.fingerprint("all") == cfg.fingerprint("all")
    assert again.fingerprint() == cfg.fingerprint()


def test_show_config_names_file_and_preset() -> None:
    cfg = load_config("m4", preset="tiny", overrides=["lr=1e-3"])
    text = show_config(cfg)
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("m4.yaml" in line and "tiny" in line for line in header)
    assert any("lr=1e-3" in line for line in header)
    assert yaml.safe_load(text)["lr"] == 0.001


def test_fingerprint_is_the_hash_of_the_data_fields() -> None:
    cfg = load_config("m3")
    dumped = cfg.model_dump(mode="json")
    payload = {k: dumped[k] for k in ("data", "modalities", "vocab_sizes", "max_seq_lens")}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert cfg.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert cfg.fingerprint() == load_config("m3").fingerprint()
    assert len(cfg.fingerprint("all")) == 16


def test_fingerprint_follows_data_not_training() -> None:
    cfg = load_config("m3")
    assert load_config("m3", overrides=["lr=1e-3", "model.dim=256"]).fingerprint() == cfg.fingerprint()
    assert load_config("m3", overrides=["lr=1e-3"]).fingerprint("all") != cfg.fingerprint("all")
    for change in (
        "data.seed=7",
        "data.ssim_threshold=0.8",
        "data.split_ratios=[0.7,0.2,0.1]",
        "global_vars.vocab_size=65000",
    ):
        assert load_config("m3", overrides=[change]).fingerprint() != cfg.fingerprint(), change
    assert load_config("m3", preset="tiny").fingerprint() != cfg.fingerprint()
    # M4 tokenises the same modalities from the same data as M3, so it reuses M3's dataset.
    assert load_config("m4").fingerprint() == cfg.fingerprint()
    with pytest.raises(ValueError, match="data"):
        cfg.fingerprint("optimizer")


def test_views() -> None:
    cfg = load_config("m2")
    assert cfg.modality_index("tok_rgb_next") == 3
    assert cfg.lengths()["coords_next"] == 234
    assert cfg.vocab()["captions"] == 65536
    with pytest.raises(KeyError, match="depth"):
        cfg.modality_index("depth")
    flat = cfg.flatten()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in flat.items())
    assert flat["model.dim"] == "512"
    assert flat["lr"] == "0.0006"
    assert flat["data.fsq_levels"] == "[8, 8, 8, 5, 5, 5]"
    assert flat["data.image_tokenizer_path"] == "null"
    assert flat["resources.use_gpu"] == "false"
    assert flat["global_vars.image_size"] == "256"
    assert flat["name"] == "m2" and flat["variant"] == "M2"


def test_config_is_frozen_and_travels_to_workers() -> None:
    import pickle

    cfg = load_config("m1")
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert ExperimentConfig.model_validate(cfg.model_dump()) == cfg
    with pytest.raises(ValueError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        cfg.model.dim = 1  # type: ignore[misc]


# -- errors: one line, the key, the fix -----------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path, base: dict[str, Any]) -> None:
    base["batchsize"] = 64
    _expect_error(_write(tmp_path, base), key="batchsize", problem="unknown key", fix="batch_size")


def test_unknown_nested_key_suggests_closest(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["imgsize"] = 128
    _expect_error(_write(tmp_path, base), key="data.imgsize", problem="unknown key", fix="data.image_size")


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path, base: dict[str, Any]) -> None:
    base["model"]["zzz"] = 1
    _expect_error(_write(tmp_path, base), key="model.zzz", fix="dim, enc_depth, dec_depth, head_dim")


def test_unknown_key_from_override_says_so() -> None:
    message = _expect_error("m3.yaml", key="model.dimm", fix="model.dim", overrides=("model.dimm=256",))
    assert "override 'model.dimm=256'" in message


def test_provenance_key_in_file_is_rejected(tmp_path: Path, base: dict[str, Any]) -> None:
    base["name"] = "other"
    _expect_error(_write(tmp_path, base), key="name", fix="set by the loader")


def test_unknown_modality(tmp_path: Path, base: dict[str, Any]) -> None:
    base["modalities"][2] = "depth"
    message = _expect_error(_write(tmp_path, base), key="modalities[2]", problem="depth", fix="REGISTRY")
    assert "tok_rgb" in message


@pytest.mark.parametrize("field", ["vocab_sizes", "max_seq_lens", "input_alphas", "target_alphas"])
def test_per_modality_list_length(tmp_path: Path, base: dict[str, Any], field: str) -> None:
    base[field] = base[field][:-1]
    _expect_error(
        _write(tmp_path, base), key=field, problem="has 3 entries but modalities has 4", fix="4 values"
    )


@pytest.mark.parametrize("field", ["input_alphas", "target_alphas"])
def test_negative_alpha(tmp_path: Path, base: dict[str, Any], field: str) -> None:
    base[field][1] = -0.5
    path = _write(tmp_path, base)
    _expect_error(path, key=f"{field}[1] (coords)", problem="below 0", fix="positive weight")


@pytest.mark.parametrize("field", ["input_tokens_range", "target_tokens_range"])
def test_range_min_above_max(tmp_path: Path, base: dict[str, Any], field: str) -> None:
    base[field] = [64, 32]
    _expect_error(_write(tmp_path, base), key=field, problem="min 64 > max 32", fix="[32, 64]")


@pytest.mark.parametrize("field", ["input_tokens_range", "target_tokens_range"])
def test_range_min_below_zero(tmp_path: Path, base: dict[str, Any], field: str) -> None:
    base[field] = [-1, 32]
    _expect_error(_write(tmp_path, base), key=field, problem="below 0", fix="min >= 0")


def test_range_minima_exceeding_sample(tmp_path: Path, base: dict[str, Any]) -> None:
    base["input_tokens_range"] = [400, 500]
    base["target_tokens_range"] = [300, 500]
    _expect_error(_write(tmp_path, base), key="input_tokens_range", problem="holds only 590", fix="lower")


def test_image_grid_mismatch(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["image_size"] = 640
    message = _expect_error(
        _write(tmp_path, base, "m4.yaml"),
        key="max_seq_lens[0] (tok_rgb)",
        problem="configured 256 but a 640 px frame at 16 px per token gives 40x40 = 1600 tokens",
        fix="set max_seq_lens[0] to 1600",
    )
    assert message.startswith("m4.yaml: max_seq_lens[0] (tok_rgb): ")


def test_next_frame_grid_mismatch(tmp_path: Path) -> None:
    data = yaml.safe_load(load_config("m2").to_yaml())
    data["max_seq_lens"][3] = 256
    _expect_error(
        _write(tmp_path, data),
        key="max_seq_lens[3] (tok_rgb_next)",
        problem="6 frames of 256 px at 16 px per token give 6 x 16x16 = 1536 tokens",
        fix="set max_seq_lens[3] to 1536",
    )


def test_pose_length_mismatch(tmp_path: Path, base: dict[str, Any]) -> None:
    base["max_seq_lens"][1] = 40
    _expect_error(_write(tmp_path, base), key="max_seq_lens[1] (coords)", problem="39", fix="to 39")


def test_image_size_not_divisible(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["image_size"] = 250
    _expect_error(
        _write(tmp_path, base),
        key="data.image_size",
        problem="not divisible by image_downsample 16",
        fix="multiple of 16",
    )


def test_image_vocab_smaller_than_fsq_codes(tmp_path: Path, base: dict[str, Any]) -> None:
    base["vocab_sizes"][0] = 50000
    _expect_error(
        _write(tmp_path, base),
        key="vocab_sizes[0] (tok_rgb)",
        problem="smaller than the 64000 codes",
        fix="at least 64000",
    )


def test_image_vocab_smaller_than_cosmos_codes(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["image_tokenizer"] = "cosmos"
    base["data"]["fsq_levels"] = [2, 2]  # irrelevant to cosmos: its codebook is fixed
    base["vocab_sizes"] = [60000, 65536, 65536, 65536]
    _expect_error(_write(tmp_path, base), key="vocab_sizes[0] (tok_rgb)", problem="cosmos", fix="64000")


def test_pose_vocab_smaller_than_bins(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["pose_bins"] = 70000
    _expect_error(_write(tmp_path, base), key="vocab_sizes[1] (coords)", problem="pose_bins", fix="70000")


def test_text_vocab_smaller_than_bpe() -> None:
    _expect_error(
        "m1.yaml",
        key="vocab_sizes[2] (captions)",
        problem="text_vocab_size",
        fix="at least 32000",
        overrides=("data.text_vocab_size=32000", "global_vars.vocab_size=16000", "data.fsq_levels=[5,5,5]"),
    )


def test_split_ratios_not_summing_to_one(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["split_ratios"] = [0.8, 0.2, 0.1]
    _expect_error(_write(tmp_path, base), key="data.split_ratios", problem="sums to 1.1", fix="sum to 1")


def test_split_ratio_negative(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["split_ratios"] = [1.2, -0.1, -0.1]
    _expect_error(_write(tmp_path, base), key="data.split_ratios", problem="negative", fix=">= 0")


def test_undefined_preset_lists_defined_ones() -> None:
    _expect_error("m2.yaml", preset="huge", key="presets.huge", problem="not defined", fix="tiny")


def test_override_without_equals() -> None:
    _expect_error("m1.yaml", overrides=("model.dim",), key="override 'model.dim'", fix="key=value")


def test_override_with_bad_yaml_value() -> None:
    _expect_error("m1.yaml", overrides=("input_alphas=[1,2",), key="override", fix="brackets")


def test_override_through_a_value() -> None:
    _expect_error("m1.yaml", overrides=("lr.warm=1",), key="lr", problem="not a section", fix="lr=")


def test_missing_config_file_lists_stems() -> None:
    message = _expect_error("m9", key="config file", problem="not found", fix="m1, m2, m3, m4")
    assert message.startswith("m9: ")


def test_min_lr_above_lr() -> None:
    _expect_error(
        "m4.yaml", overrides=("min_lr=0.01",), key="min_lr", problem="above lr 0.002", fix="min_lr <="
    )


def test_dtype_not_allowed() -> None:
    _expect_error("m3.yaml", overrides=("dtype=fp64",), key="dtype", problem="'fp64'", fix="'fp32', 'bf16'")


def test_pydantic_type_error_is_one_line() -> None:
    message = _expect_error(
        "m3.yaml",
        overrides=("batch_size=many", "data.seed=x"),
        key="batch_size",
        problem="'many'",
        fix="a valid integer",
    )
    assert "(+1 more)" in message


def test_missing_required_key(tmp_path: Path, base: dict[str, Any]) -> None:
    del base["lr"]
    _expect_error(_write(tmp_path, base), key="lr", problem="missing", fix="add lr")


def test_nested_out_of_range(tmp_path: Path, base: dict[str, Any]) -> None:
    base["data"]["ssim_threshold"] = 1.5
    _expect_error(_write(tmp_path, base), key="data.ssim_threshold", problem="out of range", fix="less than")


def test_model_dim_not_multiple_of_head_dim() -> None:
    _expect_error("m4.yaml", overrides=("model.dim=650",), key="model.dim", fix="multiple of 64")


def test_gpu_without_gpus() -> None:
    _expect_error(
        "m1.yaml",
        overrides=("resources.use_gpu=true", "resources.gpus_per_worker=0"),
        key="resources.gpus_per_worker",
        fix="use_gpu=false",
    )


def test_interpolation_to_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "interp.yaml"
    text = (config_dir() / "m3.yaml").read_text()
    text = text.replace("${global_vars.pose_tokens}", "${global_vars.pose}", 1)
    path.write_text(text)
    _expect_error(path, key="max_seq_lens", problem="global_vars.pose", fix="existing key")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "syntax.yaml"
    path.write_text("variant: M3\nmodalities: [tok_rgb, coords\nlr: 1\n")
    _expect_error(path, key="line", fix="YAML syntax")


def test_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text((config_dir() / "m3.yaml").read_text() + "\nlr: 0.1\n")
    _expect_error(path, key="line", problem="'lr' appears twice", fix="keep one")


def test_warmup_longer_than_run() -> None:
    _expect_error("m3.yaml", overrides=("warmup_tokens=6000",), key="warmup_tokens", fix="fraction")


def test_scientific_notation_reads_as_float(tmp_path: Path, base: dict[str, Any]) -> None:
    path = _write(tmp_path, base, "sci.yaml")
    path.write_text(path.read_text().replace("lr: 0.0006", "lr: 6e-4"))
    assert load_config(path).lr == pytest.approx(6e-4)
    assert math.isclose(load_config(path).lr, 6e-4)


def test_malformed_interpolation(tmp_path: Path, base: dict[str, Any]) -> None:
    base["lr"] = "${min_lr"
    _expect_error(_write(tmp_path, base), key="lr", fix="closed with }")


def test_section_given_as_a_value(tmp_path: Path, base: dict[str, Any]) -> None:
    base["model"] = 5
    _expect_error(_write(tmp_path, base), key="model", problem="not a section", fix="dim, enc_depth")


def test_zero_patch_size_is_reported_against_the_key_set() -> None:
    _expect_error(
        "m1.yaml",
        overrides=("global_vars.image_downsample=0",),
        key="data.image_downsample",
        problem="out of range",
        fix="greater than 0",
    )


def test_config_error_from_one_message_and_across_processes() -> None:
    import pickle

    error = ConfigError("m4.yaml: data.image_tokenizer_path: /x does not exist; fix: point it at a folder")
    assert (error.file, error.key, error.problem, error.fix) == (
        "m4.yaml",
        "data.image_tokenizer_path",
        "/x does not exist",
        "point it at a folder",
    )
    again = pickle.loads(pickle.dumps(ConfigError("a.yaml", "lr", "is\nbad", "set it")))
    assert str(again) == "a.yaml: lr: is bad; fix: set it"
    assert again.key == "lr" and again.fix == "set it"


def test_cosmos_needs_its_own_grid() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("m4", preset="tiny", overrides=["data.image_tokenizer=cosmos"])
    message = str(err.value)
    assert "\n" not in message and "image_downsample" in message and "fix:" in message


CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def test_forecast_share_needs_the_whole_present_in_the_input_range() -> None:
    _expect_error(CONFIGS / "m4.yaml", preset="tiny", overrides=("input_tokens_range=[24,64]",), key="forecast_share",
                  problem="every current-frame token in (103)", fix="at least 103")
    _expect_error(CONFIGS / "m1.yaml", preset="tiny", overrides=("forecast_share=0.5",), key="forecast_share",
                  problem="no modality is a next-frame one", fix="forecast_share=0")
    _expect_error(CONFIGS / "m4.yaml", preset="tiny", overrides=("forecast_share=1.5",), key="forecast_share", fix="")


def test_embedding_keys_are_validated(tmp_path: Path, base: dict[str, Any]) -> None:
    _expect_error(CONFIGS / "m4.yaml", preset="tiny", overrides=("model.share_embeddings=frame",),
                  key="model.share_embeddings", fix="")
    base["vocab_sizes"][2] = base["vocab_sizes"][0] * 2  # tok_rgb_next != tok_rgb under one image table
    _expect_error(_write(tmp_path, base), key="vocab_sizes[2] (tok_rgb_next)", problem="'image' tokenizer",
                  fix="model.share_embeddings=modality")
    base["model"]["share_embeddings"] = "modality"
    assert load_config(_write(tmp_path, base, "ok.yaml")).model.share_embeddings == "modality"


def test_training_seed_keeps_the_dataset() -> None:
    base = load_config("m4", preset="tiny")
    seeded = load_config("m4", preset="tiny", overrides=("seed=7",))
    assert (base.train_seed, seeded.train_seed) == (42, 7)  # unset: data.seed
    assert seeded.fingerprint("data") == base.fingerprint("data")  # the same tokens and splits
    assert seeded.fingerprint("all") != base.fingerprint("all")


def test_sincos_positions_need_a_dim_divisible_by_four() -> None:
    _expect_error(CONFIGS / "m4.yaml", preset="tiny", overrides=("model.dim=126", "model.head_dim=42"),
                  key="model.dim", problem="not a multiple of 4", fix="model.posemb=learned")
    assert load_config("m4", preset="tiny", overrides=("model.dim=126", "model.head_dim=42",
                                                       "model.posemb=learned")).model.dim == 126
