"""`sweeps confirm best.yaml --seeds 5`: rerun one config over seeds, as a sweep.

The config becomes a grid over the seed (analysis/confirm.py), run by `sweeps run`, so
`resume NAME` continues an interrupted one; the mean (std) of the seeds is printed and
logged on the sweep's parent run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from models.config import set_dotted
from sweeps.analysis import confirm
from sweeps.cli import run
from sweeps.cli.options import add_config_options, add_tracking_option, overrides_from_args, read_config_file
from sweeps.errors import UserError
from sweeps.tracking import open_store

HELP = "rerun a config (e.g. from export-best) over seeds as a sweep; report mean (std) of test metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config YAML, e.g. best.yaml from export-best")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default: %(default)s)")
    parser.add_argument("--name", help="sweep name (default: confirm-CONFIG-TIME)")
    add_config_options(parser)  # --seed: the first seed (default 0): seeds are SEED .. SEED+N-1
    parser.add_argument("--max-concurrent", type=int, default=1, help="seeds at a time (default: %(default)s)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per seed (default: %(default)s)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per seed; fractions share a GPU")
    add_tracking_option(parser)


def main(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise UserError(f"--seeds: must be positive, got {args.seeds}")
    overrides = overrides_from_args(args)
    first = int(overrides.pop("seed", 0))
    config = read_config_file(args.config)
    for key, value in overrides.items():
        set_dotted(config, key, value)
    seeds = list(range(first, first + args.seeds))
    name = args.name or f"confirm-{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    with tempfile.TemporaryDirectory() as tmp:
        space_file = Path(tmp, f"{name}.yaml")  # logged on the parent run as the sweep's space
        space_file.write_text(yaml.safe_dump(confirm.confirm_space(config, seeds, args.max_concurrent,
                                                                   args.cpus_per_trial), sort_keys=False))
        # Through `run`'s own parser, so `confirm` gets its defaults and checks as they evolve.
        parser = argparse.ArgumentParser()
        run.add_arguments(parser)
        forwarded = [("--tracking-uri", args.tracking_uri), ("--gpus-per-trial", args.gpus_per_trial)]
        status = run.main(parser.parse_args([str(space_file), "--name", name] + [
            text for option, value in forwarded if value is not None for text in (option, str(value))]))
    with open_store(args.tracking_uri) as store:
        text = confirm.summary(store, name, seeds)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "confirm.md")
            path.write_text(text + "\n")
            store.log_artifact(store.sweep(name), str(path))
    print(text)
    return status
