"""Experiment configuration: YAML in the seed format in, a frozen, validated `ExperimentConfig` out."""

from motionlab.config.loader import available_configs, config_dir, load_config, show_config
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
    "ResourcesConfig",
    "available_configs",
    "config_dir",
    "load_config",
    "show_config",
]
