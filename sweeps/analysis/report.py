"""The report: the papers' results tables, from our sweeps (`sweeps report`).

One markdown table per dataset, one row per method as in He et al. Table 1 or Li et al.
Table 1: a method's trials are grouped by configuration (every config value but the seed),
its best configuration (lowest mean test NLL) is its row, with mean (std) over that
configuration's seeds (a `confirm` sweep gives five). Under each row, the published
numbers of the same method, dataset and setting (published.yaml beside this file). Time is relative
to the `vae` row (He et al. Table 3), else to the fastest row. Under the table, each row's trials'
verdicts (models' one line on whether the latent is active and why). The Pareto plot follows.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from sweeps.analysis import trial_table

PUBLISHED = Path(__file__).with_name("published.yaml")
COLUMNS = ("nll", "ppl", "kl", "mi", "au", "recon")
IGNORED = {f"{trial_table.CONFIG}{k}" for k in ("seed", "threads", "device", "data.cache_dir")}
"""Config values that do not make a different configuration."""


def load_published(path: Path = PUBLISHED) -> dict[str, list[dict]]:
    """Dataset -> published rows, each with its `source`."""
    out: dict = defaultdict(list)
    for block in yaml.safe_load(path.read_text()):
        out[block["dataset"]] += [{**row, "source": block["source"]} for row in block["rows"]]
    return out


def render(rows: list[dict], published: dict[str, list[dict]], names: list[str], plot: str) -> str:
    parts = [f"# Results: {', '.join(names)}", ""]
    by_dataset = defaultdict(list)
    for row in rows:
        by_dataset[row["dataset"]].append(row)
    for dataset in sorted(by_dataset):
        parts += dataset_table(dataset, by_dataset[dataset], published.get(dataset, [])) + [""]
    parts += [f"![NLL against active units, every completed trial; the Pareto front outlined]({plot})", ""]
    return "\n".join(parts)


def best_configurations(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """(method, trials of its best configuration), by method name."""
    groups = defaultdict(list)
    for row in rows:
        key = tuple(sorted((k, str(v)) for k, v in row.items() if k.startswith(trial_table.CONFIG) and k not in IGNORED))
        groups[(row["method"], key)].append(row)
    best: dict = {}
    for (method, _), trials in groups.items():
        nll = np.mean([t["test/nll"] for t in trials])
        if method not in best or nll < best[method][0]:
            best[method] = (nll, trials)
    return [(method, best[method][1]) for method in sorted(best)]


def _setting(trials: list[dict], all_rows: list[dict]) -> str:
    """The config values that vary among the method's trials: what was searched."""
    same_method = [r for r in all_rows if r["method"] == trials[0]["method"]]
    keys = [k for k in trials[0] if k.startswith(trial_table.CONFIG) and k not in IGNORED
            and len({str(r.get(k)) for r in same_method}) > 1]
    return ", ".join(f"{k[len(trial_table.CONFIG):]}={_short(trials[0][k])}" for k in keys) or "-"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _stat(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ({np.std(values, ddof=1):.2f})"


def _published_cell(value) -> str:
    if value is None:
        return "-"
    return f"{value[0]} ({value[1]})" if isinstance(value, list) else str(value)


def matches(entry: dict, method: str, trial: dict) -> bool:
    if entry["method"] != method:
        return False
    for key, want in entry.get("where", {}).items():
        have = trial.get(trial_table.CONFIG + key)
        same = (math.isclose(have, want, rel_tol=1e-6) if isinstance(have, (int, float)) and isinstance(want, (int, float))
                and not isinstance(have, bool) else have == want)
        if not same:
            return False
    return True


def dataset_table(dataset: str, rows: list[dict], published: list[dict]) -> list[str]:
    chosen = best_configurations(rows)
    times = {m: float(np.mean(w)) for m, ts in chosen if (w := [t["wall_time"] for t in ts if t["wall_time"]])}
    base = times.get("vae") or min(times.values(), default=None)
    head = ["Method", "Setting", "n", "NLL", "PPL", "KL", "MI", "AU", "Recon", "Rel. time"]
    lines = [f"## {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, trials in chosen:
        rel = f"{times[method] / base:.2f}" if base and method in times else "-"
        cells = [f"**{method}**", _setting(trials, rows), str(len(trials)),
                 *(_stat([t[f"test/{c}"] for t in trials]) for c in COLUMNS),
                 rel]
        lines.append("| " + " | ".join(cells) + " |")
        for entry in (e for e in published if matches(e, method, trials[0])):
            cells = [f"↳ *{entry['source']}*", entry["label"], "",
                     *(_published_cell(entry.get(c)) for c in COLUMNS), "-"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Verdicts of each row's trials (whether the latent is active, and why):", ""]
    lines += [f"- **{method}** (seed {_short(t.get(trial_table.CONFIG + 'seed'))}): {t.get('verdict') or '-'}"
              for method, trials in chosen for t in trials]
    return lines
