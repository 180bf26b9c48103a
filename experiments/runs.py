"""Running an experiment: configs from the presets, training runs with one progress line each
(several at once in spawned processes), and the flags every experiment takes."""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
from pathlib import Path

from models import preset_config, train
from models.config import merge


def method_config(name: str, base: dict, *, anneal_epochs: float | None = None,
                  pretrain_epochs: int | None = None, overrides: dict | None = None) -> dict:
    """Preset `name` on top of the experiment's `base` config, then `overrides[name]`. The two
    preset lengths that assume paper-scale training can be shortened (None keeps the preset's):
    a 10-epoch linear KL warm-up can outlast a short run, and 10 epochs of autoencoder
    pretraining can double its cost."""
    preset = preset_config(name)
    shorter: dict = {}
    if anneal_epochs is not None and preset.get("kl", {}).get("anneal") == "linear":
        shorter["kl"] = {"epochs": float(anneal_epochs)}
    if pretrain_epochs is not None and "pretrain" in preset.get("methods", {}):
        shorter["methods"] = {"pretrain": {"epochs": pretrain_epochs}}
    return merge(merge(merge(base, preset), shorter), (overrides or {}).get(name, {}))


def run_one(job: tuple[str, int, dict]) -> dict:
    """Train one labelled config; print one line; keep what the tables need."""
    label, seed, config = job
    result = train(merge(config, {"seed": seed}))
    test = result["test"]
    print(f"{label:<14} seed {seed} {result['epochs']:>3} epochs {result['wall_time']:7.1f}s  "
          f"NLL {test['nll']:.2f}  KL {test['kl']:.2f}  MI {test['mi']:.2f}  AU {test['au']:.0f}", flush=True)
    return {"label": label, "seed": seed, "key": run_key(job), "test": test, "wall_time": result["wall_time"],
            "epochs": result["epochs"], "history": result["history"], "verdict": result["verdict"]}


def run_key(job: tuple[str, int, dict]) -> str:
    """What identifies a run across invocations: label, seed and config, less the cache folder."""
    label, seed, config = job
    config = merge(config, {"data": {"cache_dir": None}})
    return hashlib.sha256(json.dumps([label, seed, config], sort_keys=True).encode()).hexdigest()[:16]


def run_jobs(jobs: list[tuple[str, int, dict]], workers: int, store: Path, train_missing: bool = True) -> list[dict]:
    """Results in job order. Each finished run is appended to `store` (JSON lines) at once, and
    runs already there are not trained again, so an interrupted experiment loses no finished
    run and continues where it stopped; without `train_missing` only the stored runs come
    back. `workers` > 1 trains that many at once, in spawned processes (forking a process
    whose torch thread pool has started can hang)."""
    done = {}
    if store.exists():
        for line in store.read_text().splitlines():
            run = json.loads(line)
            done[run["key"]] = run
    keys = [run_key(job) for job in jobs]
    todo = [job for job, key in zip(jobs, keys) if key not in done]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already in {store}", flush=True)
    if not train_missing:
        return [done[key] for key in keys if key in done]
    store.parent.mkdir(parents=True, exist_ok=True)
    with store.open("a") as out:
        def keep(run: dict) -> None:
            done[run["key"]] = run
            out.write(json.dumps(run) + "\n")
            out.flush()
        if workers == 1:
            for job in todo:
                keep(run_one(job))
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for run in pool.imap_unordered(run_one, todo):
                    keep(run)
    return [done[key] for key in keys]


def compare_methods(args: argparse.Namespace, base: dict, store: Path, **lengths) -> dict[str, list[dict]]:
    """Train every method for seeds 0..N-1 (seed-major, so that whole seeds finish first and
    methods share load conditions); results by method, in seed order. `lengths` go to
    `method_config`."""
    methods = args.methods.split(",")
    jobs = [(method, seed, method_config(method, base, **lengths))
            for seed in range(args.seeds) for method in methods]
    runs: dict[str, list[dict]] = {method: [] for method in methods}
    for result in run_jobs(jobs, args.workers, store, train_missing=not args.report_only):
        runs[result["label"]].append(result)
    return {method: results for method, results in runs.items() if results}


# -- flags --------------------------------------------------------------------------
def scale_args(parser: argparse.ArgumentParser, *, epochs: int, iw_samples: int) -> None:
    """Flags every experiment takes; the defaults are the experiment's scale, the help the papers'."""
    parser.add_argument("--epochs", type=int, default=epochs, help="max epochs (papers: until 5 lr decays)")
    parser.add_argument("--iw-samples", type=int, default=iw_samples, help="IW samples for NLL (papers: 500)")
    parser.add_argument("--workers", type=int, default=1, help="trainings at once, 1 torch thread each")


def length_args(parser: argparse.ArgumentParser, *, anneal_epochs: float, pretrain_epochs: int) -> None:
    """Shortened preset lengths, for experiments far below paper scale."""
    parser.add_argument("--anneal-epochs", type=float, default=anneal_epochs,
                        help="linear KL warm-up of the annealed presets (presets: 10)")
    parser.add_argument("--pretrain-epochs", type=int, default=pretrain_epochs,
                        help="autoencoder epochs of pretrain-fb (preset: 10; Li et al.: to convergence)")


def method_args(parser: argparse.ArgumentParser, methods: tuple[str, ...], *, seeds: int) -> None:
    parser.add_argument("--methods", default=",".join(methods),
                        help="comma-separated presets (models.presets); must include vae")
    parser.add_argument("--seeds", type=int, default=seeds, help="training seeds 0..N-1 (papers: 5)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the runs stored so far, training none")


def check_methods(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    methods = args.methods.split(",")
    if "vae" not in methods:
        parser.error("--methods must include vae: wall times are reported relative to it")
    for method in methods:
        try:
            preset_config(method)
        except ValueError as err:
            parser.error(str(err))
    if args.seeds < 1 or args.workers < 1 or args.epochs < 1:
        parser.error("--seeds, --workers and --epochs must be at least 1")
