"""`sweeps sample RUN_ID_OR_FILE --n 20`: sentences a trained model decodes from its prior."""
from __future__ import annotations

import argparse
import tempfile

import models
from models.files import SAMPLES
from sweeps.cli.options import add_model_argument, model_file
from sweeps.errors import UserError

HELP = "print sentences decoded from z ~ prior by a model file or a trial's model (greedy and sampled)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--n", type=int, default=SAMPLES, help="prior draws (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"--n: must be positive, got {args.n}")
    with tempfile.TemporaryDirectory() as tmp:
        saved = models.load_model(model_file(args, tmp))
    print(models.samples_text(saved.model, saved.vocab, args.n, args.seed), end="")
    return 0
