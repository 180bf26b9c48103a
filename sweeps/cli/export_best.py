"""`sweeps export-best NAME... --criterion C --out best.yaml`: the chosen trial's complete config.

The criteria are documented in sweeps/analysis/export.py.
"""
from __future__ import annotations

import argparse

from sweeps.analysis import export, trial_table
from sweeps.cli.options import add_tracking_option
from sweeps.errors import UserError
from sweeps.tracking import open_store

HELP = "export the best trial's config (criterion: a metric, knee, or constraints like 'au>=16')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="sweep name(s); candidates are pooled")
    parser.add_argument("--criterion", default="nll", help=(
        "METRIC[:min|max]: the best value of a metric (test/ implied; au and mi maximised); "
        "knee: the trial of the NLL-AU Pareto front closest to the utopia point (best NLL, most AU) "
        "once both axes are scaled to [0, 1] over the completed trials; "
        "constraints like 'au>=16,kl<10': among the trials meeting them, the lowest test NLL "
        "(default: %(default)s)"))
    parser.add_argument("--out", default="best.yaml", help="config file to write (default: %(default)s)")
    parser.add_argument("--top", type=int, default=1, metavar="K", help=(
        "export the K best in criterion order, as OUT-1.yaml ... OUT-K.yaml beside OUT "
        "(best.yaml -> best-1.yaml, ...); knee ranks the front by distance, then the rest"))
    parser.add_argument("--with-weights", metavar="DIR", help=(
        "also fetch each exported trial's model file (weights, vocabulary, config) into DIR, "
        "named after its config file: best.yaml -> DIR/best.pt"))
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top: must be positive, got {args.top}")
    with open_store(args.tracking_uri) as store:
        ranked = export.rank(trial_table.load(store, args.names), args.criterion)
        written = export.write_best(store, ranked, args.criterion, args.out, args.top)
        if args.with_weights:
            written = export.write_weights(store, written, args.with_weights)
    files = ["file", "weights"] if args.with_weights else ["file"]
    print(trial_table.format_rows(written, ["sweep", "trial_id", "method", *export.SHOWN, *files],
                                  title=f"criterion {args.criterion}: {ranked.num_rows} candidate trials"))
    print(f"rerun: python -m sweeps train --config {written['file'].to_pylist()[0]} --out DIR")
    if args.with_weights:
        weights = written["weights"].to_pylist()[0]
        print(f"use:   python -m sweeps evaluate {weights}; python -m sweeps sample {weights} --n 20; "
              f"python -m sweeps train --config {written['file'].to_pylist()[0]} --init-from {weights} --out DIR")
    return 0
