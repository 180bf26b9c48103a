"""Text VAEs, the methods against posterior collapse, their metrics and data."""
from models.config import Config, ConfigError, parse_config
from models.loop import EpochReport, TrainingDiverged
from models.presets import PRESETS, preset_config
from models.trainer import train

__all__ = ["Config", "ConfigError", "EpochReport", "PRESETS", "TrainingDiverged", "parse_config",
           "preset_config", "train"]
