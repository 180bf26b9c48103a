"""Overhead of Ray Tune + MLflow over training directly, and trials per hour.

    python benchmarks/sweep_overhead.py [--epochs N] [--trials N]

Trains one configuration with `sweeps train`, then the same configuration as a
one-trial sweep, then `--trials` seed replicates with 1 and with 2 trials at a
time. Every sweep writes to one MLflow server started here, so its start-up is
not counted; Ray's start-up is (each `sweeps run` starts its own local Ray).
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import yaml

from models.config import set_dotted
from sweeps import tracking

FIXED = {"data.synthetic_sentences": 4000, "model.latent_dim": 8, "eval.iw_samples": 50,
         "eval.iw_batch": 50, "threads": 1}


def timed(args: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sweeps", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, tracking.local_server(work) as server:
        uri = server.ready()
        config = {"seed": 0, "train": {"max_epochs": args.epochs}}
        for key, value in FIXED.items():
            set_dotted(config, key, value)
        config_file = os.path.join(work, "config.yaml")
        with open(config_file, "w") as fh:
            yaml.safe_dump(config, fh)
        timed(["train", "--config", config_file, "--epochs", "1", "--out", "warm"], work)  # corpus cache
        direct = timed(["train", "--config", config_file, "--out", "direct"], work)

        def sweep(name: str, trials: int, concurrent: int) -> float:
            space = os.path.join(work, f"{name}.yaml")
            with open(space, "w") as fh:
                yaml.safe_dump({"method": "vae", "fixed": FIXED, "sampler": "grid", "epochs": args.epochs,
                                "params": {"seed": {"type": "categorical", "choices": list(range(trials))}},
                                "trials": trials, "max_concurrent": concurrent}, fh)
            return timed(["run", space, "--name", name, "--tracking-uri", uri], work)

        one = sweep("one", 1, 1)
        serial = sweep("serial", args.trials, 1)
        parallel = sweep("parallel", args.trials, 2)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.epochs} epochs per trial, "
          f"synthetic {FIXED['data.synthetic_sentences']} sentences, 1 torch thread per trial")
    print("| measure | value |\n|---|---|")
    print(f"| train directly (s) | {direct:.1f} |")
    print(f"| one-trial sweep (s) | {one:.1f} |")
    print(f"| overhead of Tune + MLflow | {(one - direct) / direct:.1%} |")
    print(f"| trials/hour, 1 at a time | {3600 * args.trials / serial:.1f} |")
    print(f"| trials/hour, 2 at a time | {3600 * args.trials / parallel:.1f} |")


if __name__ == "__main__":
    main()
