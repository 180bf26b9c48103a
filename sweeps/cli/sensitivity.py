"""`sweeps sensitivity NAME`: which parameters matter for each objective, tabled and plotted."""
from __future__ import annotations

import argparse

from sweeps.analysis import pareto, sensitivity, trial_table
from sweeps.cli.options import add_tracking_option
from sweeps.tracking import open_store

HELP = "parameter importances (fANOVA, PED-ANOVA) per objective, slice plots, one-parameter curves"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="sweep name")
    parser.add_argument("--objective", action="append", metavar="METRIC[:min|max]",
                        help="objective(s) to analyse (default: the sweep's objectives)")
    parser.add_argument("--prefix", help="prefix of the plot files (default: NAME-)")
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    with open_store(args.tracking_uri) as store:
        sweep = store.sweep(args.name)
        space = sensitivity.logged_space(store, sweep)
        specs = ([pareto.metric_spec(o) for o in args.objective] if args.objective else
                 [(o.metric, o.mode) for o in space.objectives] if space else [("test/nll", "min"), ("test/au", "max")])
        done = trial_table.completed(trial_table.load(store, [args.name]), [m for m, _ in specs])
        dists = sensitivity.distributions(space, done)
        if not dists:
            print(f"{args.name}: no parameter varies between the {done.num_rows} completed trials")
            return 0
        scores = sensitivity.scores(done, dists, specs)
        prefix = args.prefix if args.prefix is not None else f"{args.name}-"
        files = [sensitivity.importance_plot(scores, f"{prefix}importances.png"),
                 sensitivity.slices(done, dists, specs, f"{prefix}slices.png")]
        searched = [k for k in dists if k != sensitivity.SEED]
        if len(searched) == 1:
            text, path = sensitivity.curve(done, searched[0], specs, f"{prefix}curve.png")
            print(text)
            files.append(path)
        for path in files:
            store.log_artifact(sweep, path)
    print(sensitivity.table_text(scores, list(dists), done.num_rows))
    print("plots -> " + ", ".join(files) + " (also logged on the parent run)")
    return 0
