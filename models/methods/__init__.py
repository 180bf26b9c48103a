"""Registry of training-procedure methods, by name."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from models.config import ConfigError, from_dict
from models.methods.base import Method, NoParams, StepPlan

REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available under `cls.name`."""
    if cls.name in REGISTRY:
        raise RuntimeError(f"method {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def validate_methods(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Turn `{name: {param: value}}` into `{name: Params}`, naming unknown methods and keys."""
    _load_all()
    out = {}
    for name, params in methods.items():
        if name not in REGISTRY:
            raise ConfigError(f"methods.{name}: unknown method; known: {', '.join(sorted(REGISTRY)) or 'none'}")
        out[name] = from_dict(REGISTRY[name].Params, params if params is not None else {}, f"methods.{name}")
    return out


def build_methods(validated: dict[str, Any]) -> list[Method]:
    """Instantiate the configured methods, in config order."""
    _load_all()
    return [REGISTRY[name](params) for name, params in validated.items()]


__all__ = ["Method", "NoParams", "StepPlan", "REGISTRY", "register", "validate_methods", "build_methods"]
