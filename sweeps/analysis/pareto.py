"""`sweeps pareto NAME...`: the non-dominated trials for two metrics, listed and plotted.

As He et al. Figure 4 plots NLL against active units for every model and seed: every
completed trial in the background, coloured by method, the front drawn over them. Only
completed trials have test metrics; pruned and failed ones are counted, not plotted.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np
import pyarrow as pa

from sweeps.errors import UserError
from sweeps.tracking.store import add_tracking_option, open_store
from sweeps.analysis import trial_table

HELP = "Pareto front of two metrics (default: minimise test NLL, maximise test AU), listed and plotted"
MAXIMISED = ("au", "mi")
"""Metrics better when larger; every other metric is minimised unless METRIC:max is given."""


def metric_spec(text: str) -> tuple[str, str]:
    """`au` -> (`test/au`, `max`); `val/kl:max` -> (`val/kl`, `max`)."""
    name, _, mode = text.partition(":")
    name = name if "/" in name else f"test/{name}"
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="sweep name(s), combined into one front")
    parser.add_argument("--x", default="au", help="metric on x, optionally METRIC:min|max (default: %(default)s)")
    parser.add_argument("--y", default="nll", help="metric on y (default: %(default)s)")
    parser.add_argument("--out", default="pareto.png", help="plot file (default: %(default)s)")
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    x, y = metric_spec(args.x), metric_spec(args.y)
    with open_store(args.tracking_uri) as store:
        table = trial_table.load(store, args.names)
        done, mask = front(table, [x, y])
        plot(done, mask, x, y, args.out, skipped=table.num_rows - done.num_rows)
        for name in args.names:
            store.log_artifact(store.sweep(name), args.out)
    on_front = done.filter(pa.array(mask)).sort_by([(y[0], "ascending" if y[1] == "min" else "descending")])
    print(trial_table.format_rows(on_front, ["sweep", "trial_id", "method", x[0], y[0], "run_id"],
                                  title=f"Pareto front ({x[0]} {x[1]}, {y[0]} {y[1]}): "
                                        f"{on_front.num_rows} of {done.num_rows} completed trials"))
    print(f"plot -> {args.out} (also logged on the parent run)")
    return 0


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
