"""`sweeps compare SWEEP...`: the sweeps' NLL-AU fronts on one plot, ranked by hypervolume at equal compute."""
from __future__ import annotations

import argparse
from pathlib import Path

from sweeps.analysis import compare
from sweeps.cli.options import add_tracking_option, log_on_parents
from sweeps.errors import UserError
from sweeps.tracking import open_store

HELP = ("compare sweeps: their NLL-AU fronts on one plot, hypervolumes against one reference point, "
        "compute spent, per group the mean hypervolume with a bootstrap interval; refuses unequal budgets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="SWEEP", help="the sweeps to compare, each with its own front")
    parser.add_argument("--group", action="append", default=[], metavar="LABEL=SWEEP[,SWEEP...]",
                        help="sweeps to pool as one group, e.g. the same space over seeds: 'joint=joint-s*' "
                             "(shell patterns); repeatable; a sweep in no group is a group of its own")
    parser.add_argument("--reference", metavar="NLL,AU",
                        help="the hypervolume's reference point (default: the worst test NLL among the "
                             "sweeps' completed trials, and AU 0)")
    parser.add_argument("--budget", choices=compare.BUDGETS, default="trial-epochs",
                        help="the measure of compute the sweeps must match in (default: %(default)s)")
    parser.add_argument("--tolerance", type=float, default=0.1,
                        help="largest relative difference of budgets still ranked (default: %(default)s)")
    parser.add_argument("--equalise", action="store_true",
                        help="count each sweep's trials, in start order, to the one nearest the smallest sweep's budget")
    parser.add_argument("--allow-unequal", action="store_true",
                        help="rank sweeps whose budgets differ by more than the tolerance, saying so")
    parser.add_argument("--out", default="compare.png",
                        help="plot file (default: %(default)s); the report goes beside it as .txt")
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    if len(set(args.names)) != len(args.names):
        raise UserError("a sweep is named twice")
    reference = _reference(args.reference) if args.reference else None
    groups = compare.parse_groups(args.names, args.group)
    plot_path, text_path = Path(args.out), Path(args.out).with_suffix(".txt")
    with open_store(args.tracking_uri) as store:
        result = compare.compare(compare.load(store, args.names), groups, budget=args.budget,
                                 tolerance=args.tolerance, equalise=args.equalise,
                                 allow_unequal=args.allow_unequal, reference=reference)
        compare.plot(result, str(plot_path))
        text = compare.report(result)
        text_path.write_text(text + "\n")
        # A comparison is a view of its sweeps: each sweep's run shows what it was compared with.
        log_on_parents(store, args.names, plot_path, text_path)
    print(text)
    print(f"plot -> {plot_path}, report -> {text_path} (also logged under analysis/ on each sweep's parent run)")
    return 0


def _reference(text: str) -> tuple[float, float]:
    try:
        nll, au = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--reference {text!r}: expected NLL,AU, e.g. 110.5,0") from None
    return nll, au
