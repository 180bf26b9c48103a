"""Analysing sweeps, finished or running: one module per analysis.

`trial_table` (one row per trial, the table every other analysis starts from), `pareto`
(the non-dominated trials), `export` (the best trials' configs, by a criterion),
`confirm` (a config over seeds: its space and its mean (std)), `sensitivity` (parameter
importances, slices, curves), `report` (the papers' tables with the published numbers) and
`overview` (the plots a finished sweep leaves on its parent run).
They read sweeps only through the tracking read side (`tracking.Store`), so they work
against any tracking server, not just where Tune's state lives. Imports pyarrow, NumPy,
matplotlib, PyYAML and Optuna's importance evaluators (on in-memory studies, never its
samplers); of sweeps `space`, `tracking` (its read side), `names` and `errors`. Never Ray, and
MLflow only through `tracking`.
"""
from sweeps.analysis import confirm, export, overview, pareto, report, sensitivity, trial_table
from sweeps.analysis.trial_table import format_value

__all__ = ["confirm", "export", "format_value", "overview", "pareto", "report", "sensitivity", "trial_table"]
