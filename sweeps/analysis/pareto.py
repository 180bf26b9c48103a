"""The Pareto front: the non-dominated trials for some metrics, listed and plotted.

`pareto_mask` is the project's one front: `sweeps pareto`, the knee of `export-best`, the
report and the summary a sweep prints when it ends (engine.progress) all use it. The plot
follows He et al. Figure 4, which plots NLL against active units for every model and seed:
every completed trial in the background, coloured by method, the front drawn over them.
Only completed trials have test metrics; pruned and failed ones are counted, not plotted.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from sweeps.analysis import trial_table
from sweeps.errors import UserError
from sweeps.names import MAXIMISED, TEST


def metric_spec(text: str) -> tuple[str, str]:
    """`au` -> (`test/au`, `max`); `val/kl:max` -> (`val/kl`, `max`). Without a mode, a
    metric of MAXIMISED is maximised and every other minimised."""
    name, _, mode = text.partition(":")
    name = name if "/" in name else TEST + name
    mode = mode or ("max" if name.split("/", 1)[1] in MAXIMISED else "min")
    if mode not in ("min", "max"):
        raise UserError(f"{text!r}: the mode after ':' must be min or max")
    return name, mode


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """values (n, k), one column per objective -> bool (n,): True where no other row is at
    least as good in every objective and better in one."""
    signed = np.asarray(values, float) * np.array([1.0 if m == "min" else -1.0 for m in modes])
    no_worse = (signed[:, None, :] <= signed[None, :, :]).all(-1)  # [i, j]: i no worse than j
    better = (signed[:, None, :] < signed[None, :, :]).any(-1)
    return ~(no_worse & better).any(0)


def front(table: pa.Table, specs: Sequence[tuple[str, str]]) -> tuple[pa.Table, np.ndarray]:
    """Completed trials with the metrics, and the mask of the non-dominated ones."""
    done = trial_table.completed(table, [m for m, _ in specs])
    values = np.column_stack([done[m].to_numpy(zero_copy_only=False) for m, _ in specs])
    return done, pareto_mask(values, [mode for _, mode in specs])


def listed(done: pa.Table, mask: np.ndarray, spec: tuple[str, str]) -> pa.Table:
    """The trials on the front, best first in SPEC's metric."""
    metric, mode = spec
    return done.filter(pa.array(mask)).sort_by([(metric, "ascending" if mode == "min" else "descending")])


def plot(done: pa.Table, mask: np.ndarray, x: tuple[str, str], y: tuple[str, str], path: str,
         skipped: int = 0) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs, ys = (done[m].to_numpy(zero_copy_only=False) for m in (x[0], y[0]))
    methods = np.array(done["method"].to_pylist())
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for method in sorted(set(methods)):
        pick = methods == method
        ax.scatter(xs[pick], ys[pick], alpha=0.45, s=28, label=method)
    order = np.argsort(xs[mask])
    ax.plot(xs[mask][order], ys[mask][order], "k-", lw=1, zorder=3)
    ax.scatter(xs[mask], ys[mask], facecolors="none", edgecolors="k", s=70, lw=1.2, zorder=4,
               label="Pareto front")
    ax.set_xlabel(f"{x[0]} ({x[1]})")
    ax.set_ylabel(f"{y[0]} ({y[1]})")
    note = f"; {skipped} pruned/failed/running not shown" if skipped else ""
    ax.set_title(f"{done.num_rows} completed trials{note}", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
