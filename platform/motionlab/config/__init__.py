"""Experiment configuration: YAML in the seed format in, a frozen, validated `ExperimentConfig` (4M) or
`MotionConfig` (text-to-motion) out."""

from motionlab.config.loader import (
    available_configs,
    config_dir,
    load_any_config,
    load_config,
    load_motion_config,
    show_config,
)
from motionlab.config.motion import MotionConfig
from motionlab.config.schema import (
    COSMOS_CODEBOOK_SIZE,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    ResourcesConfig,
)

__all__ = [
    "COSMOS_CODEBOOK_SIZE",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "MotionConfig",
    "ResourcesConfig",
    "available_configs",
    "config_dir",
    "load_any_config",
    "load_config",
    "load_motion_config",
    "show_config",
]
