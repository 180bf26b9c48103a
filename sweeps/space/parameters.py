"""The rules of searched parameters: `params:` sections, one parameter, its conditions, and
the entries of a joint space's `methods:`.

`declared` maps each parameter declared so far (above this one, or in the top-level
`params:` for a method's own) to its choices, empty for a numeric one: a `when` may test
only categoricals declared above it, so conditions never form a cycle.
"""
from __future__ import annotations

from typing import Any

from sweeps.space.model import METHOD, Branch, Param
from sweeps.space.rules import Invalid, config_key, fixed, integer, mapping, number, preset

FIELDS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"),
          "categorical": ("choices",)}
"""The fields of each parameter type, besides `type` and `when`."""


def params(value: Any, where: str, declared: dict[str, tuple], fixed_values: dict) -> tuple[Param, ...]:
    """A `params:` mapping, each parameter in order."""
    declared = dict(declared)
    out = []
    for key, spec in mapping(value, where).items():
        config_key(key, where)
        if key in fixed_values:
            raise Invalid(f"{where}.{key}", "also set under fixed")
        if key in declared:
            raise Invalid(f"{where}.{key}", "already searched in the top-level params")
        param = parameter(key, spec, f"{where}.{key}", declared)
        declared[key] = param.choices
        out.append(param)
    return tuple(out)


def parameter(key: str, spec: Any, where: str, declared: dict[str, tuple]) -> Param:
    spec = mapping(spec, where)
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:  # a list or mapping is not hashable
        raise Invalid(where, f"type must be one of {', '.join(FIELDS)}, got {kind!r}")
    allowed = ("type", "when") + FIELDS[kind]
    unknown = [f for f in spec if f not in allowed]
    if unknown:
        raise Invalid(where, f"unknown field {unknown[0]!r} for a {kind} parameter; known: {', '.join(allowed)}")
    when = conditions(spec.get("when"), where, declared)
    if kind == "categorical":
        return Param(key, kind, choices=choices(spec.get("choices"), where), when=when)
    return Param(key, kind, **bounds(kind, spec, where), when=when)


def choices(value: Any, where: str) -> tuple:
    if not isinstance(value, list) or not value:
        raise Invalid(where, "choices must be a non-empty list")
    for choice in value:
        if not (choice is None or isinstance(choice, (str, int, float, bool))):
            raise Invalid(where, f"choice {choice!r} is not a string, number, boolean or null")
    if len(set(map(repr, value))) < len(value):
        raise Invalid(where, "choices contain a duplicate")
    return tuple(value)


def bounds(kind: str, spec: dict, where: str) -> dict:
    """low, high, log and step of a numeric parameter, as Optuna accepts them."""
    read = integer if kind == "int" else number
    for field in ("low", "high"):
        if field not in spec:
            raise Invalid(where, f"a {kind} parameter needs `{field}`")
    low, high = read(spec["low"], f"{where}.low"), read(spec["high"], f"{where}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise Invalid(where, f"log must be true or false, got {log!r}")
    step = read(spec["step"], f"{where}.step") if "step" in spec else None
    if low >= high:
        raise Invalid(where, f"low ({low}) must be < high ({high})")
    if log and low <= 0:
        raise Invalid(where, f"log scale needs low > 0, got {low}")
    if step is not None:
        if step <= 0:
            raise Invalid(where, f"step must be positive, got {step}")
        if log:
            raise Invalid(where, "log and step cannot be combined (Optuna refuses them together)")
        spans = (high - low) / step
        if abs(spans - round(spans)) > 1e-9 * max(1.0, spans):
            raise Invalid(where, f"high - low ({high - low}) is not a multiple of step ({step})")
    return {"low": low, "high": high, "log": log, "step": step}


def conditions(value: Any, where: str, declared: dict[str, tuple]) -> tuple:
    """A parameter's `when`: (categorical, accepted values) pairs that must all hold."""
    out = []
    for key, accepted in mapping(value, f"{where}.when").items():
        if key not in declared:
            raise Invalid(f"{where}.when", f"{key!r} is not a parameter declared above this one")
        if not declared[key]:
            raise Invalid(f"{where}.when", f"{key!r} is not categorical; conditions test categoricals")
        accepted = tuple(accepted) if isinstance(accepted, list) else (accepted,)
        if not accepted:
            raise Invalid(f"{where}.when", f"{key!r}: empty list of accepted values")
        for item in accepted:
            if item not in declared[key]:
                raise Invalid(f"{where}.when", f"{item!r} is not among the choices of {key!r}: "
                                               f"{', '.join(map(repr, declared[key]))}")
        out.append((key, accepted))
    return tuple(out)


def branch(label: Any, body: Any, top_fixed: dict, shared: tuple[Param, ...], labels: tuple) -> Branch:
    """One entry of `methods:`: its preset (the label by default), fixed values and own params."""
    where = f"methods.{label}"
    if not isinstance(label, str):
        raise Invalid("methods", f"method names must be strings, got {label!r}")
    body = mapping(body, where)
    unknown = [k for k in body if k not in ("preset", "fixed", "params")]
    if unknown:
        raise Invalid(f"{where}.{unknown[0]}", "unknown key; known keys: preset, fixed, params")
    own_fixed = fixed(body.get("fixed"), f"{where}.fixed")
    declared = {METHOD: labels, **{p.key: p.choices for p in shared}}
    for key in set(own_fixed) & set(declared):
        raise Invalid(f"{where}.fixed.{key}", "also searched in the top-level params")
    own = params(body.get("params"), f"{where}.params", declared, {**top_fixed, **own_fixed})
    return Branch(preset=preset(body.get("preset", label), f"{where}.preset"), fixed=own_fixed, params=own)
