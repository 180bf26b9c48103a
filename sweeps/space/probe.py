"""The final rules, on the whole space: what Optuna and `models` will accept of its trials.

Run last, once every section is valid on its own: Optuna must see one parameter name the
same way in every method, and `models` must accept the config of every trial the space can
sample, probed at each parameter's bounds and choices (and under its conditions).
"""
from __future__ import annotations

import re

from models.config import ConfigError
from sweeps.space.model import METHOD, Param, SearchSpace
from sweeps.space.rules import Invalid


def same_optuna_names(space: SearchSpace) -> None:
    """Optuna refuses one parameter name with two kinds, log settings or choice lists in a study."""
    seen: dict[str, tuple[str, Param]] = {}
    for label, branch in space.methods.items():
        for param in branch.params:
            first = seen.setdefault(param.key, (label, param))
            if (first[1].type, first[1].log, first[1].choices) != (param.type, param.log, param.choices):
                raise Invalid(f"methods.{label}.params.{param.key}",
                              f"declared differently in methods.{first[0]} (Optuna needs the same "
                              "type, log and choices for one parameter name)")


def accepted_by_models(space: SearchSpace) -> None:
    """Every parameter can be active, and `models` accepts each of its extremes."""
    checked = set().union(*(_probe(space, label) for label in space.methods or [None]))
    declared = [f"params.{p.key}" for p in space.params] + \
        [f"methods.{label}.params.{p.key}" for label, b in space.methods.items() for p in b.params]
    for where in declared:
        if where not in checked:
            raise Invalid(where, "its `when` conditions can never all hold")


def _probe(space: SearchSpace, label: str | None) -> set[str]:
    """Build configs at every parameter's bounds and choices and let `models` judge them.

    Returns where each parameter that can be active in this context is declared."""
    params = space.params_for(label)
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
        raise Invalid(culprit, f"rejected by models with every parameter at its first value: {err}") from err
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
                raise Invalid(where(i), f"value {value!r} rejected by models: {err}") from err
    return checked
