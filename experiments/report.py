"""Writing an experiment's results: the mean (std) method table with wall time relative to the
basic VAE, the NLL-vs-AU plot, and docs/results/NAME.md headed by the exact command, machine
and date, keeping the hand-written notes below its marker."""
from __future__ import annotations

import datetime
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

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
NOTES_MARKER = ("<!-- Everything below this line is written by hand after reading the results; "
                "re-running the script rewrites only what is above it. -->")
METRICS = (("nll", "NLL"), ("kl", "KL"), ("mi", "MI"), ("mi_batch", "MI (batch)"), ("au", "AU"))
"""The tables' test metrics: MI over the whole split (ours) and over each minibatch (He et al.'s
estimator, that of the papers' tables: at most log of the batch size)."""


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
            values = [r["test"].get(key) for r in results]
            cells.append("–" if (lm and key != "nll") or None in values else
                         mean_std(values, 1 if key == "au" else 2))
        reference_by_seed = {r["seed"]: r for r in runs.get(reference, [])}
        ratios = [r["wall_time"] / reference_by_seed[r["seed"]]["wall_time"]
                  for r in results if r["seed"] in reference_by_seed] or [float("nan")]
        cells += [mean_std([float(r["epochs"]) for r in results], 1),
                  mean_std([r["wall_time"] for r in results], 0), mean_std(ratios, 2)]
        rows.append(cells)
    return markdown_table(headers, rows)


def seed_table(runs: dict[str, list[dict]]) -> str:
    """Every run on its own line: the per-seed evidence behind the mean (std) table."""
    rows = [[method, str(r["seed"]), *(_cell(r["test"].get(key), 0 if key == "au" else 2) for key, _ in METRICS),
             str(r["epochs"]), f"{r['wall_time']:.0f}", r.get("verdict", "–")]
            for method, results in runs.items() if method != "lm" for r in results]
    return markdown_table(["Method", "Seed", *(title for _, title in METRICS), "Epochs", "Wall (s)", "Verdict"], rows)


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def aggressive_line(results: list[dict]) -> str:
    """How long aggressive mode stayed on and how many encoder updates it ran per decoder update."""
    on = [sum(h.get("train/aggressive", 0.0) for h in r["history"]) for r in results]
    first = [r["history"][0]["train/inner_steps"] for r in results]
    return (f"Aggressive mode stayed on for {mean_std(on, 1)} validations (of "
            f"{mean_std([float(len(r['history'])) for r in results], 1)}); in the first its inner loop ran "
            f"{mean_std(first, 1)} encoder updates per decoder update (rule: window 15, cap 100).")


# -- plots --------------------------------------------------------------------------
def plot_nll_vs_au(runs: dict[str, list[dict]], path: Path, title: str) -> None:
    """One point per run, as He et al. Fig. 4; the LM sits at AU 0 as their autoregressive baseline."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = "osD^v<>pPX*h"
    nlls = sorted(r["test"]["nll"] for results in runs.values() for r in results)
    top = nlls[len(nlls) // 2] + 5.0  # a run far above the rest would flatten every other point
    for i, (method, results) in enumerate(runs.items()):
        ax.scatter([r["test"]["au"] for r in results], [min(r["test"]["nll"], top) for r in results],
                   marker=markers[i % len(markers)], s=40, alpha=0.8, label=method)
        # One label per method and AU, so that runs at the same point do not overprint.
        off = sorted((r["test"]["au"], r["test"]["nll"]) for r in results if r["test"]["nll"] > top)
        for au in sorted({a for a, _ in off}):
            values = [nll for a, nll in off if a == au]
            shown = f"{values[0]:.0f}" if len(values) == 1 else f"{values[0]:.0f}–{values[-1]:.0f} ({len(values)} runs)"
            ax.annotate(f"{method}: NLL {shown}, off scale", (au, top), textcoords="offset points",
                        xytext=(6, -12), fontsize=7)
    ax.set_ylim(nlls[0] - 0.5, top + 0.3)
    ax.set(xlabel="active units (AU)", ylabel="test NLL (IW estimate; exact for the LM)", title=title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def comparison_report(runs: dict[str, list[dict]], *, name: str, plot_title: str) -> str:
    """The tables, the aggressive-mode line and the NLL-vs-AU plot (written next to the table)."""
    plot = RESULTS / f"{name}_nll_au.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_nll_vs_au(runs, plot, plot_title)
    parts = ["## Test metrics, mean (std) over seeds", "", method_table(runs), ""]
    if "aggressive" in runs:
        parts += [aggressive_line(runs["aggressive"]), ""]
    parts += ["Wall time is `models.train`'s `wall_time`: every epoch's training and validation "
              "(MI and AU included), pretraining included; data loading and the test evaluation "
              "excluded. The ratio is taken per seed against the VAE of the same seed.", "",
              f"![NLL versus AU, one point per run]({plot.name})", "",
              "## Every run", "", seed_table(runs), ""]
    return "\n".join(parts)


# -- the results file ----------------------------------------------------------------
def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{os.cpu_count()}-core CPU ({model}), torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def repo_path(path: str | Path) -> str:
    """PATH relative to the repository root: a committed results file names no machine's folders."""
    return os.path.relpath(path, REPO)


def header(title: str, settings: list[str]) -> str:
    args = [repo_path(arg) if os.path.isabs(arg) else arg for arg in sys.argv[1:]]
    command = shlex.join(["python", "-m", f"experiments.{Path(sys.argv[0]).stem}", *args])
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
