"""Text VAEs, the methods against posterior collapse, their metrics and data."""
from models.config import Config, ConfigError, parse_config
from models.generate import reconstructions_text, samples_text
from models.loop import EpochReport, TrainingDiverged
from models.presets import PRESETS, preset_config
from models.saved import MODEL_FILE, ModelFileError, SavedModel, evaluate_model, load_model, save_model
from models.trainer import RECONSTRUCTIONS_FILE, SAMPLES_FILE, train

__all__ = ["Config", "ConfigError", "EpochReport", "MODEL_FILE", "ModelFileError", "PRESETS", "RECONSTRUCTIONS_FILE",
           "SAMPLES_FILE", "SavedModel", "TrainingDiverged", "evaluate_model", "load_model", "parse_config",
           "preset_config", "reconstructions_text", "samples_text", "save_model", "train"]
