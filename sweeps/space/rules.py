"""The rules of a search-space file: one small function per value or section.

Each rule takes one part of the parsed YAML and where it sits (a dotted key), and returns
its typed value or raises `Invalid` naming the key at fault and the problem; the loader
adds the file's name. The rules for parameters and their conditions are in parameters.py, the
final check of whole configs against `models` in probe.py.
"""
from __future__ import annotations

import math
from typing import Any

from models.config import ConfigError

from models.resolve import parse_config
from models.presets import PRESETS, preset_config
from sweeps.names import METRICS
from sweeps.space.model import METHOD, Objective, Param, Resources

TOP_KEYS = ("method", "methods", "fixed", "params", "objectives", "trials", "epochs", "resources",
            "max_concurrent", "sampler")


class Invalid(Exception):
    """A rule's verdict: the dotted key at fault and the problem."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


# --- values -------------------------------------------------------------------------------

def mapping(value: Any, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(key, f"expected a mapping, got {value!r}")
    return value


def number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        hint = " (YAML reads 1e-3 and 1.0e3 as strings: write 1.0e-3, 1.0e+3)" if _numeric_text(value) else ""
        raise Invalid(key, f"expected a finite number, got {value!r}{hint}")
    return value


def _numeric_text(value: Any) -> bool:
    """A string Python reads as a number: YAML 1.1 needs a dot and a signed exponent."""
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


def integer(value: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(key, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise Invalid(key, f"must be at least {minimum}, got {value}")
    return value


def preset(name: Any, key: str) -> str:
    if not isinstance(name, str) or name not in PRESETS:
        raise Invalid(key, f"unknown method preset {name!r}; known: {', '.join(PRESETS)}")
    try:
        parse_config(preset_config(name))
    except ConfigError as err:  # e.g. a preset whose method is not registered in `models`
        raise Invalid(key, f"preset {name!r} rejected by models: {err}") from err
    return name


def config_key(name: Any, where: str) -> None:
    """A key of `fixed:` or `params:`: a dotted config path that the space may set."""
    if not isinstance(name, str) or not name or "" in name.split("."):
        raise Invalid(where, f"{name!r} is not a dotted config key")
    if name == "train.max_epochs":
        raise Invalid(f"{where}.{name}", "set the top-level `epochs` instead (the scheduler needs it)")
    if name == METHOD:
        raise Invalid(f"{where}.{name}", "the method is chosen by `method:` or sampled from `methods:`")


# --- sections -----------------------------------------------------------------------------

def top_level(data: dict) -> None:
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise Invalid(str(unknown[0]), f"unknown key; known keys: {', '.join(TOP_KEYS)}")
    if data.get("method") is not None and data.get("methods") is not None:
        raise Invalid("methods", "give either `method` or `methods`, not both")


def method_entries(data: dict) -> dict:
    """The `methods:` mapping of a joint space (label -> entry), empty for a single method."""
    methods = mapping(data.get("methods"), "methods")
    if "methods" in data and not methods:
        raise Invalid("methods", "name at least one method preset")
    return methods


def fixed(value: Any, key: str) -> dict:
    values = mapping(value, key)
    for name in values:
        config_key(name, key)
    return dict(values)


def objectives(value: Any) -> tuple[Objective, ...]:
    if value is None:  # the default: minimise NLL, maximise active units
        return (Objective("test/nll", "min"), Objective("test/au", "max"))
    if not isinstance(value, list) or not value:
        raise Invalid("objectives", "expected a non-empty list of {metric, mode}")
    out = []
    for i, item in enumerate(value):
        where = f"objectives[{i}]"
        item = mapping(item, where)
        if set(item) != {"metric", "mode"}:
            raise Invalid(where, f"expected exactly the keys metric and mode, got {', '.join(map(str, item))}")
        if item["metric"] not in METRICS:
            raise Invalid(where, f"unknown metric {item['metric']!r}; known: {', '.join(METRICS)}")
        if item["mode"] not in ("min", "max"):
            raise Invalid(where, f"mode must be min or max, got {item['mode']!r}")
        if any(o.metric == item["metric"] for o in out):
            raise Invalid(where, f"metric {item['metric']!r} listed twice")
        out.append(Objective(item["metric"], item["mode"]))
    return tuple(out)


def resources(value: Any) -> Resources:
    res = mapping(value, "resources")
    unknown = [k for k in res if k not in ("cpus", "gpus")]
    if unknown:
        raise Invalid(f"resources.{unknown[0]}", "unknown key; known keys: cpus, gpus")
    cpus = number(res.get("cpus", 1.0), "resources.cpus")
    gpus = number(res.get("gpus", 0.0), "resources.gpus")
    if cpus <= 0 or gpus < 0:
        raise Invalid("resources", f"cpus must be > 0 and gpus >= 0, got cpus={cpus}, gpus={gpus}")
    return Resources(float(cpus), float(gpus))


def sampler(value: Any, params: tuple[Param, ...], methods: dict) -> str:
    if value not in ("tpe", "grid"):
        raise Invalid("sampler", f"expected tpe or grid, got {value!r}")
    if value == "grid":
        if methods:
            raise Invalid("sampler", "grid needs a single method, not a `methods:` section")
        for p in params:
            if p.type != "categorical" or p.when:
                raise Invalid(f"params.{p.key}", "a grid searches unconditional categorical parameters only")
    return value
