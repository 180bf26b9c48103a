"""`sweeps evaluate RUN_ID_OR_FILE`: the test metrics of a trained model, on its corpus or another."""
from __future__ import annotations

import argparse
import tempfile

import models
from sweeps.cli.options import add_model_argument, model_file
from sweeps.cli.train import evaluation_printer, test_line

HELP = "test metrics (nll, ppl, -elbo, recon, kl, mi, au) of a model file or of a trial's model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--dataset", help="'synthetic' or a prefix P: P.test.txt is evaluated, with P.train.txt's "
                                          "vocabulary, which must be the model's (default: the model's own corpus)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    overrides: dict = {"device": args.device}
    if args.dataset:  # the prefix replaces whatever split files the model was trained on
        overrides["data"] = {"name": args.dataset, "train": None, "valid": None, "test": None}
    with tempfile.TemporaryDirectory() as tmp:
        print(test_line(models.evaluate_model(model_file(args, tmp), overrides, on_test=evaluation_printer())))
    return 0
