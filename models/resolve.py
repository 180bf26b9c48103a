"""`parse_config`: a nested dict (from YAML, the CLI or a sweep) resolved into a validated
`Config`: the dataset profile under it, types and ranges checked, each method's parameters
validated by its registered unit. Imports no torch: a command refuses bad input before it
loads torch (tests/test_models_layout.py checks both)."""
from __future__ import annotations

from models.config import Config, ConfigError, check_ranges, from_dict, merge
from models.methods import validate_methods
from models.profiles import profile_config, resolve_profile


def parse_config(data: dict | Config | None) -> Config:
    """Validate a nested dict into a `Config`, including each method's parameters."""
    data = data or {}
    if isinstance(data, dict):
        profile = resolve_profile(data)
        data = merge(profile_config(profile), {**data, "profile": profile})  # recorded as resolved
    cfg = from_dict(Config, data)
    check_ranges(cfg)
    cfg.methods = validate_methods(cfg.methods)
    if cfg.model.kind == "lm" and cfg.methods:
        # Every method acts on the encoder or the posterior, which the LM has not.
        raise ConfigError(f"methods.{next(iter(cfg.methods))}: needs an encoder; model.kind must be 'vae'")
    return cfg
