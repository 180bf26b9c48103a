"""`sweeps resume NAME`: continue an interrupted sweep from Tune's experiment state.

Finished trials stay as they are; unfinished ones continue from their last epoch
checkpoint and in their own MLflow runs; Optuna's study continues from the searcher
state Tune saved beside the trials. Run it from the directory the sweep was run in.
"""
from __future__ import annotations

import argparse
import json

from sweeps import tracking
from sweeps.cli.sweep import RECORD_FILE, RESULTS_DIR, SPACE_COPY, STORAGE_ENV, claim, execute, load, results_dir
from sweeps.errors import UserError

HELP = "continue an interrupted sweep (run from the directory it was started in)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"sweep name (a directory of ./{RESULTS_DIR}, or of ${STORAGE_ENV})")
    parser.add_argument("--tracking-uri", help="MLflow tracking server, if not the one the sweep used")


def main(args: argparse.Namespace) -> int:
    results = results_dir(args.name)
    if not (results / RECORD_FILE).exists():  # before claiming, which would create the folder
        raise UserError(f"no sweep {args.name!r} here: {results / RECORD_FILE} does not exist")
    with claim(args.name):
        return resume_claimed(args.name, args.tracking_uri)


def resume_claimed(name: str, tracking_uri: str | None) -> int:
    """Resume sweep NAME, whose folder this process has claimed (sweep.claim)."""
    results = results_dir(name)
    record = json.loads((results / RECORD_FILE).read_text())
    from sweeps.engine import can_resume
    if not can_resume(str(results)):
        raise UserError(f"sweep {name!r} was interrupted before its first trial was saved; "
                        "run it again under a new --name")
    if tracking_uri:
        try:
            record["tracking_uri"] = tracking.use_credentials(tracking.check_uri(tracking_uri))
        except ValueError as err:
            raise UserError(str(err)) from err
    return execute(record, load(str(results / SPACE_COPY)), restore=True)
