"""`sweeps trials NAME...`: the trial table of one or more sweeps, written as Parquet."""
from __future__ import annotations

import argparse

from sweeps.analysis import trial_table
from sweeps.cli.options import add_tracking_option
from sweeps.tracking import open_store

HELP = "one row per trial of one or more sweeps: method, parameters, metrics; written as Parquet"
SHOWN = ("sweep", "trial_id", "status", "method", "epochs", "test/nll", "test/au", trial_table.BEST_VAL,
         "wall_time")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="sweep name(s)")
    parser.add_argument("--out", default="trials.parquet", help="Parquet file to write (default: %(default)s)")
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    with open_store(args.tracking_uri) as store:
        table = trial_table.load(store, args.names)
    trial_table.save(table, args.out)
    print(trial_table.format_rows(table, SHOWN))
    print(f"{table.num_rows} trials, {table.num_columns} columns -> {args.out}")
    return 0
