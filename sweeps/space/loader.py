"""Reading and validating a search-space file into a `SearchSpace` (see sweeps/space.py)."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from models.config import ConfigError, parse_config
from models.presets import PRESETS, preset_config
from sweeps.space.model import METHOD, METRICS, Branch, Objective, Param, Resources, SearchSpace, SpaceError

_TOP_KEYS = ("method", "methods", "fixed", "params", "objectives", "trials", "epochs", "resources",
             "max_concurrent", "sampler")
_PARAM_FIELDS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"),
                 "categorical": ("choices",)}


def _numeric_text(value: Any) -> bool:
    """A string Python reads as a number: YAML 1.1 needs a dot and a signed exponent."""
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a search space must not."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


class SpaceLoader:
    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str) -> SpaceError:
        return SpaceError(f"{self.path}: {key}: {problem}")

    def load(self) -> SearchSpace:
        data = self.read()
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise self.fail(str(unknown[0]), f"unknown key; known keys: {', '.join(_TOP_KEYS)}")
        if data.get("method") is not None and data.get("methods") is not None:
            raise self.fail("methods", "give either `method` or `methods`, not both")
        methods = self.mapping(data.get("methods"), "methods")
        if "methods" in data and not methods:
            raise self.fail("methods", "name at least one method preset")
        labels = tuple(methods)
        fixed = self.fixed(data.get("fixed"), "fixed")
        params = self.params(data.get("params"), "params", {METHOD: labels} if labels else {}, fixed)
        space = SearchSpace(
            path=self.path, name=Path(self.path).stem,
            method=self.preset(data["method"], "method") if data.get("method") is not None else None,
            fixed=fixed, params=params,
            methods={str(label): self.branch(label, body, fixed, params, labels) for label, body in methods.items()},
            objectives=self.objectives(data.get("objectives")),
            trials=self.integer(data.get("trials", 20), "trials", minimum=1),
            epochs=self.integer(data["epochs"], "epochs", minimum=1) if data.get("epochs") is not None else None,
            resources=self.resources(data.get("resources")),
            max_concurrent=self.integer(data.get("max_concurrent", 1), "max_concurrent", minimum=1),
            sampler=self.sampler(data.get("sampler", "tpe"), params, methods))
        self.check_optuna_names(space)
        checked = set().union(*(self.check_against_models(space, label) for label in space.methods or [None]))
        declared = [f"params.{p.key}" for p in space.params] + \
            [f"methods.{label}.params.{p.key}" for label, b in space.methods.items() for p in b.params]
        for where in declared:
            if where not in checked:
                raise self.fail(where, "its `when` conditions can never all hold")
        return space

    def read(self) -> dict:
        try:
            text = Path(self.path).read_text()
        except OSError as err:
            raise SpaceError(f"{self.path}: cannot read ({err.strerror})") from err
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.MarkedYAMLError as err:
            line = f"line {err.problem_mark.line + 1}" if err.problem_mark else "YAML"
            raise SpaceError(f"{self.path}: {line}: {err.problem}") from err
        except yaml.YAMLError as err:
            raise SpaceError(f"{self.path}: not valid YAML ({err})") from err
        if not isinstance(data, dict):
            raise SpaceError(f"{self.path}: expected a mapping with keys {', '.join(_TOP_KEYS)}")
        return data

    def mapping(self, value: Any, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            hint = " (YAML reads 1e-3 and 1.0e3 as strings: write 1.0e-3, 1.0e+3)" if _numeric_text(value) else ""
            raise self.fail(key, f"expected a finite number, got {value!r}{hint}")
        return value

    def integer(self, value: Any, key: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def preset(self, name: Any, key: str) -> str:
        if not isinstance(name, str) or name not in PRESETS:
            raise self.fail(key, f"unknown method preset {name!r}; known: {', '.join(PRESETS)}")
        try:
            parse_config(preset_config(name))
        except ConfigError as err:  # e.g. a preset whose method is not registered in `models`
            raise self.fail(key, f"preset {name!r} rejected by models: {err}") from err
        return name

    def fixed(self, value: Any, key: str) -> dict:
        fixed = self.mapping(value, key)
        for name in fixed:
            self.config_key(name, key)
        return dict(fixed)

    def config_key(self, name: Any, where: str) -> None:
        if not isinstance(name, str) or not name or "" in name.split("."):
            raise self.fail(where, f"{name!r} is not a dotted config key")
        if name == "train.max_epochs":
            raise self.fail(f"{where}.{name}", "set the top-level `epochs` instead (the scheduler needs it)")
        if name == METHOD:
            raise self.fail(f"{where}.{name}", "the method is chosen by `method:` or sampled from `methods:`")

    def branch(self, label: Any, body: Any, top_fixed: dict, shared: tuple[Param, ...], labels: tuple) -> Branch:
        where = f"methods.{label}"
        if not isinstance(label, str):
            raise self.fail("methods", f"method names must be strings, got {label!r}")
        body = self.mapping(body, where)
        unknown = [k for k in body if k not in ("preset", "fixed", "params")]
        if unknown:
            raise self.fail(f"{where}.{unknown[0]}", "unknown key; known keys: preset, fixed, params")
        fixed = self.fixed(body.get("fixed"), f"{where}.fixed")
        declared = {METHOD: labels, **{p.key: p.choices for p in shared}}
        for key in set(fixed) & set(declared):
            raise self.fail(f"{where}.fixed.{key}", "also searched in the top-level params")
        params = self.params(body.get("params"), f"{where}.params", declared, {**top_fixed, **fixed})
        return Branch(preset=self.preset(body.get("preset", label), f"{where}.preset"), fixed=fixed, params=params)

    def params(self, value: Any, where: str, declared: dict[str, tuple], fixed: dict) -> tuple[Param, ...]:
        """Parse a `params:` mapping; a `when` may only test categoricals declared above it."""
        declared = dict(declared)
        out = []
        for key, spec in self.mapping(value, where).items():
            self.config_key(key, where)
            if key in fixed:
                raise self.fail(f"{where}.{key}", "also set under fixed")
            if key in declared:
                raise self.fail(f"{where}.{key}", "already searched in the top-level params")
            param = self.param(key, spec, f"{where}.{key}", declared)
            declared[key] = param.choices
            out.append(param)
        return tuple(out)

    def param(self, key: str, spec: Any, where: str, declared: dict[str, tuple]) -> Param:
        spec = self.mapping(spec, where)
        kind = spec.get("type")
        if kind not in _PARAM_FIELDS:
            raise self.fail(where, f"type must be one of {', '.join(_PARAM_FIELDS)}, got {kind!r}")
        allowed = ("type", "when") + _PARAM_FIELDS[kind]
        unknown = [f for f in spec if f not in allowed]
        if unknown:
            raise self.fail(where, f"unknown field {unknown[0]!r} for a {kind} parameter; "
                                   f"known: {', '.join(allowed)}")
        when = self.when(spec.get("when"), where, declared)
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise self.fail(where, "choices must be a non-empty list")
            for choice in choices:
                if not (choice is None or isinstance(choice, (str, int, float, bool))):
                    raise self.fail(where, f"choice {choice!r} is not a string, number, boolean or null")
            if len(set(map(repr, choices))) < len(choices):
                raise self.fail(where, "choices contain a duplicate")
            return Param(key, kind, choices=tuple(choices), when=when)
        read = self.integer if kind == "int" else self.number
        for field in ("low", "high"):
            if field not in spec:
                raise self.fail(where, f"a {kind} parameter needs `{field}`")
        low, high = read(spec["low"], f"{where}.low"), read(spec["high"], f"{where}.high")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise self.fail(where, f"log must be true or false, got {log!r}")
        step = read(spec["step"], f"{where}.step") if "step" in spec else None
        if low >= high:
            raise self.fail(where, f"low ({low}) must be < high ({high})")
        if log and low <= 0:
            raise self.fail(where, f"log scale needs low > 0, got {low}")
        if step is not None:
            if step <= 0:
                raise self.fail(where, f"step must be positive, got {step}")
            if log:
                raise self.fail(where, "log and step cannot be combined (Optuna refuses them together)")
            spans = (high - low) / step
            if abs(spans - round(spans)) > 1e-9 * max(1.0, spans):
                raise self.fail(where, f"high - low ({high - low}) is not a multiple of step ({step})")
        return Param(key, kind, low=low, high=high, log=log, step=step, when=when)

    def when(self, value: Any, where: str, declared: dict[str, tuple]) -> tuple:
        out = []
        for key, accepted in self.mapping(value, f"{where}.when").items():
            if key not in declared:
                raise self.fail(f"{where}.when", f"{key!r} is not a parameter declared above this one")
            if not declared[key]:
                raise self.fail(f"{where}.when", f"{key!r} is not categorical; conditions test categoricals")
            accepted = tuple(accepted) if isinstance(accepted, list) else (accepted,)
            if not accepted:
                raise self.fail(f"{where}.when", f"{key!r}: empty list of accepted values")
            for item in accepted:
                if item not in declared[key]:
                    raise self.fail(f"{where}.when", f"{item!r} is not among the choices of {key!r}: "
                                                     f"{', '.join(map(repr, declared[key]))}")
            out.append((key, accepted))
        return tuple(out)

    def objectives(self, value: Any) -> tuple[Objective, ...]:
        if value is None:  # the default: minimise NLL, maximise active units
            return (Objective("test/nll", "min"), Objective("test/au", "max"))
        if not isinstance(value, list) or not value:
            raise self.fail("objectives", "expected a non-empty list of {metric, mode}")
        out = []
        for i, item in enumerate(value):
            where = f"objectives[{i}]"
            item = self.mapping(item, where)
            if set(item) != {"metric", "mode"}:
                raise self.fail(where, f"expected exactly the keys metric and mode, got {', '.join(map(str, item))}")
            if item["metric"] not in METRICS:
                raise self.fail(where, f"unknown metric {item['metric']!r}; known: {', '.join(METRICS)}")
            if item["mode"] not in ("min", "max"):
                raise self.fail(where, f"mode must be min or max, got {item['mode']!r}")
            if any(o.metric == item["metric"] for o in out):
                raise self.fail(where, f"metric {item['metric']!r} listed twice")
            out.append(Objective(item["metric"], item["mode"]))
        return tuple(out)

    def sampler(self, value: Any, params: tuple[Param, ...], methods: dict) -> str:
        if value not in ("tpe", "grid"):
            raise self.fail("sampler", f"expected tpe or grid, got {value!r}")
        if value == "grid":
            if methods:
                raise self.fail("sampler", "grid needs a single method, not a `methods:` section")
            for p in params:
                if p.type != "categorical" or p.when:
                    raise self.fail(f"params.{p.key}", "a grid searches unconditional categorical parameters only")
        return value

    def resources(self, value: Any) -> Resources:
        res = self.mapping(value, "resources")
        unknown = [k for k in res if k not in ("cpus", "gpus")]
        if unknown:
            raise self.fail(f"resources.{unknown[0]}", "unknown key; known keys: cpus, gpus")
        cpus = self.number(res.get("cpus", 1.0), "resources.cpus")
        gpus = self.number(res.get("gpus", 0.0), "resources.gpus")
        if cpus <= 0 or gpus < 0:
            raise self.fail("resources", f"cpus must be > 0 and gpus >= 0, got cpus={cpus}, gpus={gpus}")
        return Resources(float(cpus), float(gpus))

    def check_optuna_names(self, space: SearchSpace) -> None:
        """Optuna refuses one parameter name with two kinds, log settings or choice lists in a study."""
        seen: dict[str, tuple[str, Param]] = {}
        for label, branch in space.methods.items():
            for param in branch.params:
                first = seen.setdefault(param.key, (label, param))
                if (first[1].type, first[1].log, first[1].choices) != (param.type, param.log, param.choices):
                    raise self.fail(f"methods.{label}.params.{param.key}",
                                    f"declared differently in methods.{first[0]} (Optuna needs the same "
                                    "type, log and choices for one parameter name)")

    def check_against_models(self, space: SearchSpace, label: str | None) -> set[str]:
        """Build configs at every parameter's bounds and choices and let `models` judge them.

        Returns where each parameter that can be active in this context is declared."""
        params = space._params_for(label)
        by_key = {p.key: p for p in params}

        def assign(chosen: dict) -> dict:
            sampled = {METHOD: label} if label else {}
            for param in params:
                if param.active(sampled):
                    sampled[param.key] = chosen.get(param.key, param.extremes()[0])
            return sampled

        def conditions(param: Param) -> dict:
            forced: dict = {}
            for key, accepted in param.when:
                if key in by_key:
                    forced.update(conditions(by_key[key]))
                forced[key] = accepted[0]
            return forced

        def where(i: int) -> str:
            return f"methods.{label}.params.{params[i].key}" if i >= len(space.params) else f"params.{params[i].key}"

        try:
            space.trial_config(assign({}))
        except ConfigError as err:
            # Blame the parameter models names first, else the fixed values (which may need the parameters).
            found = [(m.start(), i) for i, p in enumerate(params)
                     if (m := re.search(rf"(?<![\w.]){re.escape(p.key)}(?![\w.])", str(err)))]
            culprit = where(min(found)[1]) if found else f"methods.{label}" if label else "fixed"
            raise self.fail(culprit, f"rejected by models with every parameter at its first value: {err}") from err
        # The base passed, so a failure below is caused by the one value (or condition) varied.
        checked = set()
        for i, param in enumerate(params):
            forced = conditions(param)
            if not param.active(assign(forced)):
                continue  # conditional on another method, or never active (reported by the caller)
            checked.add(where(i))
            for value in param.extremes():
                try:
                    space.trial_config(assign({**forced, param.key: value}))
                except ConfigError as err:
                    raise self.fail(where(i), f"value {value!r} rejected by models: {err}") from err
        return checked
