"""`sweeps report NAME... --out report.md`: the papers' results tables from our sweeps, and the Pareto plot."""
from __future__ import annotations

import argparse
from pathlib import Path

from sweeps.analysis import pareto, report, trial_table
from sweeps.cli.options import add_tracking_option, log_on_parents
from sweeps.tracking import open_store

HELP = "markdown tables per dataset in the papers' layout, with published numbers beside ours"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="sweep name(s)")
    parser.add_argument("--out", default="report.md", help="markdown file (default: %(default)s); "
                                                           "the Pareto plot goes beside it")
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    plot_path = out.with_name(f"{out.stem}-pareto.png")
    with open_store(args.tracking_uri) as store:
        table = trial_table.load(store, args.names)
        done, mask = pareto.front(table, [pareto.metric_spec("au"), pareto.metric_spec("nll")])
        pareto.plot(done, mask, pareto.metric_spec("au"), pareto.metric_spec("nll"), str(plot_path),
                    skipped=table.num_rows - done.num_rows)
        text = report.render(done.to_pylist(), report.load_published(), args.names, plot_path.name)
        out.write_text(text)
        log_on_parents(store, args.names, out, plot_path)
    print(text)
    print(f"report -> {out}, plot -> {plot_path} (also logged on the parent run)")
    return 0
