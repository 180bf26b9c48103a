"""The model of a search space: what a YAML file in search_spaces/ means, as typed data.

A space names a method preset (or, in a joint space, a `methods:` section whose
entries are sampled as the categorical parameter `method`, each with its own
conditional sub-space), fixed values, searched parameters and the sweep's
defaults. `define_by_run` samples a trial's values through whatever trial object it is
given (Optuna's, in the engine), `trial_config` turns them into the full `models` config.
Files become these objects through loader.load_space; the format is documented in
search_spaces/README.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.config import merge, set_dotted, to_dict

from models.resolve import parse_config
from models.presets import preset_config

METHOD = "method"
"""Name of the sampled categorical that picks an entry of a joint space's `methods:`."""


class SpaceError(ValueError):
    """A search-space file is malformed; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str
    """`min` or `max`."""


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0
    """Per trial; fractions share a GPU between trials."""


@dataclass(frozen=True)
class Param:
    key: str
    """Dotted config path, also the Optuna parameter name."""
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    when: tuple[tuple[str, tuple], ...] = ()
    """(param, accepted values) pairs; the parameter is sampled only when all hold."""

    def active(self, sampled: dict) -> bool:
        return all(key in sampled and sampled[key] in values for key, values in self.when)

    def suggest(self, trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list:
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class Branch:
    """One entry of a joint space's `methods:`: a preset with its own fixed values and params."""
    preset: str
    fixed: dict
    params: tuple[Param, ...]


@dataclass(frozen=True)
class SearchSpace:
    path: str
    name: str
    method: str | None
    fixed: dict
    params: tuple[Param, ...]
    """Searched in every trial (subject to their `when`)."""
    methods: dict[str, Branch]
    """Joint space only: the values of the `method` parameter."""
    objectives: tuple[Objective, ...]
    trials: int
    epochs: int | None
    """Sets train.max_epochs; None keeps the config default."""
    resources: Resources
    max_concurrent: int
    sampler: str = "tpe"
    """tpe: Optuna's TPE with successive halving (engine.halving); grid: every combination of
    the (categorical) parameters once, each trained to the end (seed replicates, one-parameter
    studies)."""

    def define_by_run(self, trial) -> dict:
        """Sample one trial's flat dotted values; only calls `trial.suggest_*`.

        Ray's OptunaSearch accepts None or a dict of str keys, which it merges over the values
        it captured from the suggest calls; ours are those same values.
        """
        sampled: dict[str, Any] = {}
        if self.methods:
            sampled[METHOD] = trial.suggest_categorical(METHOD, list(self.methods))
        for param in self.params_for(sampled.get(METHOD)):
            if param.active(sampled):
                sampled[param.key] = param.suggest(trial)
        return sampled

    def trial_config(self, sampled: dict, overrides: dict | None = None) -> dict:
        """The complete nested config of a trial: preset, fixed, sampled, then overrides win."""
        values = dict(sampled)
        branch = None
        if self.methods:
            label = values.pop(METHOD, None)
            if label not in self.methods:
                raise SpaceError(f"{self.path}: {METHOD}: {label!r} is not one of {', '.join(self.methods)}")
            branch = self.methods[label]
        config = preset_config(branch.preset if branch else self.method or "vae")
        layers = [self.fixed, branch.fixed if branch else {},
                  {"train.max_epochs": self.epochs} if self.epochs else {}, values, overrides or {}]
        for layer in layers:
            for key, value in layer.items():
                nested: dict = {}
                set_dotted(nested, key, value)
                config = merge(config, nested)  # a mapping value (`methods.pretrain: {}`) merges, not replaces
        return to_dict(parse_config(config))

    def searched(self) -> dict[str, str]:
        """Every key a trial may sample, and where the space declares it."""
        out = {METHOD: "methods"} if self.methods else {}
        out.update({p.key: f"params.{p.key}" for p in self.params})
        for label, branch in self.methods.items():
            out.update({p.key: f"methods.{label}.params.{p.key}" for p in branch.params if p.key not in out})
        return out

    def params_for(self, label: str | None) -> tuple[Param, ...]:
        """The parameters of a trial of method LABEL (None: a single-method space)."""
        return self.params + (self.methods[label].params if label else ())

