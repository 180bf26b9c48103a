"""Text VAEs, the methods against posterior collapse, their metrics and data."""
from models.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "models.config": ("Config", "ConfigError"),
    "models.resolve": ("parse_config",),
    "models.generate": ("reconstructions_text", "samples_text"),
    "models.loop": ("EpochReport", "EvaluationProgress", "TrainingDiverged"),
    "models.presets": ("PRESETS", "preset_config"),
    "models.files": ("MODEL_FILE", "ModelFileError", "RECONSTRUCTIONS_FILE", "SAMPLES_FILE"),
    "models.saved": ("SavedModel", "evaluate_model", "load_model", "save_model"),
    "models.trainer": ("arithmetic", "train"),
})
