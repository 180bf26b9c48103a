"""What the experiments share: configs from the presets, training runs with one progress line
each, the mean (std) method table with wall time relative to the basic VAE, the NLL-vs-AU plot,
and results files headed by the exact command, machine and date."""
from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # file output only

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from models import preset_config, train  # noqa: E402
from models.config import merge  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
NOTES_MARKER = ("<!-- Everything below this line is written by hand after reading the results; "
                "re-running the script rewrites only what is above it. -->")
METRICS = (("nll", "NLL"), ("kl", "KL"), ("mi", "MI"), ("au", "AU"))


# -- configs and runs -------------------------------------------------------------
def method_config(name: str, base: dict, *, anneal_epochs: float, pretrain_epochs: int) -> dict:
    """Preset `name` on top of the experiment's `base` config, with the two preset lengths that
    assume paper-scale training shortened: the presets' 10-epoch linear KL warm-up would last
    the whole of a CPU-scale run, and 10 epochs of autoencoder pretraining would double its cost."""
    preset = preset_config(name)
    shorter: dict = {}
    if preset.get("kl", {}).get("anneal") == "linear":
        shorter["kl"] = {"epochs": float(anneal_epochs)}
    if "pretrain" in preset.get("methods", {}):
        shorter["methods"] = {"pretrain": {"epochs": pretrain_epochs}}
    return merge(merge(base, preset), shorter)


def run_one(job: tuple[str, dict]) -> dict:
    """Train one labelled config; print one line; keep what the tables need."""
    label, config = job
    result = train(config)
    test = result["test"]
    print(f"{label:<22} {result['epochs']:>3} epochs {result['wall_time']:7.1f}s  "
          f"NLL {test['nll']:.2f}  KL {test['kl']:.2f}  MI {test['mi']:.2f}  AU {test['au']:.0f}", flush=True)
    return {"label": label, "test": test, "wall_time": result["wall_time"], "epochs": result["epochs"],
            "history": result["history"]}


def run_jobs(jobs: list[tuple[str, dict]], workers: int) -> list[dict]:
    """Results in job order; `workers` > 1 trains that many at once, in spawned processes
    (forking a process whose torch thread pool has started can hang)."""
    if workers == 1:
        return [run_one(job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(pool.imap(run_one, jobs))


# -- tables -------------------------------------------------------------------------
def mean_std(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({statistics.stdev(values):.{digits}f})"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def method_table(runs: dict[str, list[dict]], reference: str = "vae") -> str:
    """Mean (std) over seeds of the test metrics, epochs, wall time, and wall time over the
    reference method's in the same seed (runs are listed in seed order for every method)."""
    headers = ["Method", *(title for _, title in METRICS), "Epochs", "Wall (s)", f"Wall / {reference}"]
    rows = []
    for method, results in runs.items():
        lm = method == "lm"
        cells = [method]
        for key, _ in METRICS:
            cells.append("–" if lm and key != "nll" else
                         mean_std([r["test"][key] for r in results], 1 if key == "au" else 2))
        ratios = [r["wall_time"] / ref["wall_time"] for r, ref in zip(results, runs[reference])]
        cells += [mean_std([float(r["epochs"]) for r in results], 1),
                  mean_std([r["wall_time"] for r in results], 0), mean_std(ratios, 2)]
        rows.append(cells)
    return markdown_table(headers, rows)


def aggressive_line(results: list[dict]) -> str:
    """How long aggressive mode stayed on and how many encoder updates it ran per decoder update."""
    on = [sum(h.get("train/aggressive", 0.0) for h in r["history"]) for r in results]
    first = [r["history"][0]["train/inner_steps"] for r in results]
    return (f"Aggressive mode stayed on for {mean_std(on, 1)} epochs (of {mean_std([float(r['epochs']) for r in results], 1)}); "
            f"in epoch 1 its inner loop ran {mean_std(first, 1)} encoder updates per decoder update "
            f"(rule: window 10, cap 100).")


# -- plots --------------------------------------------------------------------------
def plot_nll_vs_au(runs: dict[str, list[dict]], path: Path, title: str) -> None:
    """One point per run, as He et al. Fig. 4; the LM sits at AU 0 as their autoregressive baseline."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = "osD^v<>pPX*h"
    for i, (method, results) in enumerate(runs.items()):
        ax.scatter([r["test"]["au"] for r in results], [r["test"]["nll"] for r in results],
                   marker=markers[i % len(markers)], s=40, alpha=0.8, label=method)
    ax.set(xlabel="active units (AU)", ylabel="test NLL (IW estimate; exact for the LM)", title=title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- the results file ----------------------------------------------------------------
def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{os.cpu_count()}-core CPU ({model}), torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def header(title: str, settings: list[str]) -> str:
    command = shlex.join(["python", "-m", f"experiments.{Path(sys.argv[0]).stem}", *sys.argv[1:]])
    lines = [f"# {title}", "",
             f"- Command (from the repository root): `{command}`",
             f"- Machine: {machine()}",
             f"- Date: {datetime.date.today().isoformat()}"]
    return "\n".join(lines + [f"- {line}" for line in settings]) + "\n"


def write_results(name: str, text: str) -> Path:
    """Write docs/results/NAME.md: `text`, then the hand-written notes of the previous file."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    notes = ""
    if path.exists():
        previous = path.read_text()
        if NOTES_MARKER in previous:
            notes = previous.split(NOTES_MARKER, 1)[1]
    path.write_text(f"{text.rstrip()}\n\n{NOTES_MARKER}{notes or chr(10)}")
    return path


def scale_args(parser: argparse.ArgumentParser, *, epochs: int, iw_samples: int, anneal_epochs: float = 4.0,
               pretrain_epochs: int = 3) -> None:
    """Flags every experiment takes; the defaults are the CPU scale, the help gives paper scale."""
    parser.add_argument("--epochs", type=int, default=epochs, help="max epochs (papers: until 5 lr decays)")
    parser.add_argument("--iw-samples", type=int, default=iw_samples, help="IW samples for NLL (papers: 500)")
    parser.add_argument("--workers", type=int, default=1, help="trainings at once, 1 torch thread each")
    parser.add_argument("--dropout", type=float, default=0.5,
                        help="decoder input/output dropout (0.5 in He et al. App. B and Li et al. App. A)")
    parser.add_argument("--anneal-epochs", type=float, default=anneal_epochs,
                        help="linear KL warm-up of anneal, scale and pretrain-fb (presets: 10)")
    parser.add_argument("--pretrain-epochs", type=int, default=pretrain_epochs,
                        help="autoencoder epochs of pretrain-fb (preset: 10; Li et al.: to convergence)")


# -- the method comparison of findings 2 and 3 -------------------------------------------
def method_args(parser: argparse.ArgumentParser, methods: tuple[str, ...], *, seeds: int) -> None:
    parser.add_argument("--methods", default=",".join(methods),
                        help="comma-separated presets (models.presets); must include vae")
    parser.add_argument("--seeds", type=int, default=seeds, help="training seeds 0..N-1 (papers: 5)")


def compare_methods(args: argparse.Namespace, base: dict) -> dict[str, list[dict]]:
    """Train every method for seeds 0..N-1 (seed-major, so methods share load conditions);
    results by method, in seed order."""
    methods = args.methods.split(",")
    jobs = [(method, seed, merge(method_config(method, base, anneal_epochs=args.anneal_epochs,
                                               pretrain_epochs=args.pretrain_epochs), {"seed": seed}))
            for seed in range(args.seeds) for method in methods]
    results = run_jobs([(f"{method} seed {seed}", config) for method, seed, config in jobs], args.workers)
    runs: dict[str, list[dict]] = {method: [] for method in methods}
    for (method, _, _), result in zip(jobs, results):
        runs[method].append(result)
    return runs


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


def comparison_report(runs: dict[str, list[dict]], *, name: str, plot_title: str) -> str:
    """The table, the aggressive-mode line and the NLL-vs-AU plot (written next to the table)."""
    plot = RESULTS / f"{name}_nll_au.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_nll_vs_au(runs, plot, plot_title)
    parts = ["## Test metrics, mean (std) over seeds", "", method_table(runs), ""]
    if "aggressive" in runs:
        parts += [aggressive_line(runs["aggressive"]), ""]
    parts += ["Wall time is `models.train`'s `wall_time`: every epoch's training and validation "
              "(MI and AU included), pretraining included; data loading and the test evaluation "
              "excluded. The ratio is taken per seed against the VAE of the same seed.", "",
              f"![NLL versus AU, one point per run]({plot.name})", ""]
    return "\n".join(parts)
