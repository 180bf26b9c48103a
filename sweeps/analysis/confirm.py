"""`sweeps confirm best.yaml --seeds 5`: rerun one config over seeds, as a sweep.

How a best trial becomes a claim: the papers report mean (std) over 5 random restarts
(He et al. §6.1, Song et al. Table 1). The config (e.g. from export-best) becomes a
search space whose only parameter is the seed, run by `sweeps run` with the grid
sampler (each seed exactly once, no early stopping), so the seeds are tracked in MLflow
as child runs of one parent like any sweep, and `resume NAME` continues an interrupted one.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from models.config import parse_config, set_dotted, to_dict
from sweeps import tracking
from sweeps.analysis import trial_table
from sweeps.cli import run
from sweeps.errors import UserError
from sweeps.cli.options import add_config_options, overrides_from_args
from sweeps.tracking.store import Store, add_tracking_option, open_store
from sweeps.cli.train import read_config_file

HELP = "rerun a config (e.g. from export-best) over seeds as a sweep; report mean (std) of test metrics"
UNSWEPT = ("seed", "train.max_epochs")
"""Config keys the confirm space sets itself: the grid's parameter and the space's `epochs`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config YAML, e.g. best.yaml from export-best")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default: %(default)s)")
    parser.add_argument("--name", help="sweep name (default: confirm-CONFIG-TIME)")
    add_config_options(parser)  # --seed: the first seed (default 0): seeds are SEED .. SEED+N-1
    parser.add_argument("--max-concurrent", type=int, default=1, help="seeds at a time (default: %(default)s)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per seed (default: %(default)s)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per seed; fractions share a GPU")
    add_tracking_option(parser)


def confirm_space(config: dict, seeds: list[int], max_concurrent: int, cpus: float) -> dict:
    """A search space holding CONFIG fixed, searching only the seed over a grid."""
    cfg = parse_config(config)  # a bad file fails here, naming the key
    flat = tracking.flatten(to_dict(cfg))
    return {"fixed": {k: v for k, v in flat.items() if k not in UNSWEPT},
            "params": {"seed": {"type": "categorical", "choices": seeds}},
            "sampler": "grid", "trials": len(seeds), "epochs": cfg.train.max_epochs,
            "max_concurrent": max_concurrent, "resources": {"cpus": cpus}}


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
        space_file.write_text(yaml.safe_dump(confirm_space(config, seeds, args.max_concurrent,
                                                           args.cpus_per_trial), sort_keys=False))
        # Through `run`'s own parser, so `confirm` gets its defaults and checks as they evolve.
        parser = argparse.ArgumentParser()
        run.add_arguments(parser)
        forwarded = [("--tracking-uri", args.tracking_uri), ("--gpus-per-trial", args.gpus_per_trial)]
        status = run.main(parser.parse_args([str(space_file), "--name", name] + [
            text for option, value in forwarded if value is not None for text in (option, str(value))]))
    with open_store(args.tracking_uri) as store:
        text = summary(store, name, seeds)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "confirm.md")
            path.write_text(text + "\n")
            store.log_artifact(store.sweep(name), str(path))
    print(text)
    return status


def summary(store: Store, name: str, seeds: list[int]) -> str:
    """Mean (std) over the completed seeds of every test metric, as the papers' tables."""
    done = trial_table.completed(trial_table.load(store, [name]), ["test/nll"])
    rows = sorted(done.to_pylist(), key=lambda r: r["config.seed"])
    missing = sorted(set(seeds) - {r["config.seed"] for r in rows})
    lines = [f"{name}: {len(rows)} of {len(seeds)} seeds completed"
             + (f" (missing: {', '.join(map(str, missing))})" if missing else ""),
             f"{'metric':<14} {'mean (std)':<18} " + " ".join(f"seed {r['config.seed']:<6}" for r in rows)]
    for metric in trial_table.TEST + ("wall_time",):
        values = np.array([r[metric] for r in rows], float)
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        lines.append(f"{metric:<14} {f'{values.mean():.2f} ({std:.2f})':<18} "
                     + " ".join(f"{v:<11.4g}" for v in values))
    return "\n".join(lines)
