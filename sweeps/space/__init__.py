"""The search-space language: the YAML files of search_spaces/, as typed, validated data.

Owns the model of a space (`model`: parameters, conditions, method entries, objectives;
sampling a trial through whatever trial object it is given, and turning the sample into
the full `models` config), reading a file (`loader`; its YAML reader, which refuses a
repeated key, reads config files too) and validating it as small rules (`rules`: each
value and section; `parameters`: parameters, conditions and method entries; `probe`:
whole configs against Optuna and `models`), all before any Ray or MLflow resource exists. search_spaces/README.md documents the format. Imports `models` (which
judges every config) and PyYAML; of sweeps only `names` (the metrics objectives may name), and no
Ray, Optuna or MLflow.
"""
from sweeps.space.loader import YamlError, load_space, read_yaml
from sweeps.space.model import METHOD, Branch, Objective, Param, Resources, SearchSpace, SpaceError

__all__ = ["METHOD", "Branch", "Objective", "Param", "Resources", "SearchSpace", "SpaceError", "YamlError",
           "load_space", "read_yaml"]
