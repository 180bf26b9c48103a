"""`sweeps run SPACE.yaml`: one sweep, from the search space to the summary.

Checks everything the user gave (the space; --set values, none on a searched key;
options; a trial's CPUs and GPUs against this machine; the corpus) before starting
anything, and records it (record.SweepRecord); the engine's driver then runs the sweep in
its folder ./sweep_results/NAME, where `sweep.json` keeps what `resume` needs. Ray and
Optuna are imported only once input is valid.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from models.resolve import parse_config
from sweeps import tracking
from sweeps.cli.options import add_config_options, add_tracking_option, option_for, overrides_from_args
from sweeps.errors import UserError, redact
from sweeps.record import SweepRecord, refuse_existing, results_dir
from sweeps.space import SearchSpace, load_space

DATA_SOURCES = ("data.name", "data.train", "data.valid", "data.test")
"""The config keys that choose a trial's corpus files."""
HELP = "run a sweep: Optuna proposes trials, Ray Tune schedules them, MLflow records them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="search-space YAML file, e.g. search_spaces/fb.yaml")
    parser.add_argument("--name", help="sweep name (default: the space file's name and the time)")
    add_config_options(parser)
    parser.add_argument("--trials", type=int, help="number of trials (default: the space's `trials`)")
    parser.add_argument("--max-concurrent", type=int, help="trials at a time (default: the space's)")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: the space's)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; fractions share a GPU")
    add_tracking_option(parser)
    parser.add_argument("--resume-if-exists", action="store_true",
                        help="if sweep --name was started before, resume it (with the settings it started with) "
                             "instead of refusing: for jobs that a scheduler may start again (sweeps submit)")


def main(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    overrides = overrides_from_args(args)
    refuse_searched(space, overrides)
    trials = _positive(args.trials, space.trials, "--trials", int)
    max_concurrent = _positive(args.max_concurrent, space.max_concurrent, "--max-concurrent", int)
    cpus = _positive(args.cpus_per_trial, space.resources.cpus, "--cpus-per-trial", float)
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else space.resources.gpus
    if gpus < 0:
        raise UserError(f"--gpus-per-trial: must be >= 0, got {gpus}")
    _refuse_infeasible(space, args, cpus, gpus)
    if "threads" not in space.searched() and "threads" not in space.fixed:  # the space's own choice wins
        overrides.setdefault("threads", max(1, int(cpus)))  # torch threads = the trial's CPUs
    from sweeps import engine
    probe = engine.sample_config(space, overrides)  # a bad --set fails here, before any resource starts
    name = sweep_name(args.space, args.name)
    if not args.resume_if_exists:
        refuse_existing(name)
    uri = _explicit_uri(args.tracking_uri)
    probe_config = parse_config(probe)
    if not set(DATA_SOURCES) & set(space.searched()):  # else each trial reads its own, failing alone
        from models.data import load_corpus  # torch, seconds: once the input is valid
        load_corpus(probe_config.data)  # tokenised once, into the cache the trials read
    record = SweepRecord(name=name, space_file=os.path.abspath(args.space), overrides=overrides, trials=trials,
                         max_concurrent=max_concurrent, cpus=cpus, gpus=gpus, epochs=probe_config.train.max_epochs,
                         seed=int(overrides.get("seed", 0)), tracking_uri=uri, mlflow_root=os.getcwd(),
                         results=str(results_dir(name)),
                         command=redact(" ".join(["python -m sweeps", *sys.argv[1:]])))
    # A sweep that --resume-if-exists resumes uses the server given here (--tracking-uri or
    # $MLFLOW_TRACKING_URI), if any, as `resume --tracking-uri`: a head rebuilt after its loss
    # serves the same database at a new address, which its jobs find in their environment.
    return engine.run_sweep(record, space, resume_if_exists=args.resume_if_exists, tracking_uri=uri)


def sweep_name(space_file: str, name: str | None) -> str:
    """The sweep's name: --name, else the space file's name and the time."""
    name = name or f"{Path(space_file).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def refuse_searched(space: SearchSpace, overrides: dict) -> None:
    """A value fixed for a key the space searches would replace every sampled value: Optuna
    would learn from values never trained, and the summary would print them as the best."""
    searched = space.searched()
    for key, value in overrides.items():
        for leaf in tracking.flatten({key: value}):  # a mapping value sets only the keys it names
            if leaf in searched:
                raise UserError(f"{option_for(key)}: {leaf} is searched by {space.path} ({searched[leaf]}); "
                                "to fix it, move it to `fixed:` in a copy of the space")


def _refuse_infeasible(space: SearchSpace, args: argparse.Namespace, cpus: float, gpus: float) -> None:
    """A trial that asks for more than a node has waits for ever: Ray never says no."""
    from sweeps.engine import local_capacity
    capacity = local_capacity()
    if capacity is None:
        return
    for kind, need, option in (("cpu", cpus, "cpus_per_trial"), ("gpu", gpus, "gpus_per_trial")):
        if need > capacity[kind]:
            where = (f"--{option.replace('_', '-')}" if getattr(args, option) is not None
                     else f"{space.path}: resources.{kind}s")
            raise UserError(f"{where}: a trial needs {need:g} {kind.upper()}s and this machine has {capacity[kind]}, "
                            "so none could start (set RAY_ADDRESS to run on a cluster)")


def _positive(value, default, option: str, kind: type):
    value = default if value is None else value
    if value <= 0:
        raise UserError(f"{option}: must be positive, got {value}")
    return kind(value)


def _explicit_uri(uri: str | None) -> str | None:
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    return tracking.checked_uri(uri) if uri else None
