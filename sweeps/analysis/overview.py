"""The plots a sweep leaves on its parent run when it ends, where the MLflow UI shows them
beside its trials: the Pareto front of its first two objectives (as `sweeps pareto` draws
it) and each parameter's importance for each objective (as `sweeps sensitivity` does)."""
from __future__ import annotations

import os

from sweeps.analysis import pareto, sensitivity, trial_table
from sweeps.errors import UserError
from sweeps.space import SearchSpace
from sweeps.tracking import Store

PARETO_PLOT = "pareto.png"
IMPORTANCE_PLOT = "importances.png"


def sweep_plots(store: Store, name: str, space: SearchSpace, directory: str) -> list[str]:
    """Write the sweep's plots into DIRECTORY and return their paths; none before a trial
    has completed, no front for a single objective, no importances if no parameter varied."""
    specs = [(o.metric, o.mode) for o in space.objectives]
    table = trial_table.load(store, [name])
    try:
        done = trial_table.completed(table, [metric for metric, _ in specs])
    except UserError:
        return []
    paths = []
    if len(specs) > 1:
        front, mask = pareto.front(table, specs[:2])
        paths.append(os.path.join(directory, PARETO_PLOT))
        # y the first objective, x the second: NLL against active units, as He et al. Fig. 4.
        pareto.plot(front, mask, specs[1], specs[0], paths[-1], skipped=table.num_rows - front.num_rows)
    dists = sensitivity.distributions(space, done)
    if dists and done.num_rows > 1:
        paths.append(sensitivity.importance_plot(sensitivity.scores(done, dists, specs),
                                                 os.path.join(directory, IMPORTANCE_PLOT)))
    return paths
