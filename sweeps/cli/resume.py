"""`sweeps resume NAME`: continue an interrupted sweep from Tune's experiment state.

Finished trials stay as they are; unfinished ones continue from their last epoch
checkpoint and in their own MLflow runs; Optuna's study continues from the searcher
state Tune saved beside the trials. Run it from the directory the sweep was run in.
"""
from __future__ import annotations

import argparse

from sweeps.errors import UserError
from sweeps.record import RECORD_FILE, RESULTS_DIR, STORAGE_ENV, exists, results_dir
from sweeps.tracking import checked_uri

HELP = "continue an interrupted sweep (run from the directory it was started in)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"sweep name (a directory of ./{RESULTS_DIR}, or of ${STORAGE_ENV})")
    parser.add_argument("--tracking-uri", help="MLflow tracking server, if not the one the sweep used")


def main(args: argparse.Namespace) -> int:
    if not exists(args.name):  # before the driver claims the folder, which would create it
        raise UserError(f"no sweep {args.name!r} here: {results_dir(args.name) / RECORD_FILE} does not exist")
    uri = checked_uri(args.tracking_uri) if args.tracking_uri else None
    from sweeps import engine  # Ray, seconds: once the input is valid
    return engine.resume_sweep(args.name, uri)
