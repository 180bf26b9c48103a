"""What a sweep costs on top of its trainings: Ray Tune + MLflow + checkpoints, per trial and
once per sweep, and what two trials at a time gain on this machine.

    python benchmarks/sweep_overhead.py [--epochs 3] [--trials 4] [--sentences 20000]

Runs, in this order: the trials' configurations trained by `models.train` in a loop in one
process, writing the files `sweeps train --out` writes (each training timed on its own); a
one-trial sweep; an N-trial sweep one trial at a time; the same N trials two at a time. Every sweep is a real `sweeps run` process writing to
one MLflow server started here (its start-up is not counted; Ray's is). A sweep's time is
split into a fixed part (Ray's start-up, the driver's set-up and summary: paid once per
sweep, whatever its length) and a per-trial part, from the one-trial and N-trial sweeps:

    per trial in a sweep = (T_N − T_1) / (N − 1),   fixed = T_1 − per trial in a sweep

and the per-trial overhead is that per-trial time over the direct training's. That difference
also holds how fast the epochs themselves ran in each process, which varies by several per
cent between processes; the second estimate takes the epochs out: the time a trial spends
outside its epochs in the sweep (MLflow's timestamps) less the time the direct training
spends outside its epochs, over the direct training's. Prints a markdown table headed by
the machine, versions, threads and the CPU time other processes took meanwhile (quiet or not).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import ray
import torch
import yaml

from machine import OtherLoad  # benchmarks/machine.py, beside this script
from models.config import set_dotted
from sweeps import tracking

DIRECT_LOOP = """
import json, sys, tempfile, time
import models
configs = json.loads(sys.argv[1])
times = []
for config in configs:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:  # as `sweeps train --out`: the model and text files too
        result = models.train(config, out_dir=out)
    times.append([time.perf_counter() - start, result["wall_time"]])  # whole, the epochs' part
print(json.dumps(times))
"""


def nested(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        set_dotted(out, key, value)
    return out


def timed(command: list[str], cwd: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def phases(uri: str, name: str) -> dict[str, float]:
    """Where a one-at-a-time sweep's per-trial time goes, in mean seconds per trial, from the
    timestamps MLflow keeps: the gap between one trial's run ending and the next one's being
    created (Tune and the trial's own start), from creation to the first epoch's metrics less
    that epoch's training, the epochs' reporting (checkpoint, Tune, MLflow) less their
    training, and from the last epoch to the run's end (test evaluation, which the direct
    training does too, the files and the curves); and the epochs' own time (training and
    validation) with, per trial, everything else."""
    client = tracking.Store(uri).client
    experiment = client.get_experiment_by_name(name)
    runs = sorted((r for r in client.search_runs([experiment.experiment_id]) if tracking.PARENT_TAG in r.data.tags),
                  key=lambda r: r.info.start_time)
    out = {"between trials": [], "start-up": [], "reporting, per epoch": [], "after the last epoch": [],
           "the epochs (training, validation)": [], "per trial, all but the epochs": []}
    for before, run in zip([None, *runs], runs):
        epochs = {m.step: m.timestamp for m in client.get_metric_history(run.info.run_id, "val/neg_elbo")}
        trained = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "epoch_time")}
        steps = sorted(epochs)
        if before is not None:
            out["between trials"].append((run.info.start_time - before.info.end_time) / 1000)
        out["start-up"].append((epochs[steps[0]] - run.info.start_time) / 1000 - trained[steps[0]])
        out["reporting, per epoch"] += [(epochs[b] - epochs[a]) / 1000 - trained[b] for a, b in zip(steps, steps[1:])]
        out["after the last epoch"].append((run.info.end_time - epochs[steps[-1]]) / 1000)
        out["the epochs (training, validation)"].append(sum(trained.values()))
        out["per trial, all but the epochs"].append((run.info.end_time - run.info.start_time) / 1000
                                                    - sum(trained.values()))
    if out["between trials"]:  # the first trial's start is in the sweep's fixed cost
        out["per trial, all but the epochs"] = [v + statistics.mean(out["between trials"])
                                                for v in out["per trial, all but the epochs"]]
    return {k: statistics.mean(v) for k, v in out.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=20000)
    args = parser.parse_args()
    if args.trials < 2:
        parser.error("--trials: at least 2 (the per-trial cost is the difference of two sweeps)")
    load = OtherLoad()
    with tempfile.TemporaryDirectory() as work, tracking.local_server(work) as server:
        uri = server.ready()
        # He et al.'s synthetic profile (models/profiles.py), shortened; one torch thread per
        # trial; one corpus cache for every run below.
        fixed = {"data.synthetic_sentences": args.sentences, "eval.iw_samples": 50, "eval.iw_batch": 50,
                 "threads": 1, "data.cache_dir": os.path.join(work, "cache")}
        configs = [nested({**fixed, "train.max_epochs": args.epochs, "seed": seed}) for seed in range(args.trials)]
        _, out = timed([sys.executable, "-c", DIRECT_LOOP, json.dumps(configs)], work)
        direct, direct_epochs = zip(*json.loads(out.strip().splitlines()[-1]))

        def sweep(name: str, trials: int, concurrent: int) -> float:
            space = os.path.join(work, f"{name}.yaml")
            with open(space, "w") as fh:
                yaml.safe_dump({"method": "vae", "fixed": fixed, "sampler": "grid", "epochs": args.epochs,
                                "params": {"seed": {"type": "categorical", "choices": list(range(trials))}},
                                "trials": trials, "max_concurrent": concurrent}, fh)
            return timed([sys.executable, "-m", "sweeps", "run", space, "--name", name, "--tracking-uri", uri],
                         work)[0]

        one = sweep("one", 1, 1)
        serial = sweep("serial", args.trials, 1)
        parallel = sweep("parallel", args.trials, 2)
        where = phases(uri, "serial")
    per_trial_direct = statistics.mean(direct)
    outside_direct = per_trial_direct - statistics.mean(direct_epochs)
    outside_sweep = where["per trial, all but the epochs"]
    per_trial_sweep = (serial - one) / (args.trials - 1)
    fixed_cost = one - per_trial_sweep
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, torch {torch.__version__}, "
          f"ray {ray.__version__}; 1 torch thread per trial; {load.line()}")
    print(f"trials: synthetic profile, {args.sentences} sentences, {args.epochs} epochs, seeds 0..{args.trials - 1}\n")
    print("| measure | value |\n|---|---|")
    print(f"| one training by `models.train`, mean of {args.trials} (s) | {per_trial_direct:.1f} |")
    print(f"| one trial in a sweep, (T_{args.trials} − T_1) / {args.trials - 1} (s) | {per_trial_sweep:.1f} |")
    print(f"| per-trial overhead, difference of sweeps over the training | {per_trial_sweep / per_trial_direct - 1:.1%} |")
    print(f"| one training by `models.train`: all but the epochs (set-up, test, files) (s) | {outside_direct:.1f} |")
    print(f"| one trial in a sweep: all but the epochs, from MLflow (s) | {outside_sweep:.1f} |")
    print(f"| **per-trial overhead of Tune + MLflow + checkpoints**, outside the epochs, over the training | "
          f"{(outside_sweep - outside_direct) / per_trial_direct:.1%} |")
    print(f"| fixed cost of a sweep: Ray start-up, driver set-up and summary (s) | {fixed_cost:.1f} |")
    print(f"| {args.trials}-trial sweep, 1 at a time, against {args.trials} trainings (s) | "
          f"{serial:.1f} vs {sum(direct):.1f} ({serial / sum(direct) - 1:+.0%}) |")
    print(f"| {args.trials}-trial sweep, 2 at a time (s) | {parallel:.1f} |")
    print(f"| **trials/hour, 2 at a time over 1 at a time**, fixed cost excluded | "
          f"{(serial - fixed_cost) / (parallel - fixed_cost):.2f}× |")
    print(f"| trials/hour, 2 at a time over 1 at a time, whole sweeps | {serial / parallel:.2f}× |")
    print("\nWhere a trial's time outside training goes (the one-at-a-time sweep, from MLflow's timestamps):\n")
    print("| phase | mean seconds |\n|---|---|")
    for phase, seconds in where.items():
        print(f"| {phase} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
