"""Comparing sweeps as methods are compared: each sweep's front of test NLL against active
units, its hypervolume against one reference point, the compute it spent, and per group
(e.g. the same space over seeds) the mean hypervolume with a bootstrap confidence interval.

The hypervolume is the area a front dominates up to the reference point: one number that
grows whenever the front improves anywhere, the usual way to rank multi-objective searches
(Zitzler & Thiele 1998). It is Optuna's (the WFG algorithm, as optuna.visualization's
hypervolume history computes it), which minimises every objective: NLL enters as it is and
AU negated. The default reference point is the baseline of He et al. Table 1: AU 0 (a
collapsed VAE, or the LSTM language model) at the worst test NLL among the compared sweeps'
completed trials; so a trial adds area only if it keeps units active, and a sweep that
found only collapsed models scores 0.

Compute is counted three ways over every trial a sweep ran, pruned and failed included:
trial-epochs (epochs trained), wall time (training plus test seconds, models' own clock) and
trials. Sweeps are ranked only at equal compute in the measure chosen: budgets that differ by
more than a tolerance are refused unless the caller accepts them, or `equalise` first counts
each sweep to about the smallest one's budget: its trials in the order they started, up to
the trial boundary nearest that budget (a strict "at most" would give every other sweep less
than the smallest one, by up to a trial each).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeps.analysis import pareto, trial_table
from sweeps.errors import UserError
from sweeps.tracking import Store

NLL, AU = pareto.metric_spec("nll"), pareto.metric_spec("au")
BUDGETS = ("trial-epochs", "wall-time", "trials")
UNITS = {"trial-epochs": "trial-epochs", "wall-time": "s", "trials": "trials"}
LINE_STYLES = ("-", "--", ":", "-.")
LEVEL = 0.95
RESAMPLES = 10_000
"""The bootstrap: percentile intervals of the mean over 10,000 resamples, seeded, so a
comparison prints the same interval every time."""


@dataclass(frozen=True)
class Reference:
    nll: float
    au: float
    given: bool
    """Given by the caller; else the default (worst NLL of the sweeps, AU 0)."""


@dataclass
class SweepResult:
    name: str
    group: str
    trials: pa.Table
    """The trials counted, in the order they started (after `equalise`, those up to the budget)."""
    left_out: int
    """Trials past the budget that `equalise` did not count."""
    front: pa.Table
    """The completed trials on the NLL-AU front, best NLL first."""
    hypervolume: float

    def spent(self, budget: str) -> float:
        return spent(self.trials, budget)

    @property
    def completed(self) -> int:
        return _completed(self.trials).num_rows


@dataclass
class GroupResult:
    name: str
    hypervolumes: list[float]
    """Of its sweeps, in the order given."""
    interval: tuple[float, float] | None
    """The bootstrap interval of the mean; None for a group of one sweep."""
    difference: tuple[float, float, float] | None = None
    """Mean hypervolume minus the first-ranked group's, with its bootstrap interval; None for
    the first, and where either group has a single sweep."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.hypervolumes))


@dataclass
class Comparison:
    sweeps: list[SweepResult]
    groups: list[GroupResult]
    """Ranked: the highest mean hypervolume first."""
    reference: Reference
    budget: str
    tolerance: float
    equalised_to: float | None
    """The budget every sweep was counted up to (`equalise`); None: sweeps as they ran."""
    unequal: bool
    """Budgets differ by more than the tolerance (ranked anyway, as the caller allowed)."""


def load(store: Store, names: Sequence[str]) -> dict[str, pa.Table]:
    """Each sweep's trial table, its rows in the order the trials started (runs without a
    start time last)."""
    tables = {}
    for name in names:
        table = trial_table.load(store, [name])
        start_ms = {t.run_id: t.start_ms for t in store.trials(store.sweep(name))}
        starts = [start_ms.get(run_id) for run_id in table["run_id"].to_pylist()]
        order = sorted(range(table.num_rows), key=lambda i: (starts[i] is None, starts[i] or 0))
        tables[name] = table.take(pa.array(order, pa.int64()))
    return tables


def spent(trials: pa.Table, budget: str) -> float:
    """The compute TRIALS spent in BUDGET's measure."""
    return float(_costs(trials, budget).sum())


def _costs(trials: pa.Table, budget: str) -> np.ndarray:
    """Each trial's cost in BUDGET's measure (an unknown time counts 0)."""
    if budget == "trial-epochs":
        return trials["epochs"].to_numpy(zero_copy_only=False).astype(float)
    if budget == "wall-time":
        train, test = (np.nan_to_num(pc.fill_null(trials[c], 0.0).to_numpy(zero_copy_only=False).astype(float))
                       for c in ("wall_time", "test_time"))
        return train + test
    if budget == "trials":
        return np.ones(trials.num_rows)
    raise UserError(f"budget {budget!r}: choose one of {', '.join(BUDGETS)}")


def up_to(trials: pa.Table, budget: str, limit: float) -> pa.Table:
    """The first trials (in start order) whose costs add up nearest to LIMIT; on a tie, the fewer."""
    cumulative = np.concatenate([[0.0], np.cumsum(_costs(trials, budget))])
    return trials.slice(0, int(np.argmin(np.abs(cumulative - limit))))


def hypervolume(nll: np.ndarray, au: np.ndarray, reference: Reference) -> float:
    """The area dominated by the points (NLL minimised, AU maximised) up to REFERENCE; points
    no better than it on either axis add nothing and are left out (Optuna refuses them)."""
    # Exported by optuna._hypervolume itself; optuna.visualization imports it from there too.
    from optuna._hypervolume import compute_hypervolume
    inside = (nll <= reference.nll) & (au >= reference.au)
    losses = np.column_stack([nll[inside], -au[inside]]).astype(float)
    return float(compute_hypervolume(losses, np.array([reference.nll, -reference.au], float)))


def bootstrap_interval(*samples: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (LEVEL) of the mean of one sample, or of the difference of
    the means of two (each resampled on its own)."""
    rng = np.random.default_rng(seed)
    means = [np.asarray(s, float)[rng.integers(0, len(s), (RESAMPLES, len(s)))].mean(1) for s in samples]
    stat = means[0] if len(means) == 1 else means[0] - means[1]
    low, high = np.quantile(stat, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return float(low), float(high)


def parse_groups(names: Sequence[str], specs: Sequence[str]) -> dict[str, str]:
    """Sweep -> group from `LABEL=PATTERN[,PATTERN...]` (shell-style patterns over the sweep
    names); a sweep no group names is a group of its own."""
    group: dict[str, str] = {}
    for spec in specs:
        label, sep, patterns = spec.partition("=")
        if not sep or not label.strip() or not patterns.strip():
            raise UserError(f"--group {spec!r}: expected LABEL=SWEEP[,SWEEP...] (patterns such as 'fb-s*' allowed)")
        matched = [n for n in names if any(fnmatch.fnmatchcase(n, p.strip()) for p in patterns.split(","))]
        if not matched:
            raise UserError(f"--group {spec!r}: matches none of the sweeps compared ({', '.join(names)})")
        for name in matched:
            if group.setdefault(name, label.strip()) != label.strip():
                raise UserError(f"--group {spec!r}: sweep {name!r} is already in group {group[name]!r}")
    return {name: group.get(name, name) for name in names}


def compare(tables: dict[str, pa.Table], groups: dict[str, str], *, budget: str = "trial-epochs",
            tolerance: float = 0.1, equalise: bool = False, allow_unequal: bool = False,
            reference: tuple[float, float] | None = None) -> Comparison:
    """Rank the sweeps' fronts by hypervolume; UserError if their budgets differ by more than
    TOLERANCE (relative to the smallest) and not ALLOW_UNEQUAL."""
    if tolerance < 0:
        raise UserError(f"--tolerance: must be >= 0, got {tolerance}")
    counted, limit = dict(tables), None
    if equalise:
        limit = min(spent(t, budget) for t in tables.values())
        counted = {name: up_to(t, budget, limit) for name, t in tables.items()}
    unequal = _check_budgets(counted, budget, tolerance, allow_unequal)
    ref = _reference(counted, reference)
    results = [_sweep_result(name, groups[name], trials, tables[name].num_rows - trials.num_rows, ref)
               for name, trials in counted.items()]
    return Comparison(results, _rank(results), ref, budget, tolerance, limit, unequal)


def _check_budgets(tables: dict[str, pa.Table], budget: str, tolerance: float, allow_unequal: bool) -> bool:
    amounts = {name: spent(t, budget) for name, t in tables.items()}
    low, high = min(amounts, key=amounts.get), max(amounts, key=amounts.get)
    if amounts[high] <= amounts[low] * (1 + tolerance):
        return False
    if not allow_unequal:
        ratio = f"{amounts[high] / amounts[low]:.1f}x" if amounts[low] else "no compute at all"
        raise UserError(f"budgets differ: {high} spent {amounts[high]:g} {UNITS[budget]}, {low} {amounts[low]:g} "
                        f"({ratio}; tolerance {tolerance:.0%}): not ranked; count each to the smallest one's "
                        "with --equalise, or rank anyway with --allow-unequal")
    return True


def _completed(trials: pa.Table) -> pa.Table:
    done = trials.filter(pc.equal(trials["status"], "completed"))
    finite = [np.isfinite(done[m].to_numpy(zero_copy_only=False).astype(float)) for m, _ in (NLL, AU)]
    return done.filter(pa.array(finite[0] & finite[1])) if done.num_rows else done


def _reference(tables: dict[str, pa.Table], given: tuple[float, float] | None) -> Reference:
    if given is not None:
        return Reference(float(given[0]), float(given[1]), True)
    nll = [v for t in tables.values() for v in _completed(t)[NLL[0]].to_pylist()]
    if not nll:
        raise UserError(f"{', '.join(tables)}: no completed trials with {NLL[0]} and {AU[0]}, so no front to compare")
    return Reference(max(nll), 0.0, False)


def _sweep_result(name: str, group: str, trials: pa.Table, left_out: int, reference: Reference) -> SweepResult:
    done = _completed(trials)
    if done.num_rows == 0:
        return SweepResult(name, group, trials, left_out, done, 0.0)
    nll, au = (done[m].to_numpy(zero_copy_only=False).astype(float) for m, _ in (NLL, AU))
    front = pareto.listed(done, pareto.pareto_mask(np.column_stack([nll, au]), [NLL[1], AU[1]]), NLL)
    return SweepResult(name, group, trials, left_out, front, hypervolume(nll, au, reference))


def _rank(results: list[SweepResult]) -> list[GroupResult]:
    by_group: dict[str, list[float]] = {}
    for result in results:
        by_group.setdefault(result.group, []).append(result.hypervolume)
    groups = sorted((GroupResult(name, hvs, bootstrap_interval(np.array(hvs)) if len(hvs) > 1 else None)
                     for name, hvs in by_group.items()), key=lambda g: -g.mean)
    first = groups[0]
    for group in groups[1:]:
        if len(group.hypervolumes) > 1 and len(first.hypervolumes) > 1:
            group.difference = (group.mean - first.mean,
                                *bootstrap_interval(np.array(group.hypervolumes), np.array(first.hypervolumes)))
    return groups


def staircase(front: pa.Table, reference: Reference) -> tuple[list[float], list[float]]:
    """The outline of the area a front dominates, as (AU, NLL) vertices, from the reference AU
    at the best NLL to the reference NLL at the highest AU; from the points that add area."""
    rows = sorted((r[AU[0]], r[NLL[0]]) for r in front.to_pylist()
                  if r[NLL[0]] < reference.nll and r[AU[0]] > reference.au)
    if not rows:
        return [], []
    xs, ys = [reference.au], [rows[0][1]]
    for i, (au, nll) in enumerate(rows):
        xs += [au, au]
        ys += [nll, rows[i + 1][1] if i + 1 < len(rows) else reference.nll]
    return xs, ys


def plot(comparison: Comparison, path: str) -> None:
    """Every sweep's front on one plot, a colour per group (a line style per sweep in it): its
    completed trials faint, the outline of the area its front dominates, lightly shaded, the
    reference point marked. The view fits the fronts: a reference or trials far above them
    (a diverged trial sets the default reference) are said, not drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.8), constrained_layout=True)
    ref, groups = comparison.reference, {g.name: g for g in comparison.groups}
    colours = {name: f"C{i % 10}" for i, name in enumerate(groups)}
    seen: dict[str, int] = {}
    for result in sorted(comparison.sweeps, key=lambda r: list(groups).index(r.group)):  # legend by rank
        colour, replicate = colours[result.group], seen.get(result.group, 0)
        seen[result.group] = replicate + 1
        ax.scatter(*_points(_completed(result.trials)), s=14, alpha=0.25, color=colour, lw=0)
        xs, ys = staircase(result.front, ref)
        ax.fill_between(xs, ys, ref.nll, color=colour, alpha=0.06, lw=0)
        ax.plot(xs, ys, LINE_STYLES[replicate % len(LINE_STYLES)], color=colour, lw=2)
        group = groups[result.group]
        label = f"{group.name}: HV {group.mean:.4g}" + (f" (mean of {len(group.hypervolumes)})"
                                                      if len(group.hypervolumes) > 1 else "")
        ax.scatter(*_points(result.front), s=36, color=colour, zorder=3, label=None if replicate else label)
    low, top = _view(comparison)
    above = sum(int((_points(_completed(r.trials))[1] > top).sum()) for r in comparison.sweeps)
    ax.plot([ref.au], [ref.nll], "kx", ms=9, mew=2,
            label=f"reference ({ref.au:g}, {ref.nll:.4g})" + (", above the view" if ref.nll > top else ""))
    ax.set_ylim(low, top)
    ax.set_xlabel(f"{AU[0]} ({AU[1]})")
    ax.set_ylabel(f"{NLL[0]} ({NLL[1]})")
    ax.set_title(f"Fronts at equal {comparison.budget}" + (f"; {above} trial(s) above the view" if above else ""),
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _points(trials: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(AU, NLL) of the trials, as the plot's x and y."""
    return tuple(trials[m].to_numpy(zero_copy_only=False).astype(float) for m, _ in (AU, NLL))


def _view(comparison: Comparison) -> tuple[float, float]:
    """The NLL range shown: from the best front point to a quarter of the fronts' spread above
    the worst point that adds area, or just above the reference where that is nearer."""
    ref = comparison.reference
    au, nll = (np.concatenate([_points(r.front)[i] for r in comparison.sweeps] + [[v]]) for i, v in
               enumerate((ref.au, ref.nll)))
    adding = nll[(nll < ref.nll) & (au > ref.au)]
    worst = adding.max() if adding.size else nll.min()
    spread = max(worst - nll.min(), 1.0)
    return nll.min() - 0.05 * spread, min(worst + 0.25 * spread, ref.nll + 0.05 * spread)


def report(comparison: Comparison) -> str:
    """The comparison as text: how compute was equalised, the reference point, one table of
    the sweeps, each sweep's front, and the ranking of groups."""
    ref, budget = comparison.reference, comparison.budget
    amounts = [r.spent(budget) for r in comparison.sweeps]
    how = (f"each sweep counted to the trial nearest the smallest budget, {comparison.equalised_to:g} "
           f"{UNITS[budget]}, in start order" if comparison.equalised_to is not None else "sweeps as they ran")
    origin = "given" if ref.given else f"worst {NLL[0]} among the sweeps' completed trials, AU 0"
    verdict = (f"differ by more than {comparison.tolerance:.0%}: ranked anyway (--allow-unequal)"
               if comparison.unequal else f"within {comparison.tolerance:.0%} of each other")
    lines = [f"Compute equalised by {budget}: {how}; budgets {min(amounts):g} to {max(amounts):g} "
             f"{UNITS[budget]}, {verdict}.",
             f"Reference point: {NLL[0]} {ref.nll:.4f}, {AU[0]} {ref.au:g} ({origin}), the same for every "
             "sweep; hypervolume in nats x units.", ""]
    header = ["sweep", "group", "trials", "completed", "trial-epochs", "wall (s)", "front", "hypervolume"]
    rows = [[r.name, r.group, f"{r.trials.num_rows}" + (f" (+{r.left_out} past budget)" if r.left_out else ""),
             str(r.completed), f"{r.spent('trial-epochs'):g}", f"{r.spent('wall-time'):.0f}", str(r.front.num_rows),
             f"{r.hypervolume:.4f}"] for r in comparison.sweeps]
    lines += [_columns(header, rows), ""]
    for r in comparison.sweeps:
        lines.append(trial_table.format_rows(r.front, ["trial_id", "method", NLL[0], AU[0], "epochs", "run_id"],
                                             title=f"Front of {r.name}: {r.front.num_rows} of {r.completed} "
                                                   "completed trials") if r.front.num_rows
                     else f"Front of {r.name}: no completed trials")
        lines.append("")
    lines.append(f"Ranking by mean hypervolume; interval: {LEVEL:.0%} percentile bootstrap of the mean over the "
                 f"group's sweeps ({RESAMPLES} resamples); difference: to the first, resampling each group")
    rows = [[str(i + 1), g.name, str(len(g.hypervolumes)), f"{g.mean:.4f}",
             f"[{g.interval[0]:.4f}, {g.interval[1]:.4f}]" if g.interval else "-", _difference(g, i)]
            for i, g in enumerate(comparison.groups)]
    lines.append(_columns(["rank", "group", "sweeps", "mean HV", f"{LEVEL:.0%} interval", "vs first"], rows))
    return "\n".join(lines)


def _difference(group: GroupResult, rank: int) -> str:
    if rank == 0:
        return "-"
    if group.difference is None:
        return "(one sweep: no interval)"
    delta, low, high = group.difference
    return f"{delta:+.4f} [{low:+.4f}, {high:+.4f}]" + (" no clear difference" if low <= 0 <= high else "")


def _columns(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])
