"""Reading a search-space file into a `SearchSpace`, applying the rules in order.

The order is the file's order of precedence: top-level keys, then `methods:` and `fixed:`,
the parameters, each method entry, the sweep's settings, and last the probes of whole
configs. The first rule to fail is the one reported, as `FILE: KEY: PROBLEM`.
"""
from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import yaml

from sweeps.space import parameters, probe, rules
from sweeps.space.model import METHOD, SearchSpace, SpaceError


class YamlError(ValueError):
    """A YAML file cannot be read or parsed; the message is one line naming the file (and the line)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a search space or a config must not."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # `? [a, b]` or `{[a]: 1}`: no mapping can hold it
                raise yaml.constructor.ConstructorError(None, None, f"a key must be a name, got a "
                                                        f"{type(key).__name__}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_space(path: str | Path) -> SearchSpace:
    """Read and fully validate a search-space file; raises SpaceError."""
    path = str(path)
    try:
        space = build(read(path), path)
        probe.same_optuna_names(space)
        probe.accepted_by_models(space)
    except rules.Invalid as err:
        raise SpaceError(f"{path}: {err}") from err
    return space


def read_yaml(path: str) -> object:
    """The data of a YAML file, search space or config; YamlError if it cannot be read, is not
    UTF-8 text, is not valid YAML, or repeats a key in a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise YamlError(f"{path}: cannot read ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise YamlError(f"{path}: not UTF-8 text (byte {err.start})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as err:
        line = f"line {err.problem_mark.line + 1}" if err.problem_mark else "YAML"
        raise YamlError(f"{path}: {line}: {err.problem}") from err
    except yaml.YAMLError as err:
        raise YamlError(f"{path}: not valid YAML ({err})") from err


def read(path: str) -> dict:
    try:
        data = read_yaml(path)
    except YamlError as err:
        raise SpaceError(str(err)) from err
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: expected a mapping with keys {', '.join(rules.TOP_KEYS)}")
    return data


def build(data: dict, path: str) -> SearchSpace:
    """The space a parsed file describes, every rule but the final probes applied."""
    rules.top_level(data)
    methods = rules.method_entries(data)
    labels = tuple(methods)
    fixed = rules.fixed(data.get("fixed"), "fixed")
    params = parameters.params(data.get("params"), "params", {METHOD: labels} if labels else {}, fixed)
    return SearchSpace(
        path=path, name=Path(path).stem,
        method=rules.preset(data["method"], "method") if data.get("method") is not None else None,
        fixed=fixed, params=params,
        methods={str(label): parameters.branch(label, body, fixed, params, labels) for label, body in methods.items()},
        objectives=rules.objectives(data.get("objectives")),
        trials=rules.integer(data.get("trials", 20), "trials", minimum=1),
        epochs=rules.integer(data["epochs"], "epochs", minimum=1) if data.get("epochs") is not None else None,
        resources=rules.resources(data.get("resources")),
        max_concurrent=rules.integer(data.get("max_concurrent", 1), "max_concurrent", minimum=1),
        sampler=rules.sampler(data.get("sampler", "tpe"), params, methods))
