"""`sweeps pareto NAME...`: the non-dominated trials for two metrics, listed and plotted."""
from __future__ import annotations

import argparse

from sweeps.analysis import pareto, trial_table
from sweeps.cli.options import add_tracking_option, log_on_parents
from sweeps.tracking import open_store

HELP = "Pareto front of two metrics (default: minimise test NLL, maximise test AU), listed and plotted"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="sweep name(s), combined into one front")
    parser.add_argument("--x", default="au", help="metric on x, optionally METRIC:min|max (default: %(default)s)")
    parser.add_argument("--y", default="nll", help="metric on y (default: %(default)s)")
    parser.add_argument("--out", default="pareto.png", help="plot file (default: %(default)s)")
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    x, y = pareto.metric_spec(args.x), pareto.metric_spec(args.y)
    with open_store(args.tracking_uri) as store:
        table = trial_table.load(store, args.names)
        done, mask = pareto.front(table, [x, y])
        pareto.plot(done, mask, x, y, args.out, skipped=table.num_rows - done.num_rows)
        log_on_parents(store, args.names, args.out)
    on_front = pareto.listed(done, mask, y)
    print(trial_table.format_rows(on_front, ["sweep", "trial_id", "method", x[0], y[0], "run_id"],
                                  title=f"Pareto front ({x[0]} {x[1]}, {y[0]} {y[1]}): "
                                        f"{on_front.num_rows} of {done.num_rows} completed trials"))
    print(f"plot -> {args.out} (also logged on the parent run)")
    return 0
